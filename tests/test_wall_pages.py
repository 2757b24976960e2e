"""The wall pages in a real browser: Debian's Chromium driven by Playwright, against a real
`ioc serve` (API + wall hub), a real Mosquitto, PostgreSQL and the ingest.

Pages are loaded from the API at /wall/ exactly as a kiosk, an operator or a leader would
load them; the tests look at what a person would see (the DOM, the text, the picture) and
at the small `window.__ioc` record each page keeps of when it applied which layout.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import cv2
import httpx
import numpy as np
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from camera.tiles import encode_tile
from dashboards import LAYOUTS
from ioc.serve.wall.layout import load_presets
from tests.conftest import REPO, Agencies, IngestProcess
from tests.helpers import staff_logins
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client as MqttClient
from tests.rigs.rtsp.rig import media_path
from tests.rigs.serve import ServeProcess
from tests.rigs.video_replay import VideoReplay, load_clip

CHROMIUM = os.environ.get("IOC_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    # nine screens in one browser: none of them may be treated as a background tab
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
# where the pages' screenshots go (never into the repository's files: a test run must not
# change them); the README's come from `ioc demo`
SHOTS = Path(os.environ.get("IOC_TEST_SCREENSHOTS") or Path(tempfile.gettempdir()) / "ioc-screenshots")
LAYOUT_ID = "wp-test"
CAMERAS = {"wp-c1": "Ngã tư Lê Hoàn – Trần Phú", "wp-c2": "Cầu Hồng Phú", "wp-c3": "Quảng trường Phủ Lý"}


def _tile(id: str, kind: str, x: int, y: int, w: int, h: int, vi: str = "", en: str = "", **more: Any) -> dict[str, Any]:
    return {"id": id, "kind": kind, "x": x, "y": y, "w": w, "h": h, "title_vi": vi, "title_en": en, **more}


# Screen 5 covers cells x 4-7, y 4-7 of the 12 x 12 grid (480 x 270 px each).
LAYOUT: dict[str, Any] = {
    "id": LAYOUT_ID, "name_vi": "Kiểm thử trang tường", "name_en": "Wall page test", "cols": 12, "rows": 12,
    "tiles": [
        _tile("wp-clock", "clock", 0, 0, 4, 2, "Giờ Việt Nam", "Viet Nam time"),
        _tile("wp-text", "text", 0, 2, 4, 2, "Thông báo", "Notice",
              text_vi="Trung tâm điều hành thông minh tỉnh Hà Nam", text_en="Ha Nam Intelligent Operations Centre"),
        _tile("wp-health", "camera_health", 4, 0, 4, 2, "Tình trạng camera", "Camera health"),
        _tile("wp-alerts", "alerts", 4, 2, 4, 2, "Cảnh báo", "Alerts"),
        _tile("wp-cam", "camera", 4, 4, 2, 2, camera="wp-c1"),
        _tile("wp-kpi", "kpi", 6, 4, 2, 1, "Tài khoản định danh mức 2", "e-ID level 2 accounts",
              kpi="an.eid_level2_accounts", area="347"),
        _tile("wp-kpi2", "kpi", 6, 5, 2, 1, "Hồ sơ giải quyết đúng hạn", "Resolved on time",
              kpi="tthc.on_time_rate", area="347"),
        _tile("wp-span", "camera", 3, 6, 2, 2, camera="wp-c2"),  # on screens 4 and 5
        _tile("wp-aqi", "kpi", 5, 6, 1, 2, "AQI Lê Hồng Phong", "AQI Le Hong Phong", kpi="mt.aqi", area="13291"),
        _tile("wp-chart", "chart", 7, 6, 2, 2, "AQI 48 giờ", "AQI, 48 hours", kpi="mt.aqi", area="13291",
              bucket="1h", hours=48),  # on screens 5 and 6
        _tile("wp-other", "text", 8, 8, 4, 4, "Màn hình 9", "Screen 9", text_vi="Màn hình 9", text_en="Screen 9"),
    ],
}
SCREEN5 = {"wp-cam", "wp-kpi", "wp-kpi2", "wp-span", "wp-aqi", "wp-chart"}


@dataclass
class Site:
    proc: ServeProcess
    tokens: dict[str, str]  # role -> JWT
    users: dict[str, tuple[str, str]]  # role -> (user name, password)
    screens: dict[int, str] = field(default_factory=dict)  # screen -> screen token

    @property
    def base(self) -> str:
        return self.proc.base

    def screen_url(self, n: int, token: str | None = None) -> str:
        return f"{self.base}/wall/screen.html?screen={n}#token={token if token is not None else self.screens[n]}"

    async def call(self, method: str, path: str, role: str = "operator", **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as http:
            r = await http.request(method, path, headers={"Authorization": f"Bearer {self.tokens[role]}"}, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    async def show(self, layout: str) -> None:
        state = await self.call("GET", "/api/v1/wall/state")
        if state["layout"] != layout or state["pins"]:
            for tile in state["pins"]:
                await self.call("POST", "/api/v1/wall/pin", json={"tile": tile, "camera": None})
            await self.call("POST", "/api/v1/wall/switch", json={"layout": layout, "delay_s": 0})


@pytest.fixture(scope="module")
async def site(serve_env: dict[str, str], pool: asyncpg.Pool,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """An `ioc serve` of this module's own (the tablet test restarts it), with accounts."""
    async with pool.acquire() as conn:
        # before the hub starts: it reads the cameras' names when it starts
        await conn.executemany("INSERT INTO cameras (id, name, stream_url, mode) VALUES ($1, $2, 'rtsp://test', 'sub-full') "
                               "ON CONFLICT (id) DO NOTHING", list(CAMERAS.items()))
    proc = ServeProcess(serve_env, tmp_path_factory.mktemp("pages") / "serve.log", REPO)
    await asyncio.to_thread(proc.start)
    users, tokens = await staff_logins(pool, proc.base, "wp")
    s = Site(proc, tokens, users)
    suffix = secrets.token_hex(2)
    for n in range(1, 10):
        out = await s.call("POST", "/api/v1/wall/screen-tokens", role="admin", json={"name": f"wp{suffix}-screen-{n}"})
        s.screens[n] = out["token"]
    await s.call("PUT", f"/api/v1/wall/layouts/{LAYOUT_ID}", json=LAYOUT)
    await s.show(LAYOUT_ID)
    yield s
    try:
        await s.show("overview")  # leave the wall as the other tests expect it
    finally:
        await asyncio.to_thread(proc.stop)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: apt-get install chromium (or set IOC_TEST_CHROMIUM)"
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


