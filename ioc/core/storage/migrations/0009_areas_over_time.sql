-- Areas over time (issue 14): a unit is a version (code, valid_from); a reform reuses codes
-- (the new Ninh Bình province kept code 37), so the code alone is no longer a key and the
-- parent is a code resolved by date (checked by ioc/core/catalogue/areas.py before storing,
-- which is why the foreign key goes). Dates are local (the province's time zone), both ends
-- inclusive; NULL means open (not stated).
ALTER TABLE areas DROP CONSTRAINT areas_parent_code_fkey;
ALTER TABLE areas DROP CONSTRAINT areas_pkey;
ALTER TABLE areas
    ADD COLUMN valid_from date,
    ADD COLUMN valid_to date,
    ADD CONSTRAINT areas_period CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_from <= valid_to);
CREATE UNIQUE INDEX areas_version ON areas (code, (coalesce(valid_from, '-infinity'::date)));
-- Before this version areas came only from the shipped data (there was no other way to
-- change them): bring Hà Nam's province and districts to the history shipped with it (they
-- end with the July 2025 reform; their successions are seeded with the shipped data).
-- A new database has no rows yet: nothing to do.
UPDATE areas SET valid_to = DATE '2025-06-30'
 WHERE code IN ('35', '347', '349', '350', '351', '352', '353');

-- From `effective` on, new_code took over old_code (whole: share 1, or that share of it).
CREATE TABLE area_successions (
    old_code  text NOT NULL,
    new_code  text NOT NULL,
    effective date NOT NULL,
    share     double precision NOT NULL DEFAULT 1 CHECK (share > 0 AND share <= 1),
    PRIMARY KEY (old_code, effective, new_code)
);
CREATE INDEX area_successions_new ON area_successions (new_code);

-- Ratio KPIs with what they divide: labels for the numerator and denominator, and whether
-- the numerator is a part of the denominator (so never above it).
ALTER TABLE kpis
    ADD COLUMN numerator_vi text NOT NULL DEFAULT '',
    ADD COLUMN numerator_en text NOT NULL DEFAULT '',
    ADD COLUMN denominator_vi text NOT NULL DEFAULT '',
    ADD COLUMN denominator_en text NOT NULL DEFAULT '',
    ADD COLUMN numerator_within boolean NOT NULL DEFAULT true;

-- A ratio reading may carry its numerator and denominator (then it adds up over areas and
-- time); one without them is a bare percentage, shown but never aggregated.
ALTER TABLE readings
    ADD COLUMN numerator double precision,
    ADD COLUMN denominator double precision,
    ADD CONSTRAINT readings_fraction CHECK ((numerator IS NULL) = (denominator IS NULL)
        AND (numerator IS NULL OR (numerator >= 0 AND denominator > 0)));
