"""Unit boundaries from an admin's GeoJSON, checked hard and simplified for the wall.

A boundary file comes from outside (a survey office, an export from a GIS), so everything is
checked before anything is stored: the file's size, that it is JSON, a FeatureCollection of
Polygon/MultiPolygon features in WGS 84 longitude/latitude, each naming a known unit once,
with finite coordinates in range (projected metres, the usual mistake, are said to be so).
Every problem names the feature (its index and, when it has one, its code), all at once.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from ioc.core.catalogue.simplify import LocalPlane, Point, ring_area, simplify_ring

MAX_BYTES = 64 * 1024 * 1024
MAX_FEATURES = 20_000
MAX_VERTICES = 5_000_000
MAX_PROBLEMS = 50  # a broken file of 20,000 features is told its first problems, not a novel
DEFAULT_TOLERANCE_M = 30.0
MAX_TOLERANCE_M = 5_000.0
DIGITS = 6  # about 0.1 m: the stored, simplified coordinates are rounded to this
_WGS84 = ("urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84", "urn:ogc:def:crs:EPSG::4326", "EPSG:4326")


@dataclass(frozen=True)
class Boundary:
    code: str
    geometry: dict[str, Any]  # GeoJSON MultiPolygon, simplified, [lon, lat] rounded
    vertices: int
    source_vertices: int
    lat: float  # centroid (area-weighted, of the file's own geometry)
    lon: float


class BoundaryError(ValueError):
    """The file cannot be imported; `problems` names each feature at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Bad(ValueError):
    pass


def read_boundaries(data: bytes, name: str, known: Collection[str], *, code_property: str = "code",
                    tolerance_m: float = DEFAULT_TOLERANCE_M) -> list[Boundary]:
    """Every feature's simplified boundary, or BoundaryError listing the problems."""
    if not (math.isfinite(tolerance_m) and 0 <= tolerance_m <= MAX_TOLERANCE_M):
        raise BoundaryError([f"--tolerance must be 0-{MAX_TOLERANCE_M:g} m, got {tolerance_m}"])
    if len(data) > MAX_BYTES:
        raise BoundaryError([f"{name}: {len(data)} bytes, more than the limit of {MAX_BYTES} "
                             "(simplify the file or split it by district)"])
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BoundaryError([f"{name}: not JSON: {str(exc)[:200]}"]) from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise BoundaryError([f"{name}: not a GeoJSON FeatureCollection (an object with \"type\": "
                             "\"FeatureCollection\" and a \"features\" list)"])
    crs = _crs_name(doc.get("crs"))
    if crs is not None and crs not in _WGS84:
        raise BoundaryError([f"{name}: coordinate reference system {crs[:80]!r}: export the file in WGS 84 "
                             "longitude/latitude (EPSG:4326)"])
    features = doc["features"]
    if len(features) > MAX_FEATURES:
        raise BoundaryError([f"{name}: {len(features)} features, more than the limit of {MAX_FEATURES}"])
    problems: list[str] = []
    out: list[Boundary] = []
    seen: dict[str, int] = {}
    total = 0
    for i, feature in enumerate(features):
        where = f"{name} feature {i}"
        try:
            code = _code(feature, code_property)
            where += f" (code {code})"
            if code in seen:
                raise _Bad(f"code {code} again (feature {seen[code]} has it already)")
            seen[code] = i
            if code not in known:
                raise _Bad(f"code {code} is not a known unit: import it first with `ioc areas import`")
            polygons = _polygons(feature.get("geometry"))
            total += sum(len(r) for p in polygons for r in p)
            if total > MAX_VERTICES:
                problems.append(f"{where}: the file has more than {MAX_VERTICES} vertices: simplify or split it")
                break
            out.append(_simplified(code, polygons, tolerance_m))
        except _Bad as exc:
            problems.append(f"{where}: {exc}")
            if len(problems) >= MAX_PROBLEMS:
                problems.append(f"{name}: stopped after {MAX_PROBLEMS} problems")
                break
    if problems:
        raise BoundaryError(problems)
    if not out:
        raise BoundaryError([f"{name}: no features"])
    return out