class Watch:
    """Every request a page makes and every error it logs: nothing may come from outside."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.warnings: list[str] = []  # what a failing assertion shows alongside

    def attach(self, page: Page) -> Page:
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"{page.url}: {m.text}"))
        page.on("console", lambda m: m.type == "warning" and self.warnings.append(f"{page.url}: {m.text}"))
        return page

    def foreign(self) -> list[str]:
        return [u for u in self.requests if not re.match(r"^(http|ws)://127\.0\.0\.1:\d+/|^blob:|^data:", u)]


@pytest.fixture
async def context(browser: Browser, site: Site) -> AsyncIterator[tuple[BrowserContext, Watch]]:
    ctx = await browser.new_context(viewport={"width": 1920, "height": 1080}, locale="vi-VN",
                                    timezone_id="Europe/Paris")  # the pages must not use the device's zone
    watch = Watch(site.base)
    yield ctx, watch
    await ctx.close()
    assert not watch.foreign(), f"pages loaded something from outside: {watch.foreign()[:5]}"


# -- what the camera service and the ingest would publish ----------------------------------

def street_picture(camera: str, seq: int, hue: int = 0) -> np.ndarray:
    """A made-up street at dusk, with the camera's name burnt in like a real camera's OSD."""
    h, w = 360, 640
    img = np.zeros((h, w, 3), np.uint8)
    for y in range(h // 2):  # sky
        img[y, :] = (90 + y // 3, 70 + y // 4, 40 + hue)
    img[h // 2:, :] = (58, 60, 62)  # asphalt
    cv2.fillConvexPoly(img, np.array([[0, h], [w, h], [w // 2 + 40, h // 2], [w // 2 - 40, h // 2]]), (72, 74, 78))
    for i in range(6):  # lane marks
        y0 = h // 2 + 12 + i * 30
        cv2.line(img, (w // 2, y0), (w // 2, y0 + 14 + i * 3), (220, 220, 220), 2 + i // 2)
    rng = np.random.default_rng(seq + hue)
    for _ in range(5):  # cars
        x, y = int(rng.integers(60, w - 140)), int(rng.integers(h // 2 + 30, h - 60))
        color = tuple(int(c) for c in rng.integers(40, 230, 3))
        cv2.rectangle(img, (x, y), (x + 70 + y // 8, y + 30 + y // 16), color, -1)
    for x in range(20, w, 90):  # buildings
        top = int(rng.integers(40, 140))
        cv2.rectangle(img, (x, top), (x + 60, h // 2), (50 + hue, 45, 40), -1)
    cv2.putText(img, f"{camera.upper()}  {time.strftime('%d/%m/%Y %H:%M:%S')}", (12, 26),
                cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return img


class Live:
    """Publishes as the camera service and the ingest do: retained live messages."""

    def __init__(self, broker: MosquittoRig, passwords: dict[str, str]) -> None:
        self.cameras = MqttClient(broker.host, broker.service_port, "svc-camera", passwords["svc-camera"]).wait_connected()
        self.kpis = MqttClient(broker.host, broker.service_port, "svc-ingest", passwords["svc-ingest"]).wait_connected()

    def picture(self, camera: str, *, age_s: float = 0.0, hue: int = 0) -> None:
        seq = int(time.time() * 10) % 1_000_000
        tile = encode_tile(street_picture(camera, seq, hue), camera=camera, seq=seq, captured_at=time.time() - age_s,
                           variant="sd")
        self.cameras.publish(f"ioc/v1/live/camera/{camera}/tile", tile, qos=0, retain=True)

    def status(self, camera: str, state: str = "online", **flags: bool) -> None:
        all_flags = {"black": False, "uniform": False, "frozen": False, "blurred": False, "scene_changed": False, **flags}
        self.cameras.publish(f"ioc/v1/live/camera/{camera}/status", {
            "camera": camera, "state": state, "healthy": state == "online" and not any(all_flags.values()),
            "reason": None if state == "online" else "no frame for 3 s", "mode": "sub-full", "fps": 10.0,
            "width": 640, "height": 360, "last_frame_at": time.time(), "motion": 4.0,
            "flags": all_flags if state == "online" else {}, "since": time.time()}, retain=True)

    def healthy(self, *cameras: str) -> None:
        for i, cam in enumerate(cameras):
            self.status(cam)
            self.picture(cam, hue=45 * i)

    def kpi(self, kpi: str, area: str, value: float) -> None:
        ts = datetime.now(timezone.utc).isoformat()
        self.kpis.publish(f"ioc/v1/live/kpi/{kpi}/{area}", {"kpi": kpi, "area": area, "ts": ts, "value": value,
                                                            "rev": 0, "agency": "test", "received_at": ts}, retain=True)

    def close(self) -> None:
        for cam in CAMERAS:  # retained: leave nothing behind for other tests
            for what in ("tile", "status"):
                self.cameras.publish(f"ioc/v1/live/camera/{cam}/{what}", b"", retain=True)
        self.cameras.close()
        self.kpis.close()


@pytest.fixture(scope="module")
def live(broker: MosquittoRig, service_passwords: dict[str, str]) -> Iterator[Live]:
    pub = Live(broker, service_passwords)
    yield pub
    pub.close()


# -- page helpers -----------------------------------------------------------------------------

async def open_screen(ctx: BrowserContext, watch: Watch, site: Site, n: int, layout: str = LAYOUT_ID) -> Page:
    page = watch.attach(await ctx.new_page())
    await page.goto(site.screen_url(n))
    await expect(page.locator("body")).to_have_attribute("data-layout", layout, timeout=15000)
    return page


async def log_in(page: Page, user: tuple[str, str]) -> None:
    form = page.locator("#login form")
    await expect(form).to_be_visible()
    await form.locator("input[name=username]").fill(user[0])
    await form.locator("input[name=password]").fill(user[1])
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#login")).to_be_hidden(timeout=10000)


def slot(page: Page, tile: str) -> Any:
    return page.locator(f'.slot[data-tile="{tile}"]')


# -- the tests ------------------------------------------------------------------------------

async def test_kpi_and_chart_from_ingested_readings(site: Site, context: tuple[BrowserContext, Watch],
                                                    agencies: Agencies, ingest: IngestProcess,
                                                    broker: MosquittoRig) -> None:
    """Readings an agency sends go through the ingest into PostgreSQL; the chart draws them."""
    ctx, watch = context
    await site.show(LAYOUT_ID)
    agency, password = await agencies.add(["mt"], prefix="wp")
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    readings = [{"kpi": "mt.aqi", "area": "13291", "ts": (now - timedelta(hours=47 - i)).isoformat(),
                 "value": round(60 + 25 * float(np.sin(i / 5)) + i / 4)} for i in range(48)]  # AQI: whole numbers
    pub = MqttClient(broker.host, broker.port, agency, password).wait_connected()
    try:
        pub.publish(f"ioc/v1/kpi/{agency}", readings)
    finally:
        pub.close()
    page = await open_screen(ctx, watch, site, 5)
    expected = str(readings[-1]["value"])
    await expect(slot(page, "wp-aqi").locator(".kpi-number")).to_have_text(expected, timeout=20000)
    line = slot(page, "wp-chart").locator("path.chart-line")
    await expect(line).to_have_count(1, timeout=15000)
    d = await line.get_attribute("d")
    # 48 hours: the 47 whole ones drawn solid, the hour now running dashed (it is partial)
    assert d is not None and d.count("L") == 46, d
    await expect(slot(page, "wp-chart").locator("path.chart-partial")).to_have_count(1)
    await expect(slot(page, "wp-chart").locator("text.chart-last")).to_have_text(f"{expected} AQI")
    await expect(slot(page, "wp-chart").locator("text.chart-label").first).to_have_text(re.compile(r"^cao nhất \d+$"))
    await expect(slot(page, "wp-chart").locator("text.chart-label").nth(1)).to_have_text(re.compile(r"^\d\d/\d\d \d\d:\d\d$"))
    await expect(slot(page, "wp-chart").locator("text.chart-label").last).to_have_text(re.compile(r"^đến \d\d:\d\d$"))
    assert not watch.errors, watch.errors


async def test_screen_5_draws_its_region_with_live_tiles(site: Site, context: tuple[BrowserContext, Watch],
                                                         live: Live) -> None:
    ctx, watch = context
    await site.show(LAYOUT_ID)
    live.healthy("wp-c1", "wp-c2")
    live.kpi("an.eid_level2_accounts", "347", 1234.5)
    live.kpi("tthc.on_time_rate", "347", 97.5)
    page = await open_screen(ctx, watch, site, 5)

    # exactly the tiles that touch screen 5, where the grid puts them (480 x 270 px cells)
    ids = set(await page.locator("#stage > .slot").evaluate_all("els => els.map(e => e.dataset.tile)"))
    assert ids == SCREEN5
    boxes = {t: await slot(page, t).bounding_box() for t in SCREEN5}
    assert boxes["wp-cam"] == {"x": 0, "y": 0, "width": 960, "height": 540}
    assert boxes["wp-kpi"] == {"x": 960, "y": 0, "width": 960, "height": 270}
    assert boxes["wp-kpi2"] == {"x": 960, "y": 270, "width": 960, "height": 270}
    assert boxes["wp-aqi"] == {"x": 480, "y": 540, "width": 480, "height": 540}
    # the tile spanning screens 4 and 5 is cut at the screen's edge; its picture runs on past it
    assert boxes["wp-span"] == {"x": 0, "y": 540, "width": 480, "height": 540}
    await expect(slot(page, "wp-span")).to_have_class(re.compile(r"\bpartial\b"))
    frame = await slot(page, "wp-span").locator(".cam-frame").bounding_box()
    assert frame is not None and frame["x"] < -400 and frame["width"] > 900
    # so is the chart spanning screens 5 and 6: laid out whole (960 px less the gaps), clipped
    assert boxes["wp-chart"] == {"x": 1440, "y": 540, "width": 480, "height": 540}
    await expect(slot(page, "wp-chart")).to_have_class(re.compile(r"\bpartial\b"))
    chart = await slot(page, "wp-chart").locator(".tile").bounding_box()
    assert chart == {"x": 1446, "y": 546, "width": 948, "height": 528}, chart

    # the camera picture appears, fresh and in colour, with its age
    cam = slot(page, "wp-cam").locator(".tile")
    await expect(cam).to_have_attribute("data-state", "ok", timeout=10000)
    assert await cam.locator("img.cam-img").evaluate("i => i.naturalWidth") == 640
    await expect(cam).not_to_have_class(re.compile(r"\bstale\b"))
    await expect(cam.locator(".cam-age")).to_have_text(re.compile(r"^(vừa xong|\d+ giây trước)$"))
    await expect(cam.locator(".tile-title")).to_have_text(CAMERAS["wp-c1"])
    await expect(slot(page, "wp-span").locator(".tile")).to_have_attribute("data-camera", "wp-c2", timeout=10000)

    # KPI values the Vietnamese way, with the target verdict
    await expect(slot(page, "wp-kpi").locator(".kpi-number")).to_have_text("1.234,5", timeout=10000)
    await expect(slot(page, "wp-kpi").locator(".kpi-unit")).to_have_text("tài khoản")
    kpi2 = slot(page, "wp-kpi2").locator(".tile")
    await expect(kpi2.locator(".kpi-number")).to_have_text("97,5")
    await expect(kpi2).to_have_attribute("data-status", "missed")
    await expect(kpi2.locator(".kpi-meta")).to_contain_text("Mục tiêu ≥ 98 %")
    await expect(kpi2.locator(".kpi-time")).to_have_text(re.compile(r"^\d\d/\d\d/\d{4} \d\d:\d\d$"))
    live.kpi("an.eid_level2_accounts", "347", 1_234_567)
    await expect(slot(page, "wp-kpi").locator(".kpi-number")).to_have_text("1.234.567", timeout=10000)
    await expect(slot(page, "wp-kpi").locator(".kpi-trend")).to_have_text("▲")
    assert not watch.errors, watch.errors

    # the picture in the README: every kind of tile screen 5 has, with plausible figures
    live.kpi("tthc.on_time_rate", "347", 98.6)
    live.healthy("wp-c1", "wp-c2")
    await expect(kpi2).to_have_attribute("data-status", "met", timeout=10000)
    await page.wait_for_timeout(1000)  # the chart's series (the test before sent the readings)
    await page.screenshot(path=str(SHOTS / "wall-screen-5.png"))


async def test_stale_or_faulty_camera_turns_grey_with_the_reason(site: Site, context: tuple[BrowserContext, Watch],
                                                                 live: Live) -> None:
    ctx, watch = context
    await site.show(LAYOUT_ID)
    live.status("wp-c1")
    live.picture("wp-c1", age_s=7.0)  # fresh for three more seconds
    page = await open_screen(ctx, watch, site, 5)
    cam = slot(page, "wp-cam").locator(".tile")
    await expect(cam).to_have_attribute("data-state", "ok", timeout=10000)
    await expect(cam).not_to_have_class(re.compile(r"\bstale\b"))
    # no newer picture: past 10 s the tile goes grey and says why
    await expect(cam).to_have_class(re.compile(r"\bstale\b"), timeout=8000)
    await expect(cam).to_have_attribute("data-state", "stale")
    await expect(cam.locator(".cam-status")).to_have_text("Hình không cập nhật")
    await expect(cam.locator(".cam-age")).to_have_text(re.compile(r"^1\d giây trước$"))
    await expect(cam.locator("img.cam-img")).to_have_css("filter", re.compile(r"grayscale\(1\)"))
    # a fresh picture brings the colour back
    live.picture("wp-c1")
    await expect(cam).to_have_attribute("data-state", "ok", timeout=10000)
    await expect(cam).not_to_have_class(re.compile(r"\bstale\b"))
    # and the camera service's verdicts grey it at once, in words an operator reads from afar
    for state, flags, text in (("offline", {}, "Mất tín hiệu"), ("online", {"frozen": True}, "Hình đứng"),
                               ("online", {"black": True}, "Màn hình đen")):
        live.status("wp-c1", state, **flags)
        live.picture("wp-c1")
        await expect(cam.locator(".cam-status")).to_have_text(text, timeout=10000)
        await expect(cam).to_have_class(re.compile(r"\bstale\b"))
    live.status("wp-c1")
    await expect(cam).to_have_attribute("data-state", "ok", timeout=10000)
    assert not watch.errors, watch.errors


async def test_console_switch_reaches_all_nine_screens_together(site: Site, context: tuple[BrowserContext, Watch],
                                                                live: Live) -> None:
    ctx, watch = context
    await site.show(LAYOUT_ID)
    screens = [await open_screen(ctx, watch, site, n) for n in range(1, 10)]
    console = watch.attach(await ctx.new_page())
    await console.set_viewport_size({"width": 1600, "height": 1000})
    await console.goto(f"{site.base}/wall/console.html")
    await log_in(console, site.users["operator"])
    # every screen shows as connected, on the list and on the mini map
    await expect(console.locator("#screens li.connected")).to_have_count(9, timeout=10000)
    await expect(console.locator("#mini-screens .mini-screen.connected")).to_have_count(9)
    await expect(console.locator("#mini-tiles .slot")).to_have_count(len(LAYOUT["tiles"]), timeout=10000)
    await expect(console.locator(f'#layouts button[data-layout="{LAYOUT_ID}"]')).to_have_class(re.compile(r"\bcurrent\b"))

    await console.locator('#layouts button[data-layout="overview"]').click()
    for page in screens:
        await expect(page.locator("body")).to_have_attribute("data-layout", "overview", timeout=10000)
    records = [await p.evaluate("window.__ioc.applied[window.__ioc.applied.length - 1]") for p in screens]
    assert all(r["layout"] == "overview" for r in records)
    assert len({r["version"] for r in records}) == 1 and len({r["at"] for r in records}) == 1
    applied = [r["appliedAt"] for r in records]
    spread = max(applied) - min(applied)
    # together and on time: every screen waits for the announced moment (clocks agree on one
    # machine), so only a busy box's timer lateness separates them (~10 ms when quiet)
    assert spread < 500, f"the nine screens switched {spread:.0f} ms apart: {applied}"
    assert all(-0.05 < r["late"] < 1.5 for r in records), [r["late"] for r in records]
    await expect(console.locator('#layouts button[data-layout="overview"]')).to_have_class(re.compile(r"\bcurrent\b"))
    overview = load_presets(LAYOUTS)["overview"]
    await expect(console.locator("#mini-tiles .slot")).to_have_count(len(overview.tiles))

    # a screen that goes away shows as missing on the console
    await screens[8].close()
    await expect(console.locator('#screens li[data-screen="9"]')).not_to_have_class(re.compile(r"\bconnected\b"),
                                                                                    timeout=10000)
    await expect(console.locator('#screens li[data-screen="9"] .addr')).to_have_text("chưa kết nối")
    assert not watch.errors, watch.errors


async def test_console_pins_a_camera_and_acknowledges_an_alert(site: Site, context: tuple[BrowserContext, Watch],
                                                               live: Live,
                                                               pool: asyncpg.Pool) -> None:
    ctx, watch = context
    await site.show(LAYOUT_ID)
    live.healthy("wp-c1", "wp-c2", "wp-c3")
    live.kpi("tthc.on_time_rate", "347", 99.0)
    live.kpi("tthc.on_time_rate", "347", 96.5)  # below the 98 % target: an alert
    screens = [await open_screen(ctx, watch, site, n) for n in range(1, 10)]
    screen = screens[4]
    console = watch.attach(await ctx.new_page())
    await console.set_viewport_size({"width": 1600, "height": 1000})
    await console.goto(f"{site.base}/wall/console.html")
    await log_in(console, site.users["operator"])

    # pin camera wp-c3 into the spanning tile: picked on the mini map, then the camera
    await console.locator('#mini-tiles .slot[data-tile="wp-span"]').click()
    await expect(console.locator("#pin-tile")).to_have_value("wp-span")
    await expect(console.locator('#pin-camera option[value="wp-c3"]')).to_have_count(1, timeout=10000)
    await console.locator("#pin-camera").select_option("wp-c3")
    await console.locator("#pin-form button[type=submit]").click()
    await expect(console.locator("#pin-msg.ok")).to_have_text(f"Đã ghim {CAMERAS['wp-c3']} vào ô “{CAMERAS['wp-c2']} · màn hình 4, 5”")
    await expect(console.locator("#pins")).to_contain_text(f"← {CAMERAS['wp-c3']}")
    await expect(slot(screen, "wp-span").locator(".tile")).to_have_attribute("data-camera", "wp-c3", timeout=10000)
    await expect(slot(screen, "wp-span").locator(".tile-title")).to_have_text(CAMERAS["wp-c3"])
    await expect(slot(screens[3], "wp-span").locator(".tile")).to_have_attribute("data-camera", "wp-c3", timeout=10000)

    # the alert for the missed target, acknowledged from the console
    item = console.locator("#alerts li.alert").filter(has=console.locator("button.alert-ack")).first
    await expect(item).to_be_visible(timeout=20000)
    alert_id = int(await item.get_attribute("data-alert") or 0)
    await expect(console.locator("#screens li.connected")).to_have_count(9)
    await console.wait_for_timeout(500)
    await console.screenshot(path=str(SHOTS / "console.png"))
    await item.locator("button.alert-ack").click()
    acked = console.locator(f'#alerts li[data-alert="{alert_id}"]')
    await expect(acked).to_have_class(re.compile(r"\backed\b"), timeout=10000)
    await expect(acked.locator(".alert-meta")).to_contain_text(f"Đã xác nhận: {site.users['operator'][0]}")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT acked_by FROM alerts WHERE id = $1", alert_id) == site.users["operator"][0]

    await console.locator("#unpin").click()
    await expect(console.locator("#pin-msg")).to_have_text(re.compile(r"^Đã bỏ ghim ô “.* · màn hình 4, 5”$"))
    await expect(slot(screen, "wp-span").locator(".tile")).to_have_attribute("data-camera", "wp-c2", timeout=10000)
    assert not watch.errors, watch.errors


async def test_tablet_logs_in_and_rides_out_a_lost_link(site: Site, browser: Browser, live: Live) -> None:
    await site.show(LAYOUT_ID)
    live.healthy("wp-c1", "wp-c2")
    live.kpi("an.eid_level2_accounts", "347", 1234.5)
    ctx = await browser.new_context(viewport={"width": 1180, "height": 820}, locale="vi-VN", has_touch=True,
                                    timezone_id="America/New_York")
    watch = Watch(site.base)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{site.base}/wall/tablet.html")
        await log_in(page, site.users["leader"])
        await expect(page.locator("body")).to_have_attribute("data-layout", LAYOUT_ID, timeout=15000)
        ids = set(await page.locator("#tiles > .slot").evaluate_all("els => els.map(e => e.dataset.tile)"))
        assert ids == {t["id"] for t in LAYOUT["tiles"]}
        await expect(slot(page, "wp-kpi").locator(".kpi-number")).to_have_text("1.234,5", timeout=10000)
        await expect(slot(page, "wp-kpi").locator(".tile-title")).to_have_text("Tài khoản định danh mức 2")
        await expect(slot(page, "wp-cam").locator(".tile")).to_have_attribute("data-state", "ok", timeout=10000)
        await expect(slot(page, "wp-clock").locator(".clock-date")).to_have_text(re.compile(r"^(Thứ [^,]+|Chủ nhật), \d\d/\d\d/\d{4}$"))
        # the province's clock, not the tablet's (its zone here is New York)
        hanoi = datetime.now(timezone(timedelta(hours=7)))
        clock = await slot(page, "wp-clock").locator(".clock-time").text_content()
        assert clock is not None and clock[:2] in {f"{(hanoi + timedelta(seconds=s)).hour:02d}" for s in (-5, 5)}, clock

        # English on a tap, Vietnamese back
        await page.locator("#lang").tap()
        await expect(slot(page, "wp-kpi").locator(".tile-title")).to_have_text("e-ID level 2 accounts")
        await expect(page.locator("#logout")).to_have_text("Log out")
        await page.locator("#lang").tap()
        await expect(slot(page, "wp-kpi").locator(".tile-title")).to_have_text("Tài khoản định danh mức 2")
        await page.wait_for_timeout(1200)  # the chart's series and the pictures settle
        await page.screenshot(path=str(SHOTS / "tablet.png"), full_page=True)

        await page.evaluate("window.__marker = 'still the same page'")
        boot = await page.evaluate("window.__ioc.boot")
        banner = page.locator("#banner")

        # the network goes away and comes back
        await ctx.set_offline(True)
        await expect(banner).to_be_visible(timeout=10000)
        await expect(banner).to_have_text(re.compile("kết nối lại"))
        await ctx.set_offline(False)
        await expect(page.locator("body")).to_have_attribute("data-hub", "open", timeout=20000)
        await expect(banner).to_be_hidden()

        # the server goes away (its websocket drops) and comes back
        await asyncio.to_thread(site.proc.stop)
        await expect(banner).to_be_visible(timeout=10000)
        await expect(banner).to_have_text("Đang kết nối lại…")
        await expect(slot(page, "wp-kpi").locator(".kpi-number")).to_have_text("1.234,5")  # nothing blanked
        await asyncio.to_thread(site.proc.start)
        await expect(page.locator("body")).to_have_attribute("data-hub", "open", timeout=30000)
        await expect(banner).to_be_hidden()
        live.kpi("an.eid_level2_accounts", "347", 2345.5)
        await expect(slot(page, "wp-kpi").locator(".kpi-number")).to_have_text("2.345,5", timeout=10000)
        assert await page.evaluate("window.__marker") == "still the same page"
        assert await page.evaluate("window.__ioc.boot") == boot
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert await page.evaluate("window.__ioc.hub.connections") >= 3
        # the browser logs the attempts that found no server; nothing else went wrong
        down = re.compile(r"ERR_CONNECTION_REFUSED|ERR_INTERNET_DISCONNECTED")
        assert not [e for e in watch.errors if not down.search(e)], watch.errors
        assert not watch.foreign(), watch.foreign()
    finally:
        await ctx.close()


async def test_bad_tokens_and_wrong_passwords_are_said_plainly(site: Site, context: tuple[BrowserContext, Watch]) -> None:
    ctx, watch = context
    page = watch.attach(await ctx.new_page())
    await page.goto(site.screen_url(5, "not-a-token"))
    fatal = page.locator("#fatal")
    await expect(fatal).to_be_visible(timeout=10000)
    await expect(fatal.locator(".vi")).to_have_text("Mã truy cập không hợp lệ hoặc đã bị thu hồi")
    await expect(fatal.locator(".en")).to_have_text("The access token is invalid or was revoked")
    await expect(fatal.locator(".detail")).to_contain_text("invalid token")
    await expect(page.locator("#stage > .slot")).to_have_count(0)

    await page.goto(f"{site.base}/wall/screen.html?screen=5")
    await expect(page.locator("#fatal .vi")).to_contain_text("Thiếu mã truy cập")
    await page.goto(f"{site.base}/wall/screen.html?screen=12#token=x")
    await expect(page.locator("#fatal .vi")).to_contain_text("Thiếu số màn hình")

    # a leader's token opens a tablet, not a screen
    await page.goto(site.screen_url(5, site.tokens["leader"]))
    await expect(page.locator("#fatal .vi")).to_have_text("Tài khoản này không được mở trang này", timeout=10000)

    tablet = watch.attach(await ctx.new_page())
    await tablet.goto(f"{site.base}/wall/tablet.html")
    form = tablet.locator("#login form")
    await form.locator("input[name=username]").fill(site.users["leader"][0])
    await form.locator("input[name=password]").fill("wrong password")
    await form.locator("button[type=submit]").click()
    await expect(form.locator(".error")).to_have_text("Sai tên đăng nhập hoặc mật khẩu")
    # a stored session whose token the hub refuses: back to the login, with the reason
    await tablet.evaluate("""sessionStorage.setItem('ioc.session.tablet',
        JSON.stringify({token: 'expired.or.forged', role: 'leader', username: 'x', expires: Date.now() / 1000 + 3600}))""")
    await tablet.reload()
    await expect(form.locator(".error")).to_have_text("Phiên đăng nhập đã hết hạn, xin đăng nhập lại", timeout=10000)
    # a leader may not open the console
    console = watch.attach(await ctx.new_page())
    await console.goto(f"{site.base}/wall/console.html")
    cform = console.locator("#login form")
    await cform.locator("input[name=username]").fill(site.users["leader"][0])
    await cform.locator("input[name=password]").fill(site.users["leader"][1])
    await cform.locator("button[type=submit]").click()
    await expect(cform.locator(".error")).to_contain_text("không được mở trang này")


async def test_chart_fetches_its_series_once_and_follows_live_readings(
        site: Site, context: tuple[BrowserContext, Watch], agencies: Agencies, ingest: IngestProcess,
        broker: MosquittoRig) -> None:
    """One /series per layout, not one per reading: the page puts each live reading into the
    last bucket (or a new one) itself, as the server would (AQI: the mean per hour). A commune
    no other test reports for, so the series holds this test's readings only."""
    ctx, watch = context
    AREA = "13627"  # noqa: N806 - Xã Tiến Thắng
    chart = _tile("cf-chart", "chart", 4, 4, 4, 4, "AQI Tiến Thắng", "AQI Tien Thang", kpi="mt.aqi", area=AREA,
                  bucket="1h", hours=48)
    first = {**LAYOUT, "id": "cf-a", "tiles": [chart]}
    # the same chart moved, next to a text: the view is kept, the new layout loads it once more
    second = {**LAYOUT, "id": "cf-b", "tiles": [{**chart, "w": 2}, _tile("cf-text", "text", 6, 4, 2, 4, text_vi="B")]}
    for doc in (first, second):
        await site.call("PUT", f"/api/v1/wall/layouts/{doc['id']}", json=doc)
    agency, password = await agencies.add(["mt"], prefix="cf")
    pub = MqttClient(broker.host, broker.port, agency, password).wait_connected()
    base = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=10)
    query = {"kpi": "mt.aqi", "area": AREA, "bucket": "1h", "start": (base - timedelta(hours=5)).isoformat()}
    try:
        # a little history, committed before the screen opens
        pub.publish(f"ioc/v1/kpi/{agency}", [{"kpi": "mt.aqi", "area": AREA, "ts": (base - timedelta(hours=h)).isoformat(),
                                              "value": 30 + h} for h in (3, 2, 1)])
        deadline = time.monotonic() + 20
        while len((await site.call("GET", "/api/v1/series", params=query))["points"]) < 3:
            assert time.monotonic() < deadline, "the history never reached the database"
            await asyncio.sleep(0.2)
        await site.show("cf-a")
        page = await open_screen(ctx, watch, site, 5, "cf-a")
        fetches: list[str] = []
        page.on("request", lambda r: "/api/v1/series" in r.url and fetches.append(r.url))
        tile = slot(page, "cf-chart").locator(".tile")
        await expect(tile).to_have_attribute("data-points", "3", timeout=15000)
        opened = len([u for u in watch.requests if "/api/v1/series" in u])
        assert opened == 1, watch.requests

        # 20 readings, one at a time, two per hour: every other one starts a new bucket
        buckets: dict[datetime, list[int]] = {}
        for i in range(20):
            ts = base + timedelta(minutes=30 * i)
            value = 40 + 2 * i
            buckets.setdefault(ts.replace(minute=0), []).append(value)
            pub.publish(f"ioc/v1/kpi/{agency}", [{"kpi": "mt.aqi", "area": AREA, "ts": ts.isoformat(), "value": value}])
            mean = sum(buckets[ts.replace(minute=0)]) / len(buckets[ts.replace(minute=0)])
            await expect(tile.locator("text.chart-last")).to_have_text(f"{mean:.0f} AQI", timeout=15000)
        await expect(tile).to_have_attribute("data-points", str(3 + len(buckets)))
        await page.wait_for_timeout(1500)  # a refetch that would still come
        assert fetches == [], f"{len(fetches)} fetches of /series for 20 readings"
        assert await tile.get_attribute("data-fetches") == "1"
        # what the page worked out is what the server says
        server = (await site.call("GET", "/api/v1/series", params=query))["points"]
        assert len(server) == 3 + len(buckets)
        assert float(await tile.get_attribute("data-last-value") or "nan") == pytest.approx(server[-1]["value"])
        assert int(await tile.get_attribute("data-last-n") or 0) == server[-1]["n"] == 2
        assert datetime.fromisoformat((await tile.get_attribute("data-last-bucket") or "").replace("Z", "+00:00")) == \
            datetime.fromisoformat(server[-1]["bucket"])

        # another layout with the same chart: one more fetch, not more
        await site.show("cf-b")
        await expect(page.locator("body")).to_have_attribute("data-layout", "cf-b", timeout=15000)
        await expect(tile).to_have_attribute("data-fetches", "2", timeout=15000)
        await page.wait_for_timeout(1500)
        assert len(fetches) == 1 and await tile.get_attribute("data-fetches") == "2", fetches
        await expect(tile.locator("text.chart-last")).to_have_text(f"{server[-1]['value']:.0f} AQI")
        assert not watch.errors, watch.errors
    finally:
        pub.close()
        await site.show(LAYOUT_ID)


