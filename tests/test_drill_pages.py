"""Drill-down and rankings (issue 14, item 4) in a real Chromium against a real `ioc serve`,
PostgreSQL, broker and ingest: readings stored through the ingest's write path (and, for the
live update, sent by an agency over MQTT through the ingest); every figure the pages show is
checked against GET /api/v1/breakdown."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, Page, expect

from ingest.store import ReadingStore
from ioc.core.readings import Reading
from ioc.serve.wall.layout import Tile
from ioc.serve.wall.tiledata import newest_received, ranking_data
from tests.conftest import REPO, Agencies, IngestProcess
from tests.helpers import staff_logins
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client as MqttClient
from tests.rigs.serve import ServeProcess
from tests.test_wall_hub import kpi_live, kpi_pub, open_client  # noqa: F401 - kpi_pub: the ingest's publisher
from tests.test_wall_pages import SHOTS, Site, Watch, browser, log_in, slot  # noqa: F401 - browser: the module's Chromium

VN = timezone(timedelta(hours=7))
KPI = "tthc.on_time_rate"
LAYOUT_ID = "dr-test"
# Phủ Lý's wards and a commune of Lý Nhân: after the reform all count for the new Ninh Bình (37)
BEST, MID, WORST, MIXED, LATER = "13291", "13285", "13567", "13294", "13561"


def _tile(id: str, kind: str, x: int, y: int, w: int, h: int, vi: str, en: str, **more: Any) -> dict[str, Any]:
    return {"id": id, "kind": kind, "x": x, "y": y, "w": w, "h": h, "title_vi": vi, "title_en": en, **more}


# the ranking fills screen 5 (cells 4-7 both ways of the 12 x 12 grid)
LAYOUT = {"id": LAYOUT_ID, "name_vi": "Kiểm thử xếp hạng", "name_en": "Ranking test", "cols": 12, "rows": 12, "tiles": [
    _tile("dr-kpi", "kpi", 0, 0, 4, 2, "Đúng hạn toàn tỉnh", "On time, province", kpi=KPI, area="37"),
    _tile("dr-rank", "ranking", 4, 4, 4, 4, "Đúng hạn theo xã", "On time by commune", kpi=KPI, area="37",
          period="month", top=5),
]}


def this_month_ts(now: datetime) -> datetime:
    """A moment of this local month that has passed: half way from its start to now."""
    local = now.astimezone(VN)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (start + (local - start) / 2).replace(microsecond=0)


def month_range(now: datetime) -> tuple[str, str]:
    local = now.astimezone(VN)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).isoformat(), now.isoformat()


@pytest.fixture(scope="module")
async def drill_site(serve_env: dict[str, str], pool: asyncpg.Pool, agencies: Agencies,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Site, list[str]]]:
    """`ioc serve` with the test layout, and this month's and last year's readings of two
    agencies stored through the ingest's write path."""
    a1, _ = await agencies.add(["tthc"], prefix="dra")
    a2, _ = await agencies.add(["tthc"], prefix="drb")
    now = datetime.now(timezone.utc)
    ts = this_month_ts(now)
    year_ago = ts.replace(year=ts.year - 1)
    received = datetime.now(timezone.utc)

    def r(at: datetime, area: str, num: float | None, den: float | None, agency: str, value: float | None = None) -> Reading:
        v = value if value is not None else 100 * (num or 0) / (den or 1)
        return Reading(at, KPI, area, float(v), agency, 0, None, received, num, den)

    readings = [
        # this month: 99 %, 96 %, 75 %; one commune with a bare percentage beside parts: no figure
        r(ts, BEST, 99, 100, a1), r(ts, MID, 48, 50, a1), r(ts, WORST, 30, 40, a2),
        r(ts, MIXED, None, None, a2, value=90.0), r(ts + timedelta(minutes=1), MIXED, 5, 10, a2),
        r(ts, "37", 900, 1000, a1), r(ts + timedelta(minutes=2), "37", 50, 100, a2),  # the province's own figures
        # the same period a year earlier
        r(year_ago, BEST, 90, 100, a1), r(year_ago, MID, 40, 50, a1), r(year_ago, WORST, 36, 40, a2),
        r(year_ago, "37", 800, 1000, a1),
    ]
    async with pool.acquire() as conn:
        out = await ReadingStore().write(conn, readings, [])
    assert len(out.written) == len(readings), (out.duplicates, out.conflicts)
    proc = ServeProcess(serve_env, tmp_path_factory.mktemp("drill") / "serve.log", REPO)
    await asyncio.to_thread(proc.start)
    users, tokens = await staff_logins(pool, proc.base, "dr")
    site = Site(proc, tokens, users)
    suffix = secrets.token_hex(2)
    out5 = await site.call("POST", "/api/v1/wall/screen-tokens", role="admin", json={"name": f"dr{suffix}-screen-5"})
    site.screens[5] = out5["token"]
    await site.call("PUT", f"/api/v1/wall/layouts/{LAYOUT_ID}", json=LAYOUT)
    await site.show(LAYOUT_ID)
    yield site, [a1, a2]
    try:
        await site.show("overview")
    finally:
        await asyncio.to_thread(proc.stop)