def _crs_name(crs: Any) -> str | None:
    if crs is None:
        return None
    props = crs.get("properties") if isinstance(crs, dict) else None
    value = props.get("name") if isinstance(props, dict) else None
    return str(value) if value is not None else repr(crs)[:80]


def _code(feature: Any, prop: str) -> str:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise _Bad("not a GeoJSON Feature")
    props = feature.get("properties")
    value = props.get(prop) if isinstance(props, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise _Bad(f"no unit code in property {prop!r} (choose the property with --code-property)")
    return str(value).strip()


def _polygons(geometry: Any) -> list[list[list[Point]]]:
    """The geometry as a list of polygons (each a list of closed rings of (lon, lat))."""
    if not isinstance(geometry, dict):
        raise _Bad("no geometry")
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        raw = [coords]
    elif kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise _Bad("a MultiPolygon needs a non-empty list of polygons")
        raw = coords
    else:
        raise _Bad(f"geometry type {str(kind)[:40]!r}: only Polygon and MultiPolygon are boundaries")
    return [[_ring(r, pi, ri) for ri, r in enumerate(_list(p, f"polygon {pi}"))] for pi, p in enumerate(raw)]


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _Bad(f"{what}: not a non-empty list of rings")
    return value


def _ring(raw: Any, pi: int, ri: int) -> list[Point]:
    what = f"polygon {pi} ring {ri}"
    if not isinstance(raw, list) or len(raw) < 4:
        raise _Bad(f"{what}: a ring needs at least 4 positions (closed)")
    ring: list[Point] = []
    for k, pos in enumerate(raw):
        if not isinstance(pos, list) or not 2 <= len(pos) <= 3:
            raise _Bad(f"{what} position {k}: not [longitude, latitude]")
        lon, lat = pos[0], pos[1]
        if isinstance(lon, bool) or isinstance(lat, bool) or not isinstance(lon, (int, float)) or not isinstance(lat, (int, float)):
            raise _Bad(f"{what} position {k}: not numbers")
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise _Bad(f"{what} position {k}: not a finite number")
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise _Bad(f"{what} position {k}: ({lon:g}, {lat:g}) is out of range for longitude/latitude: "
                       "is the file projected (metres)? export it in WGS 84 (EPSG:4326)")
        ring.append((float(lon), float(lat)))
    if ring[0] != ring[-1]:
        raise _Bad(f"{what}: not closed (the last position must repeat the first)")
    return ring


def _simplified(code: str, polygons: list[list[list[Point]]], tolerance_m: float) -> Boundary:
    lons = [p[0] for poly in polygons for p in poly[0]]
    lats = [p[1] for poly in polygons for p in poly[0]]
    plane = LocalPlane((min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2)
    area = cx = cy = 0.0
    out: list[list[list[list[float]]]] = []
    kept = source = 0
    for poly in polygons:
        rings = []
        for ri, ring in enumerate(poly):
            xy = [plane.to_xy(p) for p in ring]
            a, x, y = ring_area(xy)
            # x, y are the centroid times the signed area: weigh by the area itself, and holes
            # take away whichever way they wind
            sign = (1.0 if ri == 0 else -1.0) * (1.0 if a >= 0 else -1.0)
            area += sign * a
            cx += sign * x
            cy += sign * y
            source += len(ring)
            simple = simplify_ring(xy, tolerance_m, minimum=4 if ri == 0 else 0)
            if ri > 0 and len(simple) < 4:
                continue  # a hole smaller than the tolerance: nothing to see on a wall
            rings.append([[round(c, DIGITS) for c in plane.to_lonlat(*p)] for p in simple])
            kept += len(simple)
        out.append(rings)
    if area > 0:
        lon, lat = plane.to_lonlat(cx / area, cy / area)
    else:  # degenerate (zero area): the middle of its extent
        lon, lat = plane.lon0, plane.lat0
    return Boundary(code, {"type": "MultiPolygon", "coordinates": out}, kept, source,
                    round(lat, DIGITS), round(lon, DIGITS))