# The frame number the counter clips carry (tests/rigs/rtsp/counter.py), read from a camera
# tile's canvas in the page: 16 blocks of 32 px at the top left, MSB first, white = 1, and
# below them the same bits inverted; the centre 16 x 16 px of each block is sampled.
COUNTER_FROM_PIXELS = """(px) => {
  const mean = (block, row) => {
    let sum = 0;
    for (let y = row * 32 + 8; y < row * 32 + 24; y++)
      for (let x = block * 32 + 8; x < block * 32 + 24; x++) {
        const i = (y * 512 + x) * 4;
        sum += (px[i] + px[i + 1] + px[i + 2]) / 3;
      }
    return sum / 256;
  };
  let value = 0;
  for (let b = 0; b < 16; b++) {
    const bit = mean(b, 0), inverse = mean(b, 1);
    if (!(bit >= 175 || bit <= 80) || (bit >= 175) !== (inverse <= 80)) return null;
    value = value * 2 + (bit >= 175 ? 1 : 0);
  }
  return value;
}"""
READ_COUNTER = """(tile) => {
  const c = tile.querySelector("canvas.cam-video");
  if (!c || c.width < 512 || c.height < 64) return null;
  const value = (%s)(c.getContext("2d").getImageData(0, 0, 512, 64).data);
  if (value === null) return { value: null };
  return { value, seq: Number(tile.dataset.videoLastSeq), frames: Number(tile.dataset.videoFrames) };
}""" % COUNTER_FROM_PIXELS


