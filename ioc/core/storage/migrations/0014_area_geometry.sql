-- The map (issue 14): a unit may have a position (its seat, approximately: where the map
-- draws it as a circle when it has no boundary) and a boundary an admin imported
-- (`ioc areas import-geojson`), simplified on import for the wall. Both optional: a unit
-- without either is listed beside the map as "no position", never placed by guesswork.
ALTER TABLE areas
    ADD COLUMN lat double precision,
    ADD COLUMN lon double precision,
    ADD CONSTRAINT areas_position CHECK ((lat IS NULL) = (lon IS NULL)
        AND (lat IS NULL OR (lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180)));

-- One boundary per unit code (a reform that reuses a code for a new territory replaces it
-- with the next import), as GeoJSON (Polygon or MultiPolygon, WGS 84 longitude/latitude),
-- already simplified: what the wall draws, never the admin's full-resolution file.
CREATE TABLE area_boundaries (
    code            text PRIMARY KEY,
    geometry        jsonb NOT NULL,
    vertices        integer NOT NULL CHECK (vertices >= 0),
    source_vertices integer NOT NULL CHECK (source_vertices >= 0),
    tolerance_m     double precision NOT NULL CHECK (tolerance_m >= 0),
    source          text NOT NULL DEFAULT '',
    imported_by     text NOT NULL,
    imported_at     timestamptz NOT NULL DEFAULT now()
);
