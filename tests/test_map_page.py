"""The map tile in a real Chromium against a real `ioc serve`, ingest and PostgreSQL: units
coloured by the values of /breakdown with a legend (a value ramp, or meets/misses a target),
a unit with a boundary drawn as its shape, one with only a position as a circle, one with
neither listed as "no position", grey for no data, cameras with their health and alerts as
markers, a click dispatching `ioc-drill`, and new values after a live reading."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import orjson
from playwright.async_api import Browser, Page, expect

from ioc.core.catalogue.boundary_import import import_boundaries
from tests.conftest import Agencies, IngestProcess
from tests.helpers import staff_logins
from tests.rigs.serve import ServeProcess
from tests.test_agency_reports import call, login
from tests.test_docs_offline import browser  # noqa: F401 - the module's Chromium, shared
from tests.test_map import collection, feature, polygon, wobbly, zones
from tests.test_wall_pages import SHOTS, Site, Watch, log_in

CAMERAS = [("mapcam-1", "Ngã tư thử", 20.52, 105.94), ("mapcam-2", "Cầu thử", 20.62, 105.875)]
PAGE = """<!doctype html><html lang="vi"><head><meta charset="utf-8"><link rel="stylesheet" href="css/wall.css">
<style>#host { width: 1200px; height: 700px; position: relative; display: flex; }</style></head>
<body><div id="host"></div></body></html>"""
# a tile as every page makes one (tiles.js), its REST calls with the leader's token
MOUNT = """async ({ token, def, data, past }) => {
  const { createTile } = await import("./js/tiles.js");
  const api = async (path) => {
    const r = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    if (!r.ok) throw new Error(`${path}: ${r.status}`);
    return r.json();
  };
  const ctx = { lang: () => "vi", serverNow: () => Date.now() / 1000, api, pastSeries: past || undefined };
  const tile = createTile(def, ctx);
  tile.el.style.width = "100%";
  const host = document.getElementById("host");
  host.replaceChildren(tile.el);
  window.__drills = [];
  tile.el.addEventListener("ioc-drill", (ev) => window.__drills.push(ev.detail));
  tile.update(data);
  window.__tile = tile;
}"""


async def readings(wall_api: ServeProcess, auth: dict[str, str], items: list[dict[str, Any]]) -> None:
    """Posted until accepted: the ingest may still be reloading the units this module added."""
    deadline = time.monotonic() + 20
    while True:
        r = await call(wall_api, "POST", "/api/v1/agency/readings", auth, content=orjson.dumps(items))
        rows = r.json()["results"]
        if all(row["status"] in ("accepted", "corrected") for row in rows):
            return
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.5)


def tile_data(kpi: str, changed_at: str | None = None) -> dict[str, Any]:
    return {"kpi": kpi, "area": "MAPZ", "level": "zone", "changed_at": changed_at,
            "cameras": [{"id": "mapcam-1", "name": "Ngã tư thử", "state": "ok"},
                        {"id": "mapcam-2", "name": "Cầu thử", "state": "offline"}],
            "alerts": [{"id": 1, "severity": "critical", "camera": "mapcam-2", "area": None,
                        "message_vi": "Camera Cầu thử: mất tín hiệu", "message_en": "Camera offline"},
                       {"id": 2, "severity": "warning", "camera": None, "area": "MAPZ2",
                        "message_vi": "AQI vượt mục tiêu", "message_en": "AQI above target"}]}


async def mount(page: Page, token: str, kpi: str, area: str = "MAPZ", level: str = "zone", past: bool = False) -> None:
    await page.evaluate(MOUNT, {"token": token, "data": tile_data(kpi), "past": past, "def": {
        "id": "m", "kind": "map", "kpi": kpi, "area": area, "level": level, "x": 0, "y": 0, "w": 4, "h": 4,
        "title_vi": "Bản đồ thử", "title_en": "Test map"}})


async def test_map_tile_draws_units_by_value_with_markers_and_drills_down(
    pool: asyncpg.Pool, agencies: Agencies, ingest: IngestProcess, wall_api: ServeProcess,
    browser: Browser,  # noqa: F811 - the imported fixture
) -> None:
    await zones(pool)
    async with pool.acquire() as conn:
        await import_boundaries(conn, collection(feature("MAPZ1", polygon(wobbly(105.90, 20.55, 0.02, 300))),
                                                 feature("MAPZ4", polygon(wobbly(105.98, 20.55, 0.02, 300, 2.0)))),
                                "zones.geojson", actor="test")
        await conn.executemany("INSERT INTO cameras (id, name, lat, lon, stream_url, mode) VALUES ($1, $2, $3, $4, "
                               "'rtsp://test', 'sub-full') ON CONFLICT (id) DO UPDATE SET lat = EXCLUDED.lat, lon = EXCLUDED.lon",
                               CAMERAS)
    agency, pw = await agencies.add(["tthc", "mt"], prefix="map")
    auth = await login(wall_api, agency, pw)
    at = (datetime.now(timezone.utc) - timedelta(seconds=90)).isoformat()
    await readings(wall_api, auth, [
        {"kpi": "tthc.dossiers_received", "area": "MAPZ1", "ts": at, "value": 10},
        {"kpi": "tthc.dossiers_received", "area": "MAPZ2", "ts": at, "value": 30},
        {"kpi": "mt.aqi", "area": "MAPZ1", "ts": at, "value": 50},
        {"kpi": "mt.aqi", "area": "MAPZ2", "ts": at, "value": 150},
    ])
    _, tokens = await staff_logins(pool, wall_api.base, "mapp", roles=("leader",))

    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="vi-VN", timezone_id="Europe/Paris")
    foreign: list[str] = []
    errors: list[str] = []
    page = await ctx.new_page()
    page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith((wall_api.base, "data:", "blob:")) else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.route(f"{wall_api.base}/wall/map-test.html", lambda route: route.fulfill(body=PAGE, content_type="text/html"))
    try:
        await page.goto(f"{wall_api.base}/wall/map-test.html")
        await mount(page, tokens["leader"], "tthc.dossiers_received")
        tile = page.locator(".tile-map")
        await expect(tile).to_have_attribute("data-units", "3", timeout=15000)
        unit = lambda code: tile.locator(f'.map-unit[data-code="{code}"]')  # noqa: E731
        # a value ramp (no target): each unit its own colour, the legend from lowest to highest
        await expect(tile).to_have_attribute("data-mode", "value")
        assert await unit("MAPZ1").evaluate("e => e.tagName") == "path"
        assert await unit("MAPZ1").get_attribute("data-value") == "10"
        assert await unit("MAPZ2").evaluate("e => e.tagName") == "circle"  # a position, no boundary
        assert await unit("MAPZ2").get_attribute("data-value") == "30"
        fills = [await unit(c).get_attribute("fill") for c in ("MAPZ1", "MAPZ2", "MAPZ4")]
        assert len(set(fills)) == 3, fills
        assert await unit("MAPZ4").get_attribute("class") == "map-unit no-data"  # a boundary, no reading
        await expect(unit("MAPZ4").locator("title")).to_have_text("Khu Bốn: Chưa có số liệu")
        await expect(tile.locator(".map-key.ramp")).to_have_text("1030 hồ sơ")
        await expect(tile.locator(".map-key.no-data")).to_have_text("Chưa có số liệu")
        # neither boundary nor position: listed beside the map, never placed
        await expect(tile.locator(".map-unplaced-title")).to_have_text("Chưa có vị trí trên bản đồ (1)")
        await expect(tile.locator('.map-unplaced-unit[data-code="MAPZ3"]')).to_have_text("Khu Ba: Chưa có số liệu")
        # cameras with their health, alerts where their camera or unit is
        await expect(tile.locator('.map-camera[data-camera="mapcam-1"]')).to_have_class("map-camera ok")
        await expect(tile.locator('.map-camera[data-camera="mapcam-2"]')).to_have_class("map-camera bad")
        await expect(tile.locator(".map-alert")).to_have_count(2)
        await expect(tile).to_have_attribute("data-cameras", "2")  # the frame takes in the cameras at its edge
        await page.screenshot(path=str(SHOTS / "map-tile-value.png"))

        # a click on a unit asks for its drill-down
        await unit("MAPZ1").click()
        await unit("MAPZ4").focus()  # and from the keyboard (a unit is focusable)
        await page.keyboard.press("Enter")
        drills = await page.evaluate("window.__drills")
        assert drills == [{"kpi": "tthc.dossiers_received", "area": "MAPZ1", "level": "zone"},
                          {"kpi": "tthc.dossiers_received", "area": "MAPZ4", "level": "zone"}]

        # a live reading: the hub's message says the KPI changed, the tile asks for the values again
        fetches = int(await tile.get_attribute("data-fetches") or 0)
        later = (datetime.now(timezone.utc) - timedelta(seconds=30)).isoformat()
        await readings(wall_api, auth, [{"kpi": "tthc.dossiers_received", "area": "MAPZ1", "ts": later, "value": 5}])
        await page.evaluate("(d) => window.__tile.update(d)", tile_data("tthc.dossiers_received", later))
        await expect(unit("MAPZ1")).to_have_attribute("data-value", "15", timeout=20000)
        assert int(await tile.get_attribute("data-fetches") or 0) == fetches + 1

        # a KPI with a target: meets / misses (in a replay of the past: as the figures were known then)
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/api/v1/breakdown" in r.url else None)
        await mount(page, tokens["leader"], "mt.aqi", past=True)
        await expect(tile).to_have_attribute("data-mode", "status", timeout=15000)
        await expect(unit("MAPZ1")).to_have_attribute("data-status", "meets")
        await expect(unit("MAPZ2")).to_have_attribute("data-status", "misses")
        assert await unit("MAPZ1").get_attribute("fill") != await unit("MAPZ2").get_attribute("fill")
        assert asked and all("as_of=" in u for u in asked), asked
        await expect(tile.locator(".map-key.meets")).to_contain_text("Đạt mục tiêu (≤ 100")
        await expect(tile.locator(".map-key.misses")).to_have_text("Chưa đạt mục tiêu")
        await page.screenshot(path=str(SHOTS / "map-tile-status.png"))

        # the shipped communes have no position: the map says so and lists them, placing none
        await mount(page, tokens["leader"], "tthc.dossiers_received", area="37", level="commune")
        await expect(tile).to_have_attribute("data-level", "commune", timeout=15000)
        await expect(tile).to_have_attribute("data-units", "0")
        await expect(tile.locator(".chart-msg")).to_have_text("Chưa có ranh giới hay vị trí của các đơn vị này")
        assert int(await tile.get_attribute("data-unplaced") or 0) >= 90
        assert not errors, errors
        assert not foreign, foreign
    finally:
        await ctx.close()


async def test_tablet_taps_a_unit_on_the_walls_map_and_drills_down(
    pool: asyncpg.Pool, wall_api: ServeProcess, browser: Browser,  # noqa: F811 - the imported fixture
) -> None:
    """The map of a wall layout on the tablet: a tap on a unit opens its drill-down (drill.js
    listens for the map's `ioc-drill`). A commune is given a position for this test only."""
    users, tokens = await staff_logins(pool, wall_api.base, "mapt", roles=("admin", "operator", "leader"))
    site = Site(wall_api, tokens, users)
    layout = {"id": "mp-test", "name_vi": "Bản đồ thử", "name_en": "Map test", "cols": 12, "rows": 12, "tiles": [
        {"id": "mp-map", "kind": "map", "kpi": "tthc.on_time_rate", "area": "37", "x": 4, "y": 4, "w": 4, "h": 4,
         "title_vi": "Đúng hạn theo xã", "title_en": "On time by commune"}]}
    async with pool.acquire() as conn:
        await conn.execute("UPDATE areas SET lat = 20.55, lon = 105.91 WHERE code = '13291'")
    await site.call("PUT", "/api/v1/wall/layouts/mp-test", role="admin", json=layout)
    await site.show("mp-test")
    ctx = await browser.new_context(viewport={"width": 800, "height": 1200}, locale="vi-VN", has_touch=True)
    watch = Watch(site.base)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{site.base}/wall/tablet.html")
        await log_in(page, users["leader"])
        await expect(page.locator("body")).to_have_attribute("data-layout", "mp-test", timeout=15000)
        unit = page.locator('.tile-map .map-unit[data-code="13291"]')
        await expect(unit).to_have_attribute("data-drawn", "circle", timeout=15000)
        await unit.tap()
        panel = page.locator(".drill")
        await expect(panel).to_be_visible()
        await expect(panel).to_have_attribute("data-area", "13291", timeout=15000)
        await expect(panel).to_have_attribute("data-kpi", "tthc.on_time_rate")
        assert not watch.errors, watch.errors
        assert not watch.foreign(), watch.foreign()
    finally:
        await ctx.close()
        await site.show("overview")
        async with pool.acquire() as conn:
            await conn.execute("UPDATE areas SET lat = NULL, lon = NULL WHERE code = '13291'")