async def play_counter(site: Site, live: Live, clip: Any = None) -> tuple[Any, VideoReplay]:
    """The test layout on the wall, wp-c1 healthy with a picture, and its sub-stream playing
    `clip` (the 360p counter clip by default)."""
    await site.show(LAYOUT_ID)
    live.healthy("wp-c1")
    clip = clip or load_clip(media_path("counter-360p.mp4"))
    return clip, VideoReplay(live.cameras.c, "wp-c1", "sub", clip).start()


async def playing_tile(ctx: BrowserContext, watch: Watch, site: Site, timeout: float = 15000) -> tuple[Page, Any]:
    """Screen 5 open, its wp-c1 tile playing video: (the page, the tile)."""
    page = await open_screen(ctx, watch, site, 5)
    cam = slot(page, "wp-cam").locator(".tile")
    await expect(cam).to_have_attribute("data-video", "playing", timeout=timeout)
    return page, cam


# A camera tile's video state and what shows of it, read in one go.
SHOWN = """(tile) => ({
  video: tile.dataset.video, reason: tile.dataset.videoReason, frames: tile.dataset.videoFrames,
  img: getComputedStyle(tile.querySelector("img.cam-img")).visibility,
  canvas: getComputedStyle(tile.querySelector("canvas.cam-video")).visibility,
})"""


