"""The agency's reporting page in a real Chromium against a real `ioc serve`, broker, ingest and
PostgreSQL: log in, see the last values, enter a month's figures, upload a spreadsheet."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import asyncpg
import openpyxl
import orjson
from playwright.async_api import Browser, expect

from tests.conftest import Agencies, IngestProcess
from tests.rigs.serve import ServeProcess
from tests.test_agency_reports import call, login
from tests.test_docs_offline import browser  # noqa: F401 - the module's Chromium, shared
from tests.test_wall_pages import SHOTS

KPI = "tthc.dossiers_received"
VN = timezone(timedelta(hours=7))


def months_back(n: int) -> datetime:
    now = datetime.now(VN)
    year, month = now.year, now.month - n
    while month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, 1, tzinfo=VN)


async def test_a_clerk_enters_a_month_and_uploads_a_sheet(
    pool: asyncpg.Pool, agencies: Agencies, ingest: IngestProcess, wall_api: ServeProcess, browser: Browser,  # noqa: F811 - the imported fixture
) -> None:
    agency, pw = await agencies.add(["tthc"], prefix="form")
    # an earlier month, reported by the agency's script: the form shows it beside the field
    earlier = months_back(2)
    r = await call(wall_api, "POST", "/api/v1/agency/readings", await login(wall_api, agency, pw),
                   content=orjson.dumps({"kpi": KPI, "area": "35", "ts": earlier.isoformat(), "value": 4321}))
    assert [row["status"] for row in r.json()["results"]] == ["accepted"]

    ctx = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="vi-VN", timezone_id="Europe/Paris")
    foreign: list[str] = []
    page = await ctx.new_page()
    page.on("request", lambda req: foreign.append(req.url) if not req.url.startswith((wall_api.base, "data:", "blob:")) else None)
    await page.goto(f"{wall_api.base}/wall/report.html")
    await page.fill("#login input[name=username]", agency)
    await page.fill("#login input[name=password]", pw)
    await page.click("#login button[type=submit]")
    await page.wait_for_function("window.__ioc && window.__ioc.ready", timeout=15000)
    await expect(page.locator("#area")).to_have_value("35")
    row = page.locator(f"#fields tr[data-kpi='{KPI}']")
    await expect(row.locator(".last")).to_contain_text("4.321")
    await expect(row.locator(".last")).to_contain_text(f"{earlier.month:02d}/{earlier.year}")
    assert await page.locator("#fields tr[data-kpi^='mt.']").count() == 0  # only the agency's sector

    month = months_back(1)
    await page.fill("#month", f"{month.year:04d}-{month.month:02d}")
    await row.locator("input").fill("777")
    await page.click("#month-form button[type=submit]")
    result = page.locator(f"#form-results tr[data-kpi='{KPI}']")
    await expect(result).to_have_attribute("data-status", "accepted", timeout=30000)
    await expect(result.locator(".status")).to_have_text("Đã nhận")
    async with pool.acquire() as conn:
        stored = await conn.fetchrow("SELECT value, ts FROM readings WHERE agency = $1 AND kpi = $2 AND ts = $3",
                                     agency, KPI, month)
    assert stored is not None and stored["value"] == 777.0
    await expect(row.locator(".last")).to_contain_text("777")  # the field's last value follows

    # the same month with another figure: the page sends it as a correction
    await row.locator("input").fill("780")
    await page.click("#month-form button[type=submit]")
    await expect(result).to_have_attribute("data-status", "corrected", timeout=30000)

    # a spreadsheet: per-row results, in English on request
    await page.click("#lang")
    csv_text = (f"kpi,area,period,value\r\n{KPI},13294,{month:%Y-%m},12\r\ntthc.nope,13294,{month:%Y-%m},3\r\n"
                f"{KPI},13291,{month:%Y-%m},\r\n")
    await page.set_input_files("#file", files=[{"name": "thang.csv", "mimeType": "text/csv", "buffer": csv_text.encode()}])
    await page.click("#upload-form button[type=submit]")
    rows = page.locator("#upload-results tbody tr")
    await expect(rows).to_have_count(2, timeout=30000)
    await expect(rows.nth(0)).to_have_attribute("data-status", "accepted")
    await expect(rows.nth(1)).to_have_attribute("data-status", "refused")
    await expect(rows.nth(1).locator(".reason")).to_contain_text("unknown kpi")
    await expect(rows.nth(0).locator(".status")).to_have_text("Accepted")
    await expect(page.locator("#upload-results .summary")).to_contain_text("1 rows without a value skipped")
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "report.png"), full_page=True)

    # a workbook with a formula: refused whole, the row and column named
    book = openpyxl.Workbook()
    book.active.append(["kpi", "area", "period", "value"])
    book.active.append([KPI, "3470", f"{month:%Y-%m}", "=2*3"])
    buf = io.BytesIO()
    book.save(buf)
    await page.set_input_files("#file", files=[{"name": "bad.xlsx", "mimeType": "application/octet-stream",
                                                "buffer": buf.getvalue()}])
    await page.click("#upload-form button[type=submit]")
    await expect(page.locator("#upload-results .errors")).to_contain_text("row 2, column D (value): a formula", timeout=30000)
    await ctx.close()
    assert not foreign, foreign