async def breakdown(site: Site, **params: str) -> dict[str, Any]:
    start, end = month_range(datetime.now(timezone.utc))
    return await site.call("GET", "/api/v1/breakdown", role="leader",
                           params={"kpi": KPI, "area": "37", "start": start, "end": end, **params})


def ranked_codes(res: dict[str, Any]) -> list[str]:
    return [r["code"] for r in res["rows"] if r["value"] is not None]


async def panel_ready(page: Page, area: str) -> None:
    panel = page.locator(".drill")
    await expect(panel).to_be_visible()
    await expect(panel).to_have_attribute("data-area", area, timeout=15000)
    await expect(panel).to_have_attribute("data-state", "ready", timeout=15000)


async def test_tablet_drills_from_a_kpi_tile_to_the_units_last_year_and_agencies(
        drill_site: tuple[Site, list[str]], browser: Browser) -> None:  # noqa: F811 - the imported fixture
    site, (a1, a2) = drill_site
    ctx = await browser.new_context(viewport={"width": 800, "height": 1200}, locale="vi-VN", has_touch=True,
                                    timezone_id="America/New_York")  # the periods are the province's
    watch = Watch(site.base)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{site.base}/wall/tablet.html")
        await log_in(page, site.users["leader"])
        await expect(page.locator("body")).to_have_attribute("data-layout", LAYOUT_ID, timeout=15000)
        await slot(page, "dr-kpi").tap()
        await panel_ready(page, "37")
        panel = page.locator(".drill")
        await expect(panel.locator(".drill-title")).to_have_text("Tỷ lệ hồ sơ giải quyết đúng hạn · Tỉnh Ninh Bình")
        await expect(panel.locator('.drill-period[data-period="month"]')).to_have_attribute("aria-pressed", "true")

        res = await breakdown(site, compare="year")
        order = ranked_codes(res)
        assert order.index(BEST) < order.index(MID) < order.index(WORST), order
        # (a) ranked bars in the API's order, the target line, best and worst marked
        bars = panel.locator(".drill-units svg.rank-svg")
        await expect(bars).to_have_attribute("data-order", ",".join(order))
        await expect(bars.locator("line.rank-target")).to_have_attribute("data-target", str(res["target"]).removesuffix(".0"))
        await expect(bars.locator("g.rank-row.best")).to_have_attribute("data-code", order[0])
        await expect(bars.locator("g.rank-row.worst")).to_have_attribute("data-code", order[-1])
        box = {c: await bars.locator(f'g.rank-row[data-code="{c}"] rect').bounding_box() for c in (BEST, WORST)}
        assert box[BEST] and box[WORST] and box[BEST]["width"] > box[WORST]["width"]  # a longer bar for more
        assert box[BEST]["y"] < box[WORST]["y"]
        # a bare percentage beside parts: listed with the API's reason, not a number
        mixed = next(r for r in res["rows"] if r["code"] == MIXED)
        assert mixed["value"] is None and mixed["reason"]
        await expect(panel.locator(f'.drill-nodata li[data-code="{MIXED}"] .why')).to_contain_text(mixed["reason"])

        # (c) this period against the same one last year, per unit and in total, as the API says
        table = panel.locator(".compare-table")
        for code, row in [("*", {**res["total"], "previous": res["previous"]["total"]}),
                          *[(r["code"], r) for r in res["rows"] if r["code"] in (BEST, MID, WORST)]]:
            tr = table.locator(f'tr[data-code="{code}"]')
            now_v, prev_v = row["value"], row["previous"]["value"]
            assert now_v is not None and prev_v is not None, (code, row)
            assert float(await tr.locator("td.now").get_attribute("data-value") or "nan") == pytest.approx(now_v)
            assert float(await tr.locator("td.prev").get_attribute("data-value") or "nan") == pytest.approx(prev_v)
            assert float(await tr.locator("td.change").get_attribute("data-value") or "nan") == pytest.approx(now_v - prev_v)
        # weighted: (900 + 50) / (1000 + 100), against 800 / 1000 a year earlier
        assert res["total"]["value"] == pytest.approx(100 * 950 / 1100) and res["previous"]["total"]["value"] == pytest.approx(80.0)
        await expect(table.locator('tr[data-code="*"] td.change')).to_have_text("+6,36 điểm %")

        # (d) by reporting agency, as the API says
        agencies = await breakdown(site, by="agency")
        rows = panel.locator(".agency-table tbody tr")
        await expect(rows).to_have_count(len(agencies["rows"]))
        assert {a1, a2} <= {r["code"] for r in agencies["rows"]}  # both reported the province's figure
        for r in agencies["rows"]:
            cell = panel.locator(f'.agency-table tr[data-code="{r["code"]}"] td.value')
            got = await cell.get_attribute("data-value")
            assert (float(got) if got else None) == (pytest.approx(r["value"]) if r["value"] is not None else None), r

        # (b) the series, with last year's period drawn over it
        time_svg = panel.locator(".time-svg")
        await expect(time_svg.locator("path.time-now")).to_have_count(1)
        await expect(time_svg.locator("path.time-before")).to_have_count(1)
        assert int(await time_svg.get_attribute("data-before") or 0) >= 1
        await page.screenshot(path=str(SHOTS / "tablet-drill.png"), full_page=True)

        # English on request
        await page.locator("#lang").tap()
        await expect(panel.locator('.drill-period[data-period="last_month"]')).to_have_text("Last month")
        await expect(panel.locator(".drill-units h3")).to_have_text("By unit")
        await page.locator("#lang").tap()
        assert not watch.errors, watch.errors
        assert not watch.foreign(), watch.foreign()
    finally:
        await ctx.close()