# Drops the page's hub link; ms from the link being open again to the next frame drawn.
AFTER_RECONNECTION = """async () => {
  const hub = window.__ioc.hub;
  const tile = document.querySelector('.slot[data-tile="wp-cam"] .tile');
  const sleep = () => new Promise((r) => setTimeout(r, 5));
  const before = hub.connections;
  hub._drop("test");
  while (hub.connections === before) await sleep();
  const open = performance.now();
  const frames = Number(tile.dataset.videoFrames);
  while (Number(tile.dataset.videoFrames) === frames) await sleep();
  return performance.now() - open;
}"""


async def test_camera_tile_plays_live_video_from_the_counter_clip(
        site: Site, context: tuple[BrowserContext, Watch], live: Live) -> None:
    """WebCodecs in Debian's Chromium decodes the H.264 the hub forwards; the frame numbers the
    clip carries advance, in order, on the canvas; the banners still lie over the video."""
    ctx, watch = context
    await site.show(LAYOUT_ID)
    live.healthy("wp-c1")
    clip = load_clip(media_path("counter-360p.mp4"))
    replay = VideoReplay(live.cameras.c, "wp-c1", "sub", clip).start()  # a 960 px tile: the sub-stream
    try:
        await asyncio.sleep(1.4)  # the screen joins in the middle of a group of pictures
        page = await open_screen(ctx, watch, site, 5)
        cam = slot(page, "wp-cam").locator(".tile")
        await expect(cam).to_have_attribute("data-video", "playing", timeout=10000)
        # a picture within 1 s of the first frame reaching the page: the hub sent the GOP at once
        waited = await page.evaluate("""() => {
          const tile = document.querySelector('.slot[data-tile="wp-cam"] .tile');
          return Number(tile.dataset.videoFirstDrawn) - window.__ioc.wall.videoSince.get("wp-c1");
        }""")
        assert 0 <= waited < 1000, f"first picture {waited:.0f} ms after the first frame"
        await expect(cam.locator("canvas.cam-video")).to_be_visible()
        # read in one go: the video's state, and which of canvas and picture shows
        shown = await cam.evaluate(SHOWN)
        assert shown["img"] == "hidden" and shown["canvas"] == "visible", (shown, watch.warnings)
        assert await cam.get_attribute("data-video-stream") == "sub"
        # the frame drawn is the frame the header says, and they advance in order
        readings = []
        deadline = time.monotonic() + 30  # ~4 s at 25 fps; a busy CI box may skip to keyframes on the way
        while len(readings) < 40 or readings[-1]["seq"] - readings[0]["seq"] <= 50:
            assert time.monotonic() < deadline, [r["seq"] for r in readings][-40:]
            r = await cam.evaluate(READ_COUNTER)
            assert r and r["value"] is not None, f"no counter on the canvas: {r}"
            assert r["value"] == (r["seq"] - 1) % len(clip.units), r
            readings.append(r)
            await page.wait_for_timeout(100)
        seqs = [r["seq"] for r in readings]
        assert seqs == sorted(seqs), seqs
        # every frame received is drawn (the hub may skip whole groups on a busy box: not counted)
        assert readings[-1]["frames"] - readings[0]["frames"] >= (seqs[-1] - seqs[0]) // 2
        await expect(cam.locator(".cam-age")).to_have_text(re.compile(r"^(vừa xong|1 giây trước)$"))
        # a reconnection: a picture again within 1 s of the link being back, never an older one
        waited = await page.evaluate(AFTER_RECONNECTION)
        assert waited < 1000, f"first picture {waited:.0f} ms after reconnecting"
        for _ in range(15):
            r = await cam.evaluate(READ_COUNTER)
            assert r and r["value"] == (r["seq"] - 1) % len(clip.units), r
            readings.append(r)
            await page.wait_for_timeout(100)
        seqs = [r["seq"] for r in readings]
        assert seqs == sorted(seqs), seqs
        # a camera the service calls offline shows its banner over the video
        live.status("wp-c1", "offline")
        await expect(cam.locator(".cam-status")).to_have_text("Mất tín hiệu", timeout=10000)
        await expect(cam.locator(".cam-status")).to_be_visible()
        live.status("wp-c1")
        await expect(cam).to_have_attribute("data-state", "ok", timeout=10000)
        assert not watch.errors, watch.errors
        await page.screenshot(path=str(SHOTS / "wall-screen-5-video.png"))
        # the video pauses: its last frame stays (the picture is older) until a newer picture comes
        replay.stop()
        await expect(cam).to_have_attribute("data-video", "waiting", timeout=10000)
        shown = await cam.evaluate(SHOWN)
        assert shown["canvas"] == "visible" and shown["img"] == "hidden", shown
        live.picture("wp-c1")
        await expect(cam.locator("img.cam-img")).to_have_css("visibility", "visible", timeout=10000)
        await expect(cam.locator("canvas.cam-video")).to_have_css("visibility", "hidden")
    finally:
        replay.stop()


