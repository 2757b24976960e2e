"""What operators and leaders see first (issue 13, "What operators see"), in a real Chromium
against a real `ioc serve`, Mosquitto and PostgreSQL: the fixtures of tests/test_wall_pages.py.

Each test saves a layout of its own, so what it checks does not depend on the presets.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import asyncpg
from playwright.async_api import BrowserContext, expect

from tests.test_wall_pages import (  # noqa: F401 - fixtures
    CAMERAS, LAYOUT_ID, SHOTS, Live, Site, Watch, _tile, browser, context, live, open_screen, site, slot,
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
