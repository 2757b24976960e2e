"""What operators and leaders see first (issue 13, "What operators see"), in a real Chromium
against a real `ioc serve`, Mosquitto and PostgreSQL: the fixtures of tests/test_wall_pages.py.

Each test saves a layout of its own, so what it checks does not depend on the presets.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, expect

from tests.conftest import Agencies, IngestProcess
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client as MqttClient

from tests.test_wall_pages import (  # noqa: F401 - fixtures
    CAMERAS, LAYOUT, LAYOUT_ID, SHOTS, Live, Site, Watch, _tile, browser, context, live, log_in, open_screen, site, slot,
)

DEADLINE_S = 45.0  # alerts: the node looks every 10 s; generous for a busy machine


def _layout(layout_id: str, tiles: list[dict[str, Any]], name_vi: str = "Kiểm thử", name_en: str = "Test") -> dict[str, Any]:
    return {"id": layout_id, "name_vi": name_vi, "name_en": name_en, "cols": 12, "rows": 12, "tiles": tiles}


async def _until(check: Any, what: str, deadline_s: float = DEADLINE_S) -> Any:
    end = time.monotonic() + deadline_s
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < end, f"not within {deadline_s} s: {what}"
        await asyncio.sleep(0.5)


@pytest.fixture
async def other_faults_ended(site: Site, pool: asyncpg.Pool, live: Live, broker: MosquittoRig,  # noqa: F811
                             service_passwords: dict[str, str]) -> None:
    """The alerts tiles show the worst first and the health tile every camera with a status:
    faults and statuses that earlier test modules' camera services left behind (their cameras
    no longer run) would push this module's alerts out of sight. Their events end here (the
    node's keeper ends their alerts as for a camera that recovered) and their retained
    statuses are cleared."""
    async with pool.acquire() as conn:
        await conn.execute("UPDATE camera_events SET ended_at = now() WHERE ended_at IS NULL AND NOT camera = ANY($1::text[])",
                           list(CAMERAS))
    # every retained status (cameras of file registries too), as a hub reads them at start
    seen = MqttClient(broker.host, broker.service_port, "svc-api", service_passwords["svc-api"]).wait_connected()
    try:
        seen.subscribe("ioc/v1/live/camera/+/status")
        await asyncio.sleep(1.0)
        others = {m.topic for m in list(seen.messages) if m.payload and m.topic.split("/")[4] not in CAMERAS}
    finally:
        seen.close()
    for topic in others:
        live.cameras.publish(topic, b"", retain=True)

    async def settled() -> bool:
        open_ = await site.call("GET", "/api/v1/alerts", params={"open": "true", "limit": 500})
        return not [a for a in open_ if a.get("camera") and a["camera"] not in CAMERAS]

    await _until(settled, "the other modules' camera alerts ended")


# -- 5: a camera the registry does not know ----------------------------------------------------

GHOST = "wp-ghost-cam"
GHOST_LAYOUT = _layout("wp-ghost", [
    _tile("g-ghost", "camera", 0, 0, 2, 2, camera=GHOST),
    _tile("g-real", "camera", 2, 0, 2, 2, camera="wp-c1"),
    _tile("g-health", "camera_health", 0, 2, 4, 2, "Tình trạng camera", "Camera health"),
])


async def test_a_camera_missing_from_the_registry_is_named_counted_and_alerted(
        site: Site, context: tuple[BrowserContext, Watch], live: Live, pool: asyncpg.Pool) -> None:  # noqa: F811
    ctx, watch = context
    live.healthy("wp-c1")
    await site.call("PUT", "/api/v1/wall/layouts/wp-ghost", json=GHOST_LAYOUT)
    # `ioc serve` says so when the layout is saved, naming the layout, the tile and the camera
    warned = [r for r in site.proc.log_records() if r.get("msg") == "layout names an unknown camera"]
    assert {(r.get("layout"), r.get("tile"), r.get("camera")) for r in warned} >= {("wp-ghost", "g-ghost", GHOST)}, warned
    try:
        await site.show("wp-ghost")
        page = await open_screen(ctx, watch, site, 1, "wp-ghost")
        ghost = slot(page, "g-ghost").locator(".tile")
        await expect(ghost).to_have_attribute("data-state", "unknown_camera", timeout=15000)
        await expect(ghost.locator(".cam-status")).to_have_text("Camera không có trong danh mục")
        await expect(ghost.locator(".cam-status")).to_have_class(re.compile(r"\balarm\b"))
        await expect(slot(page, "g-real").locator(".tile")).to_have_attribute("data-state", "ok", timeout=15000)
        # the health tile counts it as a problem, not "all cameras healthy"
        health = slot(page, "g-health").locator(".tile")
        await expect(health).to_have_attribute("data-ok", "false", timeout=15000)
        row = health.locator(".health-problem.p-unknown_camera")
        await expect(row.locator(".name")).to_have_text("Camera không có trong danh mục")
        await expect(row.locator(".count")).to_have_text("1")
        await expect(health.locator(".health-ok")).to_have_count(0)
        await page.screenshot(path=str(SHOTS / "unknown-camera.png"))

        # and an alert is raised, naming the camera, the tile and the layout
        async def opened() -> list[asyncpg.Record]:
            async with pool.acquire() as conn:
                return await conn.fetch("SELECT * FROM alerts WHERE kind = 'camera_unknown' AND source = $1 "
                                        "AND ended_at IS NULL", GHOST)
        found = await _until(opened, "an alert for the unknown camera")
        assert "g-ghost" in found[0]["message_vi"] and "wp-ghost" in found[0]["message_en"], dict(found[0])
        assert not watch.errors, watch.errors
    finally:
        await site.show(LAYOUT_ID)

    # the wall no longer shows it: the alert ends
    async def ended() -> bool:
        async with pool.acquire() as conn:
            return not await conn.fetchval("SELECT count(*) FROM alerts WHERE kind = 'camera_unknown' "
                                           "AND source = $1 AND ended_at IS NULL", GHOST)
    await _until(ended, "the unknown camera's alert to end")
    assert CAMERAS  # the registry the module's site put in place


# -- 7: the console's alert list ------------------------------------------------------------------

async def _log_in_console(ctx: BrowserContext, watch: Watch, at: Site) -> Any:
    console = watch.attach(await ctx.new_page())
    await console.set_viewport_size({"width": 1600, "height": 1000})
    await console.goto(f"{at.base}/wall/console.html")
    await log_in(console, at.users["operator"])
    return console


async def test_the_console_alert_list_holds_still_and_offers_no_ack_for_ended_alerts(
        site: Site, context: tuple[BrowserContext, Watch], pool: asyncpg.Pool) -> None:  # noqa: F811
    """The hub's alerts tile and the console's periodic REST look gave two different lists
    (the hub's with the newest ended alerts, the REST one open alerts only): an ended alert
    came and went between them. Both are now the same list."""
    ctx, watch = context
    await site.show(LAYOUT_ID)  # it has an alerts tile: the hub sends the list to the console
    tag = f"wp7-{time.monotonic_ns() % 10**9}"
    async with pool.acquire() as conn:
        ended_id = await conn.fetchval(
            "INSERT INTO alerts (kind, source, severity, message_vi, message_en, started_at, ended_at) "
            "VALUES ('kpi_target', $1, 'warning', 'Đã hết: ' || $1, 'Over: ' || $1, now() - interval '1 minute', now()) "
            "RETURNING id", f"{tag}/ended")
        open_id = await conn.fetchval(
            "INSERT INTO alerts (kind, source, severity, message_vi, message_en) "
            "VALUES ('kpi_target', $1, 'warning', 'Đang mở: ' || $1, 'Open: ' || $1) RETURNING id", f"{tag}/open")
    console = await _log_in_console(ctx, watch, site)
    # acknowledging the open one makes the node publish the list again (with both)
    await site.call("POST", f"/api/v1/alerts/{open_id}/ack")
    ended = console.locator(f'#alerts li[data-alert="{ended_id}"]')
    await expect(ended).to_be_visible(timeout=15000)
    await expect(ended).to_have_class(re.compile(r"\bended\b"))
    await expect(ended.locator("button.alert-ack")).to_have_count(0)  # nothing to acknowledge
    await expect(ended.locator(".alert-meta")).to_contain_text("Đã kết thúc")
    items = console.locator("#alerts li.alert")
    before = await items.evaluate_all("els => els.map(e => e.dataset.alert)")
    # the periodic REST look (every 30 s; called at once here) changes nothing
    for _ in range(3):
        await console.evaluate("window.__ioc.loadAlerts()")
        assert await items.evaluate_all("els => els.map(e => e.dataset.alert)") == before
        await expect(ended.locator("button.alert-ack")).to_have_count(0)
    assert not watch.errors, watch.errors


# -- 8: both languages -----------------------------------------------------------------------------

@pytest.mark.usefixtures("other_faults_ended")
async def test_english_tablet_has_english_units_separators_and_area_names_and_vietnamese_no_max(
        site: Site, browser: Browser, live: Live, agencies: Agencies, ingest: IngestProcess,  # noqa: F811
        broker: MosquittoRig) -> None:
    await site.show(LAYOUT_ID)
    # a few hours of AQI for the chart, through the ingest
    agency, password = await agencies.add(["mt"], prefix="wp8")
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    # on the half hour: test_wall_pages reports this commune on the hour from another agency,
    # and a kpi/area/ts already stored by another agency would be refused there
    readings = [{"kpi": "mt.aqi", "area": "13291", "ts": (now - timedelta(hours=5 - i, minutes=30)).isoformat(),
                 "value": 60 + i} for i in range(6)]
    pub = MqttClient(broker.host, broker.port, agency, password).wait_connected()
    try:
        pub.publish(f"ioc/v1/kpi/{agency}", readings)
    finally:
        pub.close()
    live.kpi("an.eid_level2_accounts", "347", 1234567.5)
    live.kpi("tthc.on_time_rate", "347", 99.0)
    live.kpi("tthc.on_time_rate", "347", 96.5)  # below the 98 % target of Phủ Lý city (347): an alert
    ctx = await browser.new_context(viewport={"width": 1180, "height": 820}, locale="vi-VN", has_touch=True)
    await ctx.add_init_script("localStorage.setItem('ioc.lang', 'en')")
    watch = Watch(site.base)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{site.base}/wall/tablet.html")
        await log_in(page, site.users["leader"])
        kpi = slot(page, "wp-kpi").locator(".tile")
        await expect(kpi.locator(".kpi-number")).to_have_text("1,234,567.5", timeout=15000)
        await expect(kpi.locator(".kpi-unit")).to_have_text("accounts")
        # the long figure fits its tile whole
        fits = await kpi.locator(".kpi-number").evaluate(
            "n => n.getBoundingClientRect().right <= n.closest('.tile').getBoundingClientRect().right")
        assert fits, "the figure runs past its tile"
        await expect(slot(page, "wp-kpi2").locator(".kpi-number")).to_have_text("96.5", timeout=10000)
        # the alert names the area, never its code
        alert = slot(page, "wp-alerts").locator("li.alert").filter(has_text="Phu Ly City")
        await expect(alert.first).to_be_visible(timeout=DEADLINE_S * 1000)
        await expect(alert.first.locator(".alert-msg")).to_contain_text("(Phu Ly City)")
        texts = await slot(page, "wp-alerts").locator("li.alert").all_inner_texts()
        assert not [x for x in texts if re.search(r"\(\d+\)|[a-z_]/\d+", x)], texts
        chart = slot(page, "wp-chart")
        await expect(chart.locator("text.chart-label").first).to_have_text(re.compile(r"^max \d+$"), timeout=15000)
        await page.screenshot(path=str(SHOTS / "tablet-en.png"), full_page=True)
        # and back in Vietnamese: Vietnamese separators and units, no English in the chart
        await page.locator("#lang").tap()
        await expect(kpi.locator(".kpi-number")).to_have_text("1.234.567,5")
        await expect(kpi.locator(".kpi-unit")).to_have_text("tài khoản")
        await expect(chart.locator("text.chart-label").first).to_have_text(re.compile(r"^cao nhất \d+$"))
        await expect(alert.first).to_have_count(0)
        vi_alert = slot(page, "wp-alerts").locator("li.alert").filter(has_text="Thành phố Phủ Lý")
        await expect(vi_alert.first).to_be_visible()
        assert not watch.errors, watch.errors
    finally:
        await ctx.close()


# -- 6: the alerts and camera-health tiles -----------------------------------------------------------

SIX_LAYOUT = _layout("wp-six", [
    _tile("s-alerts", "alerts", 0, 0, 2, 2, "Cảnh báo", "Alerts"),
    _tile("s-health", "camera_health", 2, 0, 2, 2, "Tình trạng camera", "Camera health"),
    _tile("s-cam", "camera", 0, 2, 2, 2, camera="wp-c1"),
])


@pytest.mark.usefixtures("other_faults_ended")
async def test_alerts_tile_puts_the_worst_first_counts_and_never_clips_and_health_shows_every_camera(
        site: Site, context: tuple[BrowserContext, Watch], live: Live, pool: asyncpg.Pool) -> None:  # noqa: F811
    ctx, watch = context
    live.healthy(*CAMERAS)
    tag = f"wp6-{time.monotonic_ns() % 10**9}"
    async with pool.acquire() as conn:
        critical = await conn.fetchval(
            "INSERT INTO alerts (kind, source, severity, message_vi, message_en, started_at) VALUES "
            "('kpi_target', $1, 'critical', 'Khẩn: ' || $1, 'Critical: ' || $1, now() - interval '2 hours') RETURNING id",
            f"{tag}/crit")
        ids = [await conn.fetchval(
            "INSERT INTO alerts (kind, source, severity, message_vi, message_en) VALUES "
            "('kpi_target', $1, 'warning', 'Cảnh báo thử số ' || $2 || ', một dòng khá dài để thấy nó xuống dòng', "
            "'Test warning ' || $2) RETURNING id", f"{tag}/{i}", str(i)) for i in range(7)]
    await site.call("PUT", "/api/v1/wall/layouts/wp-six", json=SIX_LAYOUT)
    try:
        await site.show("wp-six")
        page = await open_screen(ctx, watch, site, 1, "wp-six")
        await site.call("POST", f"/api/v1/alerts/{ids[0]}/ack")  # the node publishes the list again
        tile = slot(page, "s-alerts").locator(".tile")
        first = tile.locator("li.alert").first
        await expect(first).to_have_attribute("data-alert", str(critical), timeout=15000)  # the oldest, but critical
        listed = await site.call("GET", "/api/v1/alerts")
        total, open_ = len(listed), sum(1 for a in listed if a["ended_at"] is None)
        await expect(tile.locator(".alert-count")).to_have_text(f"{open_} đang mở")
        more = tile.locator(".list-more")
        await expect(more).to_have_text(re.compile(r"^\+\d+ nữa$"))
        shown = await tile.locator("li.alert").count()
        assert shown >= 1 and shown + int(re.sub(r"\D", "", await more.inner_text())) == total
        # nothing cut: every item shown lies wholly inside the list, the "+N" line too
        box = await tile.locator(".alert-list").bounding_box()
        assert box is not None
        for item in await tile.locator(".alert-list > li").all():
            b = await item.bounding_box()
            assert b is not None and b["y"] + b["height"] <= box["y"] + box["height"] + 1, (b, box)

        # all cameras well: each one's state, compactly, not an empty tile
        health = slot(page, "s-health").locator(".tile")
        await expect(health.locator(".health-ok")).to_have_text("Tất cả camera hoạt động tốt", timeout=15000)
        for cam, name in CAMERAS.items():
            chip = health.locator(f'.health-cam[data-camera="{cam}"]')
            await expect(chip).to_be_visible()
            await expect(chip).to_have_attribute("data-state", "ok")
            await expect(chip.locator(".name")).to_have_text(name)
        await page.screenshot(path=str(SHOTS / "alerts-and-health.png"))
        assert not watch.errors, watch.errors
    finally:
        async with pool.acquire() as conn:
            await conn.execute("UPDATE alerts SET ended_at = now() WHERE source LIKE $1 AND ended_at IS NULL", f"{tag}/%")
        await site.show(LAYOUT_ID)



# -- 9: night and partial periods -----------------------------------------------------------------

NIGHT_AREA = "13294"  # Phường Châu Cầu: no other test reports dossiers for it
NIGHT_LAYOUT = _layout("wp-night", [
    _tile("n-count", "kpi", 0, 0, 2, 1, "Hồ sơ tiếp nhận", "Dossiers received", kpi="tthc.dossiers_received", area=NIGHT_AREA),
    _tile("n-chart", "chart", 0, 1, 4, 2, "Hồ sơ 5 ngày", "Dossiers, 5 days", kpi="tthc.dossiers_received",
          area=NIGHT_AREA, bucket="1d", hours=24 * 5),
])


async def test_a_counter_with_nothing_yet_today_says_so_and_the_chart_marks_todays_partial_day(
        site: Site, context: tuple[BrowserContext, Watch], live: Live, agencies: Agencies,  # noqa: F811
        ingest: IngestProcess, broker: MosquittoRig) -> None:
    ctx, watch = context
    hanoi = timezone(timedelta(hours=7))
    midnight = datetime.now(hanoi).replace(hour=0, minute=0, second=0, microsecond=0)
    agency, password = await agencies.add(["tthc"], prefix="wp9")
    days = [{"kpi": "tthc.dossiers_received", "area": NIGHT_AREA, "ts": (midnight - timedelta(days=4 - i)).isoformat(),
             "value": 120 + 10 * i} for i in range(4)]
    days.append({"kpi": "tthc.dossiers_received", "area": NIGHT_AREA, "ts": midnight.isoformat(), "value": 3})
    pub = MqttClient(broker.host, broker.port, agency, password).wait_connected()
    try:
        pub.publish(f"ioc/v1/kpi/{agency}", days)
    finally:
        pub.close()
    await site.call("PUT", "/api/v1/wall/layouts/wp-night", json=NIGHT_LAYOUT)

    def counted(value: int, day: datetime = midnight) -> None:  # a day's count (so far), as the ingest publishes it
        received = datetime.now(timezone.utc).isoformat()
        live.kpis.publish(f"ioc/v1/live/kpi/tthc.dossiers_received/{NIGHT_AREA}", {
            "kpi": "tthc.dossiers_received", "area": NIGHT_AREA, "ts": day.isoformat(), "value": value,
            "rev": 1, "agency": "test", "received_at": received}, retain=True)
    try:
        await site.show("wp-night")
        page = await open_screen(ctx, watch, site, 1, "wp-night")
        chart = slot(page, "n-chart").locator(".tile")
        await expect(chart).to_have_attribute("data-partial", "true", timeout=20000)
        await expect(chart).to_have_attribute("data-points", "5")
        partial = chart.locator("path.chart-partial")
        await expect(partial).to_have_count(1)
        assert await partial.get_attribute("stroke-dasharray")
        await expect(chart.locator("text.chart-label").last).to_have_text(re.compile(r"^hôm nay đến \d\d:\d\d$"))
        # before today's first reading: yesterday's count is yesterday's whole day, not "00:00"
        count = slot(page, "n-count").locator(".tile")
        yesterday = midnight - timedelta(days=1)
        counted(150, yesterday)
        await expect(count.locator(".kpi-number")).to_have_text("150", timeout=15000)
        await expect(count.locator(".kpi-time")).to_have_text(f"Cả ngày {yesterday:%d/%m/%Y}")
        # nothing yet today: said in words, not "0 hồ sơ" stamped 00:00
        counted(0)
        await expect(count).to_have_attribute("data-empty", "today", timeout=15000)
        await expect(count.locator(".kpi-number")).to_have_text("—")
        await expect(count.locator(".kpi-meta")).to_have_text("Chưa có số liệu hôm nay")
        await expect(count.locator(".kpi-time")).to_have_text("")
        await page.screenshot(path=str(SHOTS / "night.png"))
        # the first dossiers: the count, and how far today it has got
        counted(7)
        await expect(count.locator(".kpi-number")).to_have_text("7", timeout=15000)
        await expect(count.locator(".kpi-time")).to_have_text(re.compile(r"^Hôm nay, đến \d\d:\d\d$"))
        assert not watch.errors, watch.errors
    finally:
        live.kpis.publish(f"ioc/v1/live/kpi/tthc.dossiers_received/{NIGHT_AREA}", b"", retain=True)
        await site.show(LAYOUT_ID)


# -- 10: trend glyphs ----------------------------------------------------------------------------

async def test_trend_glyphs_have_room_colour_by_the_better_direction_and_say_what_they_mean(
        site: Site, context: tuple[BrowserContext, Watch], live: Live) -> None:  # noqa: F811
    ctx, watch = context
    await site.show(LAYOUT_ID)
    live.kpi("mt.aqi", "13291", 80)  # lower is better for the AQI
    live.kpi("an.eid_level2_accounts", "347", 1000)  # higher is better for accounts
    page = await open_screen(ctx, watch, site, 5)
    await page.wait_for_timeout(300)
    live.kpi("mt.aqi", "13291", 95)
    live.kpi("an.eid_level2_accounts", "347", 1100)
    for tile, judge, colour, words in (("wp-aqi", "bad", "rgb(255, 91, 80)", "Tăng so với lần trước (80) — xấu đi"),
                                       ("wp-kpi", "good", "rgb(47, 210, 122)", "Tăng so với lần trước (1.000) — tốt hơn")):
        trend = slot(page, tile).locator(".kpi-trend")
        await expect(trend).to_have_text("▲", timeout=10000)
        await expect(trend).to_have_attribute("data-judge", judge)
        await expect(trend).to_have_css("color", colour)
        await expect(trend).to_have_attribute("title", re.compile("^" + re.escape(words)))
        await expect(trend).to_have_attribute("aria-label", re.compile("^" + re.escape(words)))
        # room between the unit and the glyph: a good part of the glyph's own size
        unit = await slot(page, tile).locator(".kpi-unit").bounding_box()
        glyph = await trend.bounding_box()
        size = float((await trend.evaluate("e => getComputedStyle(e).fontSize"))[:-2])
        assert unit is not None and glyph is not None
        assert glyph["x"] - (unit["x"] + unit["width"]) >= 0.35 * size, (unit, glyph, size)
    await page.screenshot(path=str(SHOTS / "trend.png"))
    assert not watch.errors, watch.errors


# -- 11: the pin form ------------------------------------------------------------------------------

async def test_the_pin_form_speaks_names_screens_shows_a_thumbnail_and_warns_of_a_camera_on_two_tiles(
        site: Site, context: tuple[BrowserContext, Watch], live: Live) -> None:  # noqa: F811
    ctx, watch = context
    await site.show(LAYOUT_ID)
    live.healthy(*CAMERAS)
    console = await _log_in_console(ctx, watch, site)
    await expect(console.locator("#mini-tiles .slot")).to_have_count(len(LAYOUT["tiles"]), timeout=10000)
    tiles = console.locator("#pin-tile option")
    await expect(console.locator('#pin-tile option[value="wp-span"]')).to_have_text(
        f"{CAMERAS['wp-c2']} · màn hình 4, 5", timeout=10000)
    await expect(console.locator('#pin-tile option[value="wp-cam"]')).to_have_text(f"{CAMERAS['wp-c1']} · màn hình 5")
    await expect(console.locator('#pin-tile option[value="wp-kpi"]')).to_have_text("Tài khoản định danh mức 2 · màn hình 5")
    labels = await tiles.all_inner_texts()
    assert not [x for x in labels if re.search(r"\bwp-|\((camera|kpi|chart)\)", x)], labels
    await expect(console.locator('#pin-camera option[value="wp-c1"]')).to_have_text(re.compile("^" + CAMERAS["wp-c1"]))
    cams = await console.locator("#pin-camera option").all_inner_texts()
    assert not [x for x in cams if "wp-c" in x], cams

    # choosing the camera wp-cam already shows, for the spanning tile: a thumbnail and a warning
    await console.locator("#pin-tile").select_option("wp-span")
    warn = console.locator("#pin-warn")
    await expect(warn).to_be_hidden()
    await console.locator("#pin-camera").select_option("wp-c1")
    await expect(warn).to_be_visible()
    await expect(warn).to_have_text(f"Chú ý: {CAMERAS['wp-c1']} đã có trên màn hình 5 — ghim vào đây thì một camera chiếm hai ô")
    thumb = console.locator("#pin-thumb")
    await expect(thumb).to_be_visible(timeout=10000)
    await console.wait_for_function("() => document.getElementById('pin-thumb').naturalWidth > 0", timeout=10000)
    await console.locator("#pin-form").screenshot(path=str(SHOTS / "pin-form.png"))
    await console.locator("#pin-form button[type=submit]").click()
    await expect(console.locator("#pins")).to_contain_text(f"← {CAMERAS['wp-c1']}", timeout=10000)
    await expect(warn).to_be_visible()  # still true once pinned: the camera is on two tiles
    await console.locator("#unpin").click()
    await expect(console.locator("#pins li")).to_have_count(0, timeout=10000)
    await console.locator("#pin-camera").select_option("wp-c3")
    await expect(warn).to_be_hidden()
    assert not watch.errors, watch.errors


# -- 12: small screens ----------------------------------------------------------------------------

async def test_small_screens_keep_the_header_on_one_line_titles_in_proportion_and_cameras_unboxed(
        site: Site, browser: Browser, context: tuple[BrowserContext, Watch], live: Live) -> None:  # noqa: F811
    await site.show("phu-ly-cameras")
    try:
        # a phone: the header stays one line, the brand whole, the layout's name cut with an ellipsis
        phone = await browser.new_context(viewport={"width": 390, "height": 844}, locale="vi-VN", has_touch=True,
                                          is_mobile=True, device_scale_factor=2)
        watch = Watch(site.base)
        try:
            page = watch.attach(await phone.new_page())
            await page.goto(f"{site.base}/wall/tablet.html")
            await log_in(page, site.users["leader"])
            await expect(page.locator("body")).to_have_attribute("data-layout", "phu-ly-cameras", timeout=15000)
            name = page.locator("#layout-name")
            await expect(name).to_have_attribute("title", "Camera thành phố Phủ Lý")
            brand = page.locator(".topbar .brand")
            lines = await brand.evaluate("e => { const r = document.createRange(); r.selectNodeContents(e); "
                                         "return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; }")
            assert lines == 1, "the brand breaks over lines"
            middles = set()
            for sel in (".topbar .brand", "#layout-name", "#lang", "#logout"):
                b = await page.locator(sel).bounding_box()
                assert b is not None, sel
                middles.add(round(b["y"] + b["height"] / 2))
            assert max(middles) - min(middles) <= 4, f"the header wraps: {middles}"
            bar = await page.locator(".topbar").bounding_box()
            assert bar is not None and bar["width"] <= 390 and bar["height"] < 70, bar
            cut = await name.evaluate("e => [e.scrollWidth > e.clientWidth, getComputedStyle(e).textOverflow]")
            assert cut[1] == "ellipsis", cut
            await page.screenshot(path=str(SHOTS / "phone.png"))
            assert not watch.errors, watch.errors
        finally:
            await phone.close()

        # a tablet: a wide camera's title is in proportion with the rest, not 50 px
        tablet = await browser.new_context(viewport={"width": 1180, "height": 820}, locale="vi-VN", has_touch=True)
        watch = Watch(site.base)
        try:
            page = watch.attach(await tablet.new_page())
            await page.goto(f"{site.base}/wall/tablet.html")
            await log_in(page, site.users["leader"])
            wide = slot(page, "cam-01")
            await expect(wide).to_have_class(re.compile(r"\bwide\b"), timeout=15000)
            size = float((await wide.locator(".tile-title").evaluate("e => getComputedStyle(e).fontSize"))[:-2])
            assert size <= 18, f"a wide camera's title is {size} px"
            box = await wide.bounding_box()
            assert box is not None and box["width"] > 500  # wide indeed
            await page.screenshot(path=str(SHOTS / "tablet-cameras.png"), full_page=True)
            assert not watch.errors, watch.errors
        finally:
            await tablet.close()

        # screen 5 of the wall: its cameras' pictures fill their tiles, no wide black bars
        ctx, watch = context
        for cam in ("pl-05", "pl-06"):
            live.picture(cam)
        page = await open_screen(ctx, watch, site, 5, "phu-ly-cameras")
        for tile in ("cam-05", "cam-06"):
            img = slot(page, tile).locator("img.cam-img")
            await expect(slot(page, tile).locator(".tile")).to_have_class(re.compile(r"\bhas-picture\b"), timeout=15000)
            filled = await img.evaluate("""i => { const s = Math.min(i.clientWidth / i.naturalWidth, i.clientHeight / i.naturalHeight);
                return (i.naturalWidth * s * i.naturalHeight * s) / (i.clientWidth * i.clientHeight); }""")
            assert filled > 0.9, f"{tile}: the picture fills {filled:.0%} of its tile"
        await page.screenshot(path=str(SHOTS / "phu-ly-screen-5.png"))
    finally:
        for cam in ("pl-05", "pl-06"):
            live.cameras.publish(f"ioc/v1/live/camera/{cam}/tile", b"", retain=True)
        await site.show(LAYOUT_ID)