@pytest.mark.parametrize("why", ["no-webcodecs", "codec"])
async def test_camera_tile_falls_back_to_pictures(site: Site, context: tuple[BrowserContext, Watch], live: Live,
                                                  why: str) -> None:
    """Without WebCodecs the page asks for no video in its hello; with a codec Chromium refuses
    (H.265 in the header) the tile asks the hub to stop that camera's video. Pictures either way."""
    ctx, watch = context
    await site.show(LAYOUT_ID)
    clip = load_clip(media_path("counter-360p.mp4"))
    if why == "no-webcodecs":
        await ctx.add_init_script("delete window.VideoDecoder")
    else:
        clip = replace(clip, codec="hev1.1.6.L93.B0")
    replay = VideoReplay(live.cameras.c, "wp-c1", "sub", clip).start()
    try:
        live.healthy("wp-c1")
        page = await open_screen(ctx, watch, site, 5)
        cam = slot(page, "wp-cam").locator(".tile")
        await expect(cam).to_have_attribute("data-video", "snapshots", timeout=10000)
        assert await cam.get_attribute("data-video-reason") == why
        await expect(cam).to_have_attribute("data-state", "ok", timeout=10000)
        assert await cam.locator("img.cam-img").evaluate("i => i.naturalWidth") == 640
        await expect(cam.locator("img.cam-img")).to_be_visible()
        await page.wait_for_timeout(500)
        got = await page.evaluate("() => window.__ioc.wall.videoFrames")
        await page.wait_for_timeout(1500)
        assert await page.evaluate("() => window.__ioc.wall.videoFrames") == got, "the hub sends video on"
        # no decoder: none came at all; a refused codec: some, until the hub heard the page
        assert (got == 0) == (why == "no-webcodecs"), got
        assert await cam.get_attribute("data-video-frames") is None
        assert not watch.errors, watch.errors
    finally:
        replay.stop()