async def test_drill_further_down_and_back(drill_site: tuple[Site, list[str]], browser: Browser) -> None:  # noqa: F811
    """The map tile asks with `ioc-drill` for the province (by commune: the district tier is
    gone this year); a tap on the worst commune gives its own figures, "back" the communes
    again: the province's rate to its worst commune in two taps."""
    site, _ = drill_site
    ctx = await browser.new_context(viewport={"width": 800, "height": 1200}, locale="vi-VN", has_touch=True)
    watch = Watch(site.base)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{site.base}/wall/tablet.html")
        await log_in(page, site.users["leader"])
        await expect(page.locator("body")).to_have_attribute("data-layout", LAYOUT_ID, timeout=15000)
        await slot(page, "dr-kpi").locator(".tile").evaluate(
            "(t, kpi) => t.dispatchEvent(new CustomEvent('ioc-drill', {bubbles: true, detail: {kpi, area: '37', level: 'commune'}}))",
            KPI)
        await panel_ready(page, "37")
        panel = page.locator(".drill")
        await expect(panel).to_have_attribute("data-level", "commune")
        communes = await breakdown(site)
        order = ranked_codes(communes)
        await expect(panel.locator(".drill-units svg.rank-svg")).to_have_attribute("data-order", ",".join(order))
        worst = panel.locator(f'.drill-units g.rank-row.worst[data-code="{order[-1]}"]')
        await worst.tap()
        await panel_ready(page, order[-1])
        await expect(panel).to_have_attribute("data-depth", "2")
        own = await breakdown(site, area=order[-1], compare="year")
        assert own["rows"] == [] and own["total"]["value"] is not None
        await expect(panel.locator(".drill-nodata .nodata-none")).to_have_text("Không có đơn vị nào bên dưới")
        total = panel.locator('.compare-table tr[data-code="*"]')
        assert float(await total.locator("td.now").get_attribute("data-value") or "nan") == pytest.approx(own["total"]["value"])
        crumbs = panel.locator(".drill-crumbs .crumb")
        await expect(crumbs).to_have_count(2)
        await expect(crumbs.last).to_have_text(next(r for r in communes["rows"] if r["code"] == order[-1])["name_vi"])
        await expect(panel.locator(".drill-back")).to_have_text("← Quay lại")
        await panel.locator(".drill-back").tap()
        await panel_ready(page, "37")
        await expect(panel).to_have_attribute("data-depth", "1")
        await expect(panel.locator(".drill-units svg.rank-svg")).to_have_attribute("data-order", ",".join(order))
        await panel.locator(".drill-close").tap()
        await expect(panel).to_be_hidden()
        assert not watch.errors, watch.errors
    finally:
        await ctx.close()


