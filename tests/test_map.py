"""The map's data (issue 14 item 3): unit positions in the unit CSV and the shipped data,
`ioc areas import-geojson` (hard checks, simplification, all or nothing) against a real
PostgreSQL, `GET /api/v1/areas/geometry`, and what the hub sends a map tile."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from dashboards import LAYOUTS
from ioc.core.catalogue.area_files import read_area_csv
from ioc.core.catalogue.areas import AreaSetError
from ioc.core.catalogue.boundaries import MAX_BYTES, BoundaryError, read_boundaries
from ioc.core.catalogue.boundary_import import import_boundaries
from ioc.core.catalogue.model import Area
from ioc.core.catalogue.shipped import shipped_areas
from ioc.core.catalogue.simplify import LocalPlane, segment_distance
from ioc.core.storage import catalogue
from ioc.serve.wall import hub as hub_module
from ioc.serve.wall.layout import LayoutError, load_presets, parse_layout
from tests.conftest import REPO
from tests.helpers import staff_logins
from tests.rigs.serve import ServeProcess
from tests.test_cli import ioc

# a zone of this module's own (nothing shipped changes): MAPZ with three sub-zones
ZONES = [Area(code="MAPZ", parent_code=None, level="zone", name_vi="Khu bản đồ", name_en="Map Zone"),
         Area(code="MAPZ1", parent_code="MAPZ", level="zone", name_vi="Khu Một", name_en="Zone One"),
         Area(code="MAPZ2", parent_code="MAPZ", level="zone", name_vi="Khu Hai", name_en="Zone Two",
              lat=20.6, lon=105.95),
         Area(code="MAPZ3", parent_code="MAPZ", level="zone", name_vi="Khu Ba", name_en="Zone Three"),
         Area(code="MAPZ4", parent_code="MAPZ", level="zone", name_vi="Khu Bốn", name_en="Zone Four")]


def wobbly(lon: float, lat: float, radius: float, n: int, phase: float = 0.0) -> list[list[float]]:
    """A closed ring of n vertices: a circle with a slow wave (a coastline-like border)."""
    ring = [[lon + radius * (1 + 0.08 * math.sin(7 * a + phase)) * math.cos(a),
             lat + radius * (1 + 0.08 * math.sin(7 * a + phase)) * math.sin(a)]
            for a in (2 * math.pi * k / n for k in range(n))]
    return ring + [ring[0]]


def feature(code: Any, geometry: dict[str, Any], prop: str = "code") -> dict[str, Any]:
    return {"type": "Feature", "properties": {prop: code, "name": "x"}, "geometry": geometry}


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def collection(*features: dict[str, Any], **more: Any) -> bytes:
    return orjson.dumps({"type": "FeatureCollection", "features": list(features), **more})


# -- positions in the unit CSV and the shipped data ------------------------------------------

def test_unit_csv_takes_optional_positions_and_names_bad_ones() -> None:
    head = "code,parent_code,level,name_vi,name_en,valid_from,valid_to,lat,lon\n"
    areas, _ = read_area_csv(head + "Z1,,zone,Khu,Zone,,,20.5,105.9\nZ2,,zone,Khu hai,Two,,,,\n", "u.csv")
    assert [(a.area.lat, a.area.lon) for a in areas] == [(20.5, 105.9), (None, None)]
    with pytest.raises(AreaSetError) as bad:
        read_area_csv(head + "Z1,,zone,Khu,Zone,,,north,105.9\nZ2,,zone,K,Z,,,20.5,\nZ3,,zone,K,Z,,,95,105\n", "u.csv")
    assert bad.value.problems[0] == "u.csv row 2, column lat: 'north' is not a number"
    assert "u.csv row 3" in bad.value.problems[1] and "lat and lon go together" in bad.value.problems[1]
    assert bad.value.problems[2].startswith("u.csv row 4, column lat:")


def test_shipped_positions_are_the_seats_stated_and_no_more() -> None:
    placed = {(a.code, a.valid_from): (a.lat, a.lon) for a in shipped_areas() if a.lat is not None}
    codes = {code for code, _ in placed}
    # the three old provinces (the new Ninh Bình at the old one's seat) and Hà Nam's six
    # district-level units; no commune is placed by guesswork
    assert codes == {"35", "36", "37", "347", "349", "350", "351", "352", "353"}
    for lat, lon in placed.values():
        assert 20.0 < lat < 20.8 and 105.7 < lon < 106.4  # within the three provinces
    assert not [a for a in shipped_areas() if a.level == "commune" and a.lat is not None]


# -- reading and simplifying a boundary file --------------------------------------------------

def test_simplification_drops_vertices_and_keeps_the_shape_within_tolerance() -> None:
    ring = wobbly(105.9, 20.5, 0.02, 2000)
    hole = wobbly(105.9, 20.5, 0.004, 400)[::-1]
    tiny_hole = wobbly(105.91, 20.51, 0.00005, 40)[::-1]  # ~5 m across: below the tolerance
    island = wobbly(105.95, 20.5, 0.003, 300)
    doc = collection(feature("A", {"type": "MultiPolygon", "coordinates": [[ring, hole, tiny_hole], [island]]}))
    [b] = read_boundaries(doc, "f.geojson", {"A"}, tolerance_m=25)
    assert b.source_vertices == 2001 + 401 + 41 + 301
    assert b.vertices < b.source_vertices / 5
    polys = b.geometry["coordinates"]
    assert b.geometry["type"] == "MultiPolygon" and len(polys) == 2
    assert len(polys[0]) == 2, "the hole smaller than the tolerance is dropped, the other kept"
    # every vertex of the file lies within the tolerance of the simplified ring it belongs to
    plane = LocalPlane(105.9, 20.5)
    for source, simple in ((ring, polys[0][0]), (hole, polys[0][1]), (island, polys[1][0])):
        assert simple[0] == simple[-1] and len(simple) >= 4
        s = [plane.to_xy(p) for p in simple]
        worst = max(min(segment_distance(plane.to_xy(p), a, c) for a, c in zip(s, s[1:])) for p in source)
        assert worst <= 25 * 1.01, worst
    # the centroid: the ring's middle, pulled east a little by the island, and not at all by the hole's place
    assert abs(b.lat - 20.5) < 0.001 and 105.9 < b.lon < 105.903


BAD_FILES: list[tuple[bytes, str]] = [
    (b"{not json", "f.geojson: not JSON"),
    (orjson.dumps({"type": "Feature"}), "not a GeoJSON FeatureCollection"),
    (collection(feature("A", {"type": "Point", "coordinates": [105.9, 20.5]})),
     "f.geojson feature 0 (code A): geometry type 'Point': only Polygon and MultiPolygon are boundaries"),
    (collection(feature("NOPE", polygon(wobbly(105.9, 20.5, 0.01, 10)))),
     "f.geojson feature 0 (code NOPE): code NOPE is not a known unit"),
    (collection(feature("A", polygon(wobbly(105.9, 20.5, 0.01, 10))), feature("A", polygon(wobbly(105.8, 20.5, 0.01, 10)))),
     "f.geojson feature 1 (code A): code A again (feature 0 has it already)"),
    (collection(feature("A", polygon([[590000.0, 2270000.0], [591000.0, 2270000.0], [591000.0, 2271000.0], [590000.0, 2270000.0]]))),
     "f.geojson feature 0 (code A): polygon 0 ring 0 position 0: (590000, 2.27e+06) is out of range for longitude/latitude: "
     "is the file projected (metres)?"),
    (b'{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"code":"A"},"geometry":{"type":"Polygon",'
     b'"coordinates":[[[105.9,20.5],[1e999,20.5],[105.9,20.6],[105.9,20.5]]]}}]}', "f.geojson"),
    (collection(feature("A", polygon([[105.9, 20.5], [105.91, 20.5], [105.91, 20.51], [105.9, 20.51]]))),
     "f.geojson feature 0 (code A): polygon 0 ring 0: not closed"),
    (collection(feature("A", polygon([[105.9, 20.5], [105.91, 20.5], [105.9, 20.5]]))), "needs at least 4 positions"),
    (collection(feature("A", polygon([[105.9, "20.5"], [105.91, 20.5], [105.91, 20.51], [105.9, "20.5"]]))), "not numbers"),
    (collection(feature(None, polygon(wobbly(105.9, 20.5, 0.01, 10)))), "f.geojson feature 0: no unit code in property 'code'"),
    (collection(feature("A", polygon(wobbly(105.9, 20.5, 0.01, 10))),
                crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3405"}}),
     "coordinate reference system 'urn:ogc:def:crs:EPSG::3405'"),
    (collection(), "f.geojson: no features"),
]


@pytest.mark.parametrize("data, words", BAD_FILES)
def test_bad_files_are_refused_naming_the_feature(data: bytes, words: str) -> None:
    with pytest.raises(BoundaryError) as bad:
        read_boundaries(data, "f.geojson", {"A"})
    assert any(words in p for p in bad.value.problems), bad.value.problems


def test_every_bad_feature_is_named_at_once() -> None:
    good = feature("A", polygon(wobbly(105.9, 20.5, 0.01, 10)))
    doc = collection(good, feature("B", {"type": "LineString", "coordinates": []}), feature("C", polygon([[1, 2]])))
    with pytest.raises(BoundaryError) as bad:
        read_boundaries(doc, "f.geojson", {"A", "B", "C"})
    assert [p.split(":")[0] for p in bad.value.problems] == ["f.geojson feature 1 (code B)", "f.geojson feature 2 (code C)"]


# -- importing into PostgreSQL: all or nothing ------------------------------------------------

async def zones(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await catalogue.store_areas(conn, ZONES, [])
            await catalogue.notify_changed(conn, "areas")
        await conn.execute("UPDATE areas SET lat = NULL, lon = NULL WHERE code IN ('MAPZ1', 'MAPZ3', 'MAPZ4')")
        await conn.execute("DELETE FROM area_boundaries WHERE code LIKE 'MAPZ%'")


async def _state(pool: asyncpg.Pool) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with pool.acquire() as conn:
        b = await conn.fetch("SELECT code, geometry::text, vertices FROM area_boundaries ORDER BY code")
        a = await conn.fetch("SELECT code, valid_from, lat, lon FROM areas ORDER BY code, valid_from NULLS FIRST")
    return [tuple(r) for r in b], [tuple(r) for r in a]


def zone_file(*bad: dict[str, Any]) -> bytes:
    return collection(feature("MAPZ1", polygon(wobbly(105.90, 20.55, 0.02, 500))),
                      feature("MAPZ2", polygon(wobbly(105.95, 20.60, 0.02, 500, 1.0))), *bad)


async def test_import_is_all_or_nothing_and_fills_missing_positions(pool: asyncpg.Pool) -> None:
    await zones(pool)
    before = await _state(pool)
    async with pool.acquire() as conn:
        for data in (zone_file(feature("MAPZ3", {"type": "Point", "coordinates": [0, 0]})),
                     zone_file(feature("MAPZ9", polygon(wobbly(105.9, 20.5, 0.01, 10))))):
            with pytest.raises(BoundaryError):
                await import_boundaries(conn, data, "zones.geojson", actor="test")
            assert await _state(pool) == before  # the good features of a bad file are not stored either
        result = await import_boundaries(conn, zone_file(), "zones.geojson", actor="test", tolerance_m=20)
        assert (result.features, result.source_vertices) == (2, 1002) and result.vertices < 200
        assert result.positioned == 1  # MAPZ1 had no position; MAPZ2's stated one stays
        rows = {r["code"]: r for r in await conn.fetch("SELECT code, lat, lon FROM areas WHERE code LIKE 'MAPZ%'")}
        assert abs(rows["MAPZ1"]["lat"] - 20.55) < 0.002 and abs(rows["MAPZ1"]["lon"] - 105.90) < 0.002
        assert (rows["MAPZ2"]["lat"], rows["MAPZ2"]["lon"]) == (20.6, 105.95)
        assert rows["MAPZ3"]["lat"] is None
        audit = await conn.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'areas.boundaries_imported' "
                                    "ORDER BY id DESC LIMIT 1")
        assert audit["actor"] == "test" and orjson.loads(audit["details"])["features"] == 2


async def test_cli_import_geojson_says_what_it_did_and_refuses_huge_files(db_url: str, pool: asyncpg.Pool,
                                                                          tmp_path: Path) -> None:
    await zones(pool)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": db_url, "IOC_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)})
    good = tmp_path / "zones.geojson"
    good.write_bytes(collection(feature("MAPZ1", polygon(wobbly(105.90, 20.55, 0.02, 300)), "ma")))
    out = ioc(env, "areas", "import-geojson", str(good), "--code-property", "ma", "--tolerance", "40")
    assert out.returncode == 0, out.stderr
    assert "imported 1 boundary: 301 vertices simplified to" in out.stdout and "(tolerance 40 m)" in out.stdout
    before = await _state(pool)
    huge = tmp_path / "huge.geojson"
    with huge.open("wb") as f:  # sparse: the size is what counts, refused before it is read
        f.truncate(MAX_BYTES + 1)
    out = ioc(env, "areas", "import-geojson", str(huge))
    assert out.returncode == 2 and f"more than the limit of {MAX_BYTES}" in out.stderr
    bad = tmp_path / "bad.geojson"
    bad.write_bytes(collection(feature("MAPZ1", polygon([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]))))
    out = ioc(env, "areas", "import-geojson", str(bad))
    assert out.returncode == 1
    assert "bad.geojson feature 0 (code MAPZ1): polygon 0 ring 0: a ring needs at least 4 positions" in out.stderr
    assert "nothing imported: 1 problem(s)" in out.stderr
    assert await _state(pool) == before


# -- the API ------------------------------------------------------------------------------

async def test_geometry_api_gives_boundaries_positions_and_nothing_invented(
        pool: asyncpg.Pool, wall_api: ServeProcess) -> None:
    await zones(pool)
    async with pool.acquire() as conn:
        await import_boundaries(conn, collection(feature("MAPZ1", polygon(wobbly(105.90, 20.55, 0.02, 200)))),
                                "z.geojson", actor="test")
    _, tokens = await staff_logins(pool, wall_api.base, "geo", roles=("leader",))
    async with httpx.AsyncClient(base_url=wall_api.base, timeout=10) as http:
        auth = {"Authorization": f"Bearer {tokens['leader']}"}
        r = await http.get("/api/v1/areas/geometry", params={"area": "MAPZ", "level": "zone"}, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        units = {u["code"]: u for u in body["units"]}
        assert set(units) == {"MAPZ1", "MAPZ2", "MAPZ3", "MAPZ4"}
        assert units["MAPZ1"]["boundary"]["type"] == "MultiPolygon" and units["MAPZ1"]["lat"] is not None
        assert units["MAPZ2"]["boundary"] is None and (units["MAPZ2"]["lat"], units["MAPZ2"]["lon"]) == (20.6, 105.95)
        assert units["MAPZ3"]["boundary"] is None and units["MAPZ3"]["lat"] is None  # listed, never placed
        w, s, e, n = body["bbox"]
        assert w < 105.89 and e >= 105.95 and s < 20.54 and n >= 20.6
        # the shipped districts below the new province, across the reform, at their seats
        r = await http.get("/api/v1/areas/geometry", params={"area": "37", "level": "district"}, headers=auth)
        assert sorted(u["code"] for u in r.json()["units"]) == ["347", "349", "350", "351", "352", "353"]
        assert all(u["lat"] is not None for u in r.json()["units"])
        assert (await http.get("/api/v1/areas/geometry", params={"area": "MAPZ", "level": "x"}, headers=auth)).status_code == 422
        assert (await http.get("/api/v1/areas/geometry", params={"area": "NOPE", "level": "zone"}, headers=auth)).status_code == 404
        assert (await http.get("/api/v1/areas/geometry", params={"area": "MAPZ", "level": "zone"})).status_code == 401


# -- what the hub sends a map tile --------------------------------------------------------

def test_hub_sends_the_map_readings_health_and_alerts_at_most_once_a_tick() -> None:
    from ioc.core.contracts import kpi, topics

    hub = hub_module.Hub(load_presets(LAYOUTS))
    hub.set_catalogue({}, {"pl-01": "Ngã tư Lê Hoàn"})  # the registry read: every tile built
    tile = next(t for t in hub.layout.tiles if t.kind == "map")  # the overview's (dashboards/layouts)
    first = orjson.loads(hub.last[tile.id][0])["data"]
    assert (first["kpi"], first["area"], first["changed_at"]) == ("tthc.on_time_rate", "37", None)
    seq = orjson.loads(hub.last[tile.id][0])["seq"]
    # readings of the map's KPI for any unit: one message at the next tick, not one per reading
    for area, at in (("13285", 1793600000.5), ("13291", 1793600001.5)):
        hub.on_message(topics.live_kpi("tthc.on_time_rate", area),
                       kpi.encode_live("tthc.on_time_rate", area, "2026-11-02T08:15:00+07:00", 97, 0, "tthc", at), 0, 1, True, 1)
    assert orjson.loads(hub.last[tile.id][0])["seq"] == seq
    hub.on_message(topics.live_camera("pl-01", "status"), orjson.dumps({"camera": "pl-01", "state": "offline"}), 0, 1, True, 1)
    hub.set_alerts([{"id": 7, "severity": "critical", "camera": "pl-01", "area": None, "ended_at": None,
                     "message_vi": "Camera mất tín hiệu", "message_en": "Camera offline", "started_at": None},
                    {"id": 8, "severity": "warning", "camera": None, "area": "13285", "ended_at": None,
                     "message_vi": "x", "message_en": "x", "started_at": None},
                    {"id": 9, "severity": "warning", "camera": None, "area": None, "ended_at": None,
                     "message_vi": "agency", "message_en": "agency", "started_at": None}])
    hub.tick()
    msg = orjson.loads(hub.last[tile.id][0])
    assert msg["seq"] == seq + 1 and msg["kind"] == "map"
    data = msg["data"]
    assert data["changed_at"] == 1793600001.5
    assert {"id": "pl-01", "name": "Ngã tư Lê Hoàn", "state": "offline"} in data["cameras"]
    assert [a["id"] for a in data["alerts"]] == [7, 8]  # only those the map can place
    hub.tick()
    assert orjson.loads(hub.last[tile.id][0])["seq"] == seq + 1  # nothing new: nothing sent


def test_a_map_tile_needs_its_kpi_and_area() -> None:
    tile = {"id": "m", "kind": "map", "x": 0, "y": 0, "w": 4, "h": 4, "kpi": "tthc.on_time_rate"}
    with pytest.raises(LayoutError, match="a map tile needs `kpi` and `area`"):
        parse_layout({"id": "x", "name_vi": "X", "tiles": [tile]})
    layout = parse_layout({"id": "x", "name_vi": "X", "tiles": [{**tile, "area": "37", "level": "commune"}]})
    assert layout.tiles[0].level == "commune"
    with pytest.raises(LayoutError, match="level"):
        parse_layout({"id": "x", "name_vi": "X", "tiles": [{**tile, "area": "37", "level": "street"}]})