@pytest.mark.parametrize("light", [False, True])
async def test_tablet_plays_the_sub_stream_unless_in_light_mode(
        site: Site, context: tuple[BrowserContext, Watch], live: Live, light: bool) -> None:
    ctx, watch = context
    clip, replay = await play_counter(site, live)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{site.base}/wall/tablet.html{'?video=off' if light else ''}")
        await log_in(page, site.users["leader"])
        cam = slot(page, "wp-cam").locator(".tile")
        await expect(cam).to_have_attribute("data-state", "ok", timeout=10000)
        if light:  # pictures only: the hub sends no video at all
            await page.wait_for_timeout(1500)
            assert await page.evaluate("() => window.__ioc.wall.videoFrames") == 0
            await expect(cam.locator("img.cam-img")).to_be_visible()
        else:
            await expect(cam).to_have_attribute("data-video", "playing", timeout=10000)
            assert await cam.get_attribute("data-video-stream") == "sub"
            r = await cam.evaluate(READ_COUNTER)
            assert r and r["value"] == (r["seq"] - 1) % len(clip.units), r
        assert not watch.errors, watch.errors
    finally:
        replay.stop()


# A decoder too slow for the stream: while `window.__slowDecoder` is set, the browser's own
# VideoDecoder still decodes but its pictures never come out in time (dropped).
SLOW_DECODER = """(() => {
  const Real = window.VideoDecoder;
  window.__slowDecoder = false;
  window.VideoDecoder = class extends Real {
    constructor(init) {
      super({ ...init, output: (f) => (window.__slowDecoder ? f.close() : init.output(f)) });
    }
  };
})();"""


async def test_camera_tile_falls_behind_to_pictures_and_steps_back_up(
        site: Site, context: tuple[BrowserContext, Watch], live: Live) -> None:
    """A decoder that falls behind: the tile shows pictures (reason "behind") and tells the hub
    to stop that camera's video; after the retry time (`?video_retry=3`, 30 s by default) it
    asks again and plays the live frames."""
    ctx, watch = context
    await ctx.add_init_script(SLOW_DECODER)
    clip, replay = await play_counter(site, live)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{site.base}/wall/screen.html?screen=5&video_retry=3#token={site.screens[5]}")
        cam = slot(page, "wp-cam").locator(".tile")
        await expect(cam).to_have_attribute("data-video", "playing", timeout=15000)
        await page.evaluate("() => { window.__slowDecoder = true; }")
        await expect(cam).to_have_attribute("data-video", "snapshots", timeout=10000)
        assert await cam.get_attribute("data-video-reason") == "behind"
        fell = time.monotonic()
        await expect(cam.locator("img.cam-img")).to_be_visible()
        await page.wait_for_timeout(800)  # the hub hears the page and stops the video
        got = await page.evaluate("() => window.__ioc.wall.videoFrames")
        await page.wait_for_timeout(1000)
        if time.monotonic() - fell < 2.5:  # not yet stepped up: nothing may have come since
            assert await page.evaluate("() => window.__ioc.wall.videoFrames") == got, "the hub sends video on"
        await page.evaluate("() => { window.__slowDecoder = false; }")
        await expect(cam).to_have_attribute("data-video", "playing", timeout=15000)
        stepped = time.monotonic() - fell
        assert 2.5 < stepped, f"stepped up {stepped:.1f} s after falling back (3 s asked)"
        r = await cam.evaluate(READ_COUNTER)
        assert r and r["value"] == (r["seq"] - 1) % len(clip.units), r
        assert not watch.errors, watch.errors
    finally:
        replay.stop()


def corrupt_clip(clip: Any) -> Any:
    """The clip with every picture's slice data replaced by noise (its SPS/PPS kept, so each
    keyframe still configures a decoder): what a camera sending corrupt packets gives."""
    rng = np.random.default_rng(7)
    units = []
    for unit, key in clip.units:
        head = unit[: unit.find(b"\\x00\\x00\\x00\\x01\\x65")] if key else b""
        nal = b"\\x65" if key else b"\\x41"
        units.append((head + b"\\x00\\x00\\x00\\x01" + nal + rng.integers(1, 255, 4000, dtype=np.uint8).tobytes(), key))
    return replace(clip, units=units)


async def test_camera_tile_falls_back_to_pictures_after_decoding_errors(
        site: Site, context: tuple[BrowserContext, Watch], live: Live) -> None:
    """Corrupt video: each decoding error waits for the next keyframe; the third within the
    retry time turns the tile to pictures (reason "errors") and stops that camera's video."""
    ctx, watch = context
    clip, replay = await play_counter(site, live, corrupt_clip(load_clip(media_path("counter-360p.mp4"))))
    try:
        page = await open_screen(ctx, watch, site, 5)
        cam = slot(page, "wp-cam").locator(".tile")
        await expect(cam).to_have_attribute("data-video", "snapshots", timeout=15000)
        assert await cam.get_attribute("data-video-reason") == "errors", watch.warnings
        failed = [w for w in watch.warnings if "decoding failed" in w]
        assert len(failed) == 3, watch.warnings
        await expect(cam).to_have_attribute("data-state", "ok", timeout=10000)
        await expect(cam.locator("img.cam-img")).to_be_visible()
        await expect(cam.locator("canvas.cam-video")).to_be_hidden()
        await page.wait_for_timeout(800)
        got = await page.evaluate("() => window.__ioc.wall.videoFrames")
        await page.wait_for_timeout(1500)
        assert await page.evaluate("() => window.__ioc.wall.videoFrames") == got, "the hub sends video on"
        assert not watch.errors, watch.errors
    finally:
        replay.stop()


# Samples the tile at every animation frame until `window.__gapStop` is set: a sample where
# the video does not show (the older picture instead), or its canvas holds no readable frame
# number (cleared, black, half drawn), is a gap.
WATCH_GAPS = """(tile) => {
  window.__gaps = [];
  window.__samples = 0;
  window.__gapStop = false;
  const c = tile.querySelector("canvas.cam-video");
  const img = tile.querySelector("img.cam-img");
  const readable = () => {
    if (c.width < 512 || c.height < 64) return false;
    const px = c.getContext("2d").getImageData(0, 0, 512, 64).data;
    for (let b = 0; b < 16; b++) {
      const at = (y, x) => { const i = (y * 512 + x) * 4; return (px[i] + px[i + 1] + px[i + 2]) / 3; };
      const bit = at(16, b * 32 + 16), inverse = at(48, b * 32 + 16);
      if (!(bit >= 175 || bit <= 80) || (bit >= 175) !== (inverse <= 80)) return false;
    }
    return true;
  };
  const step = () => {
    if (window.__gapStop) return;
    const canvas = getComputedStyle(c).visibility === "visible";
    const picture = getComputedStyle(img).visibility === "visible" && img.naturalWidth > 0;
    window.__samples += 1;
    if (!canvas || !readable())
      window.__gaps.push({ canvas, picture, stream: tile.dataset.videoStream, w: c.width, at: performance.now() });
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}"""