async def test_console_opens_the_drill_down_from_a_kpi_tile(drill_site: tuple[Site, list[str]], browser: Browser) -> None:  # noqa: F811
    site, _ = drill_site
    ctx = await browser.new_context(viewport={"width": 1920, "height": 1080}, locale="vi-VN")
    watch = Watch(site.base)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{site.base}/wall/console.html")
        await log_in(page, site.users["operator"])
        await expect(page.locator("body")).to_have_attribute("data-layout", LAYOUT_ID, timeout=15000)
        await page.locator('#mini-tiles .slot[data-tile="dr-kpi"]').click()
        await panel_ready(page, "37")
        res = await breakdown(site)
        await expect(page.locator(".drill .drill-units svg.rank-svg")).to_have_attribute("data-order", ",".join(ranked_codes(res)))
        await expect(page.locator("#pin-tile")).to_have_value("dr-kpi")  # still selected for pinning
        await page.locator('.drill-period[data-period="year"]').click()
        await expect(page.locator(".drill")).to_have_attribute("data-period", "year")
        await expect(page.locator(".drill")).to_have_attribute("data-state", "ready", timeout=15000)
        await page.screenshot(path=str(SHOTS / "console-drill.png"))
        assert not watch.errors, watch.errors
    finally:
        await ctx.close()


