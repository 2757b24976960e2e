"""`/docs` renders in Chromium with every host but the API unreachable (an
operations centre often has no internet; the demo prints `/docs` first)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Route, async_playwright

from tests.rigs.serve import ServeProcess
from tests.test_wall_pages import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}"
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def test_api_docs_render_with_no_outside_host(browser: Browser, wall_api: ServeProcess) -> None:
    path, rendered = "/docs", ".swagger-ui .opblock"  # one block per operation
    api_host = urlsplit(wall_api.base).netloc
    outside: list[str] = []

    async def only_the_api(route: Route) -> None:
        if urlsplit(route.request.url).netloc == api_host or route.request.url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort("internetdisconnected")

    page = await browser.new_page()
    try:
        await page.route("**/*", only_the_api)
        await page.goto(wall_api.base + path)
        await page.wait_for_selector(rendered, timeout=20000)
        assert await page.locator(rendered).count() >= 10
        assert not outside, f"the docs asked for outside hosts: {outside}"
    finally:
        await page.close()