async def test_camera_tile_switches_streams_without_a_gap(
        site: Site, context: tuple[BrowserContext, Watch], live: Live) -> None:
    """The sub-stream stops: the hub moves the tile to the main stream, and back when the sub-stream
    returns. At every animation frame on the way the tile shows a whole frame: the last one
    stays on the canvas until the other stream's first newer frame replaces it."""
    ctx, watch = context
    await site.show(LAYOUT_ID)
    live.healthy("wp-c1")
    small, large = load_clip(media_path("counter-360p.mp4")), load_clip(media_path("counter-1080p.mp4"))
    main = VideoReplay(live.cameras.c, "wp-c1", "main", large).start()
    sub = VideoReplay(live.cameras.c, "wp-c1", "sub", small).start()
    try:
        page = await open_screen(ctx, watch, site, 5)
        cam = slot(page, "wp-cam").locator(".tile")
        await expect(cam).to_have_attribute("data-video", "playing", timeout=15000)
        await expect(cam).to_have_attribute("data-video-stream", "sub")
        await page.wait_for_timeout(500)
        await cam.evaluate(WATCH_GAPS)
        sub.stop()  # quiet for 2 s: the main stream instead
        await expect(cam).to_have_attribute("data-video-stream", "main", timeout=15000)
        assert await cam.evaluate("t => t.querySelector('canvas.cam-video').width") == 1920
        await page.wait_for_timeout(1000)
        sub = VideoReplay(live.cameras.c, "wp-c1", "sub", small).start()
        await expect(cam).to_have_attribute("data-video-stream", "sub", timeout=15000)
        assert await cam.evaluate("t => t.querySelector('canvas.cam-video').width") == 640
        await page.wait_for_timeout(1000)
        gaps, samples = await page.evaluate("() => { window.__gapStop = true; return [window.__gaps, window.__samples]; }")
        assert samples > 50, samples
        assert not gaps, (gaps[:5], len(gaps), samples)
        assert await cam.get_attribute("data-video") == "playing", watch.warnings
        r = await cam.evaluate(READ_COUNTER)
        assert r and r["value"] == (r["seq"] - 1) % len(small.units), r
        assert not watch.errors, watch.errors
    finally:
        sub.stop()
        main.stop()


# A decoder that keeps up but late: while `window.__lateDecoder` is set (ms), every picture the
# browser's VideoDecoder gives comes out that much later (a steady backlog, as on an overloaded
# machine or behind a slow link).
LATE_DECODER = """(() => {
  const Real = window.VideoDecoder;
  window.__lateDecoder = 0;
  window.VideoDecoder = class extends Real {
    constructor(init) {
      super({ ...init, output: (f) => {
        const ms = window.__lateDecoder;
        if (ms) setTimeout(() => init.output(f), ms); else init.output(f);
      } });
    }
  };
})();"""


async def test_camera_tile_playing_steadily_late_falls_back_to_pictures(
        site: Site, context: tuple[BrowserContext, Watch], live: Live) -> None:
    """Every frame drawn 3 s after it came: nothing piles up in the decoder's queue and
    something is drawn all the time, but the wall would show the past as live. The tile turns
    to pictures (reason "behind") within a few seconds."""
    ctx, watch = context
    await ctx.add_init_script(LATE_DECODER)
    clip, replay = await play_counter(site, live)
    try:
        page, cam = await playing_tile(ctx, watch, site)
        await page.wait_for_timeout(2000)
        assert await cam.get_attribute("data-video") == "playing", watch.warnings  # on time: it plays on
        await page.evaluate("() => { window.__lateDecoder = 3000; }")
        await expect(cam).to_have_attribute("data-video", "snapshots", timeout=15000)
        assert await cam.get_attribute("data-video-reason") == "behind"
        frames = int(await cam.get_attribute("data-video-frames") or 0)
        assert frames > 50, frames  # it did draw, late, until then
        assert not watch.errors, watch.errors
    finally:
        replay.stop()


# The decoder's queue as the page sees it: while `window.__queue` is a number, every
# VideoDecoder reports that many frames waiting (what a busy machine's decoder shows after the
# group of pictures sent on joining); null: the real queue.
QUEUED_DECODER = """(() => {
  const Real = window.VideoDecoder;
  window.__queue = null;
  window.VideoDecoder = class extends Real {
    get decodeQueueSize() { return window.__queue === null ? super.decodeQueueSize : window.__queue; }
  };
})();"""


async def test_camera_tile_plays_on_with_a_steady_queue_and_falls_back_when_it_keeps_growing(
        site: Site, context: tuple[BrowserContext, Watch], live: Live) -> None:
    """A decoder holding 14 frames queued for seconds keeps up (a joining burst on a busy
    machine, 0.6 s late): the tile plays on. A queue that grows tick after tick is a decoder
    slower than the camera: pictures instead (reason "behind", "frames queued")."""
    ctx, watch = context
    await ctx.add_init_script(QUEUED_DECODER)
    clip, replay = await play_counter(site, live)
    try:
        page, cam = await playing_tile(ctx, watch, site)
        await page.evaluate("() => { window.__queue = 14; }")
        await page.wait_for_timeout(4500)  # four ticks or more at 14
        assert await cam.get_attribute("data-video") == "playing", watch.warnings
        await page.evaluate("""() => { window.__grow = setInterval(() => { window.__queue += 5; }, 400); }""")
        await expect(cam).to_have_attribute("data-video", "snapshots", timeout=10000)
        assert await cam.get_attribute("data-video-reason") == "behind"
        assert any("frames queued" in w for w in watch.warnings), watch.warnings
        await page.evaluate("() => { clearInterval(window.__grow); window.__queue = null; }")
        assert not watch.errors, watch.errors
    finally:
        replay.stop()


async def test_camera_tile_draws_every_picture_of_a_stream_with_b_frames(
        site: Site, context: tuple[BrowserContext, Watch], live: Live, tmp_path: Path) -> None:
    """A camera encoding B-frames: units come in decode order (each reference before the
    B-frames shown ahead of it) and the decoder gives pictures in display order, so a reference
    comes out after B-frames that were sent later. Each is drawn, none is taken for a frame
    from the past: as many pictures drawn as frames received."""
    from tests.test_camera_bad_input import _encode, _pictures

    path = tmp_path / "bframes.mp4"
    _encode(path, _pictures(250), "keyint=25:min-keyint=25:scenecut=0:bframes=2:b-pyramid=none")
    ctx, watch = context
    clip, replay = await play_counter(site, live, load_clip(path))
    try:
        page, cam = await playing_tile(ctx, watch, site)
        await page.wait_for_timeout(1000)
        counts = "() => [window.__ioc.wall.videoFrames, Number(document.querySelector('.slot[data-tile=\"wp-cam\"] .tile').dataset.videoFrames)]"
        received0, drawn0 = await page.evaluate(counts)
        await page.wait_for_timeout(4000)
        received, drawn = await page.evaluate(counts)
        assert received - received0 > 50, (received, received0)
        # (a frame or two still in the decoder at either end)
        assert drawn - drawn0 >= received - received0 - 4, (drawn - drawn0, received - received0)
        assert await cam.get_attribute("data-video") == "playing", watch.warnings
        assert not watch.errors, watch.errors
    finally:
        replay.stop()


# A decoder slow to start: its first pictures come out only 3.5 s after it was made (a busy
# machine starting it with a whole group of pictures queued), then in time.
SLOW_START = """(() => {
  const Real = window.VideoDecoder;
  window.VideoDecoder = class extends Real {
    constructor(init) {
      const ready = performance.now() + 3500;
      super({ ...init, output: (f) => {
        const wait = ready - performance.now();
        if (wait > 0) setTimeout(() => init.output(f), wait); else init.output(f);
      } });
    }
  };
})();"""


async def test_camera_tile_gives_a_decoder_time_to_start(
        site: Site, context: tuple[BrowserContext, Watch], live: Live) -> None:
    """A decoder whose first picture takes 3.5 s is starting, not behind: the tile plays."""
    ctx, watch = context
    await ctx.add_init_script(SLOW_START)
    clip, replay = await play_counter(site, live)
    try:
        page, cam = await playing_tile(ctx, watch, site, timeout=20000)
        await page.wait_for_timeout(1500)
        assert await cam.get_attribute("data-video") == "playing", watch.warnings
        assert not [w for w in watch.warnings if "falls behind" in w], watch.warnings
        r = await cam.evaluate(READ_COUNTER)
        assert r and r["value"] == (r["seq"] - 1) % len(clip.units), r
        assert not watch.errors, watch.errors
    finally:
        replay.stop()