async def test_wall_ranking_tile_draws_and_follows_a_new_reading(
        drill_site: tuple[Site, list[str]], browser: Browser, agencies: Agencies,  # noqa: F811
        ingest: IngestProcess, broker: MosquittoRig) -> None:
    site, _ = drill_site
    ctx = await browser.new_context(viewport={"width": 1920, "height": 1080}, locale="vi-VN", timezone_id="Europe/Paris")
    watch = Watch(site.base)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(site.screen_url(5))
        await expect(page.locator("body")).to_have_attribute("data-layout", LAYOUT_ID, timeout=15000)
        tile = slot(page, "dr-rank").locator(".tile")
        res = await breakdown(site)
        await expect(tile).to_have_attribute("data-order", ",".join(ranked_codes(res)[:5]), timeout=15000)
        await expect(tile.locator("line.rank-target")).to_have_attribute("data-target", "98")
        await expect(tile.locator("g.rank-row.best")).to_have_attribute("data-code", BEST)
        before = int(await tile.get_attribute("data-fetches") or 0)

        # an agency reports a commune at 100 % through the broker and the ingest: it leads
        agency, password = await agencies.add(["tthc"], prefix="drc")
        ts = this_month_ts(datetime.now(timezone.utc)) + timedelta(minutes=5)
        pub = MqttClient(broker.host, broker.port, agency, password).wait_connected()
        try:
            pub.publish(f"ioc/v1/kpi/{agency}", [{"kpi": KPI, "area": LATER, "ts": ts.isoformat(), "value": 100,
                                                  "numerator": 20, "denominator": 20}])
        finally:
            pub.close()
        await expect(tile.locator("g.rank-row.best")).to_have_attribute("data-code", LATER, timeout=20000)
        after = await breakdown(site)
        await expect(tile).to_have_attribute("data-order", ",".join(ranked_codes(after)[:5]))
        await page.wait_for_timeout(3000)
        fetches = int(await tile.get_attribute("data-fetches") or 0)
        assert 1 <= fetches - before <= 3, (before, fetches)  # on the reading, not a poll every second
        await page.screenshot(path=str(SHOTS / "wall-ranking.png"))
        assert not watch.errors, watch.errors
    finally:
        await ctx.close()


async def test_hub_tells_a_ranking_tile_of_any_units_reading(drill_site: tuple[Site, list[str]],
                                                            kpi_pub: MqttClient) -> None:  # noqa: F811
    """A reading of the KPI for any unit (here a commune under the tile's province) reaches
    the ranking tile as a new `changed_at`; another KPI's does not (dashboards/PROTOCOL.md)."""
    site, _ = drill_site
    tablet = await open_client(site.proc.ws_url, site.tokens["leader"], "tablet")
    try:
        await tablet.wait("layout")
        first = await tablet.wait("tile", tile="dr-rank")
        assert {k: first["data"][k] for k in ("kpi", "area", "level", "period", "top")} == {
            "kpi": KPI, "area": "37", "level": None, "period": "month", "top": 5}
        now = datetime.now(VN).replace(microsecond=0)
        at, other = now.isoformat(), (now + timedelta(minutes=1)).isoformat()
        kpi_pub.publish("ioc/v1/live/kpi/mt.aqi/13291", kpi_live("mt.aqi", "13291", 50, other), retain=False)
        kpi_pub.publish(f"ioc/v1/live/kpi/{KPI}/{LATER}", kpi_live(KPI, LATER, 100.0, at), retain=False)
        await tablet.wait("tile", tile="dr-rank", timeout=10)
        deadline = asyncio.get_running_loop().time() + 10
        while tablet.of("tile", tile="dr-rank")[-1]["data"]["changed_at"] != at and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        mine = tablet.of("tile", tile="dr-rank")
        assert mine[-1]["data"]["changed_at"] == at, mine[-1]
        assert not [m for m in mine if m["data"]["changed_at"] == other]  # another KPI's reading: nothing
    finally:
        await tablet.close()


def test_ranking_tiles_need_a_kpi_and_an_area_and_carry_their_settings() -> None:
    with pytest.raises(ValueError, match="a ranking tile needs `kpi` and `area`"):
        Tile(id="r", kind="ranking", x=0, y=0, w=1, h=1, kpi=KPI)
    with pytest.raises(ValueError):
        Tile(id="r", kind="ranking", x=0, y=0, w=1, h=1, kpi=KPI, area="37", period="week")
    t = Tile(id="r", kind="ranking", x=0, y=0, w=1, h=1, kpi=KPI, area="37", level="commune", top=3)
    assert ranking_data(t, 12.5) == {"kpi": KPI, "area": "37", "level": "commune", "period": "month", "top": 3,
                                     "changed_at": 12.5}
    assert newest_received([{"received_at": 5.0}, {"received_at": "2026-01-01T00:00:00+00:00"}, {}]) == 1767225600.0
