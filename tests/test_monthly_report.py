"""The monthly report against the real PostgreSQL: its figures are the API's, late and silent
agencies are named, camera uptime comes from the status history, the XLSX reads back with
openpyxl and the PDF's text (pdftotext) holds Vietnamese words intact; the schedule makes one
report when two nodes run it at once; roles, unknown ids, path tricks and bad months.

One app (lifespan running, schedule off) drives the API in-process. Readings go in through
the ingest's own write path with chosen arrival times, for March 2026 (after the 2025
reform: province 37) and the months it is compared with (February 2026, and March 2025,
when Hà Nam, 35, was one of the units 37 succeeded).
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import openpyxl
import pytest

from ingest.store import ReadingStore
from ioc.core.readings import Reading
from ioc.core.settings import SettingsError, load_settings
from ioc.core.storage import reports as report_store
from ioc.core.storage.reports import ReportKey
from ioc.serve.api.app import create_app
from ioc.serve.reports.fonts import Fonts
from ioc.serve.reports.make import Maker, ReportBusy
from ioc.serve.reports.text import number
from ioc.serve.reports.schedule import due_month, run_due, scheduled_keys
from tests.conftest import REPO
from tests.test_api import Api

SECRET = "report-secret-" + "x" * 40
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MONTH = "2026-03"
START, END = datetime(2026, 3, 1, tzinfo=TZ), datetime(2026, 4, 1, tzinfo=TZ)
COUNTER, RATIO, HOURLY = "tthc.dossiers_received", "tthc.on_time_rate", "mt.aqi"
COMMUNES = {"13285": (90, 100), "13291": (95, 100), "13294": (99, 100)}  # on time / resolved, each day


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def days(start: datetime, n: int) -> list[datetime]:
    return [start + timedelta(days=i) for i in range(n)]


@dataclass
class World:
    api: Api
    staff: dict[str, str]  # role -> token
    tthc: str  # agency ids
    on_time: str
    late: str
    silent: str
    agency_tokens: dict[str, str]
    camera: str


async def _write(pool: asyncpg.Pool, readings: list[Reading]) -> None:
    async with pool.acquire() as conn:
        out = await ReadingStore().write(conn, readings, [])
    assert len(out.written) == len(readings), (out.duplicates, out.conflicts)


def _reading(ts: datetime, kpi: str, area: str, value: float, agency: str, *, late_by: timedelta = timedelta(hours=1),
             parts: tuple[float, float] | None = None) -> Reading:
    num, den = parts if parts else (None, None)
    return Reading(ts, kpi, area, float(value), agency, 0, None, ts + late_by, num, den)


@pytest.fixture(scope="module")
async def world(db_url: str, pool: asyncpg.Pool) -> AsyncIterator[World]:
    settings = load_settings(database_url=db_url, jwt_secret=SECRET, rollup_refresh_s=60, db_pool_max=6,
                             report_schedule=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        api = Api(app, pool)
        staff = {role: (await api.user(role))[2] for role in ("admin", "operator", "leader")}
        (tthc, tthc_token), (on_time, on_token), (late, late_token), (silent, silent_token) = [
            await api.agency(s) for s in (["tthc"], ["mt"], ["mt"], ["mt"])]
        rows = [_reading(ts, COUNTER, "37", 100 + ts.day, tthc) for ts in days(START, 31)]
        rows += [_reading(ts, COUNTER, "37", 90, tthc) for ts in days(datetime(2026, 2, 1, tzinfo=TZ), 28)]
        rows += [_reading(ts, COUNTER, "35", 80, tthc) for ts in days(datetime(2025, 3, 1, tzinfo=TZ), 31)]
        for code, (num, den) in COMMUNES.items():
            rows += [_reading(ts, RATIO, code, 100 * num / den, tthc, parts=(num, den)) for ts in days(START, 31)]
        rows += [_reading(ts, RATIO, "37", 99.0, tthc, parts=(990, 1000)) for ts in days(START, 31)]
        hours = [START + timedelta(hours=h) for h in range(31 * 24)]
        rows += [_reading(ts, HOURLY, "13285", 50, on_time, late_by=timedelta(minutes=5)) for ts in hours]
        # the late agency: nothing from 00:00 to 10:00 on 10 March (an 11-hour gap, hourly KPI)
        gap = (datetime(2026, 3, 10, tzinfo=TZ), datetime(2026, 3, 10, 10, tzinfo=TZ))
        rows += [_reading(ts, HOURLY, "13291", 60, late, late_by=timedelta(minutes=5))
                 for ts in hours if not gap[0] <= ts < gap[1]]
        # the silent one: its last reading came in February
        rows += [_reading(datetime(2026, 2, 10, tzinfo=TZ), HOURLY, "13294", 70, silent)]
        await _write(pool, rows)
        camera = uid("rpcam")
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO cameras (id, name, stream_url, mode, area) VALUES ($1, $2, 'rtsp://x/1', "
                               "'sub', '37')", camera, f"Ngã tư Biên Hòa {camera}")
            # online from 1 March, offline all of 11 March, online again to the end: 30 of 31 days
            await conn.executemany(
                "INSERT INTO camera_status_log (camera, at, state, healthy) VALUES ($1, $2, $3, $4)",
                [(camera, START - timedelta(days=2), "online", True),
                 (camera, datetime(2026, 3, 11, tzinfo=TZ), "offline", False),
                 (camera, datetime(2026, 3, 12, tzinfo=TZ), "online", True)])
            await conn.execute("INSERT INTO camera_events (camera, kind, started_at, ended_at) VALUES ($1, 'offline', "
                               "$2, $3)", camera, datetime(2026, 3, 11, tzinfo=TZ), datetime(2026, 3, 12, tzinfo=TZ))
        yield World(api, staff, tthc, on_time, late, silent,
                    {tthc: tthc_token, on_time: on_token, late: late_token, silent: silent_token}, camera)


async def _make(w: World, token: str, **body: Any) -> dict[str, Any]:
    r = await w.api.request("POST", "/api/v1/reports", token, json={"month": MONTH, **body})
    assert r.status_code == 201, r.text
    return r.json()


async def _file(w: World, token: str, report_id: int, fmt: str) -> bytes:
    r = await w.api.get(f"/api/v1/reports/{report_id}.{fmt}", token)
    assert r.status_code == 200, r.text
    return r.content


def _sheet(book: openpyxl.Workbook, name: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in book[name].iter_rows(min_row=2, values_only=True)]


@pytest.fixture(scope="module")
async def province(world: World) -> dict[str, Any]:
    """The province's report for March 2026, in Vietnamese, with its files."""
    row = await _make(world, world.staff["leader"], area="37")
    return {"row": row, "pdf": await _file(world, world.staff["leader"], row["id"], "pdf"),
            "xlsx": await _file(world, world.staff["leader"], row["id"], "xlsx")}


async def _series(w: World, kpi: str, month_start: datetime, month_end: datetime) -> float | None:
    r = await w.api.get("/api/v1/series", w.staff["operator"], params={
        "kpi": kpi, "area": "37", "bucket": "1M", "start": month_start.isoformat(), "end": month_end.isoformat()})
    assert r.status_code == 200, r.text
    points = r.json()["points"]
    return points[0]["value"] if points else None


async def test_report_figures_are_the_apis(world: World, province: dict[str, Any]) -> None:
    book = openpyxl.load_workbook(io.BytesIO(province["xlsx"]), read_only=True)
    assert book.sheetnames == ["Tổng quan", "Chỉ tiêu", "Xếp hạng", "Camera", "Báo cáo trễ"]
    figures = {r[0]: r for r in _sheet(book, "Chỉ tiêu")}
    assert {COUNTER, RATIO} <= figures.keys()
    feb, mar25 = datetime(2026, 2, 1, tzinfo=TZ), datetime(2025, 3, 1, tzinfo=TZ)
    for kpi, row in figures.items():
        assert row[3] == await _series(world, kpi, START, END), kpi
        assert row[6] == await _series(world, kpi, feb, START), kpi
        assert row[7] == await _series(world, kpi, mar25, datetime(2025, 4, 1, tzinfo=TZ)), kpi
    # and those are the readings written: the counter summed, the ratio weighted, the year
    # before from Hà Nam (35), which 37 succeeded in 2025
    assert figures[COUNTER][3] >= sum(100 + d for d in range(1, 32))
    assert figures[COUNTER][7] is not None and figures[COUNTER][7] >= 80 * 31
    assert figures[COUNTER][5] == "Không đạt" or figures[COUNTER][4] is None or figures[COUNTER][5] == "Đạt"


async def test_rankings_are_the_breakdowns(world: World, province: dict[str, Any]) -> None:
    book = openpyxl.load_workbook(io.BytesIO(province["xlsx"]), read_only=True)
    ranked: dict[str, list[tuple[Any, ...]]] = {}
    for row in _sheet(book, "Xếp hạng"):
        ranked.setdefault(row[0], []).append(row)
    assert RATIO in ranked
    for kpi, rows in ranked.items():
        r = await world.api.get("/api/v1/breakdown", world.staff["leader"], params={
            "kpi": kpi, "area": "37", "start": START.isoformat(), "end": END.isoformat()})
        assert r.status_code == 200, r.text
        api_rows = r.json()["rows"]
        assert [(x[2], x[1], x[4]) for x in rows] == [(a["code"], a["rank"], a["value"]) for a in api_rows], kpi
    # the communes written, best first: 99 %, 95 %, 90 % on time
    mine = [x for x in ranked[RATIO] if x[2] in COMMUNES]
    assert [x[2] for x in mine] == ["13294", "13291", "13285"]
    assert [x[4] for x in mine] == pytest.approx([99.0, 95.0, 90.0])
    assert mine[0][5] == "Đạt" and mine[2][5] == "Không đạt" and mine[0][3] == "Phường Châu Cầu (xã)"


async def test_late_and_silent_agencies_are_listed(world: World, province: dict[str, Any]) -> None:
    book = openpyxl.load_workbook(io.BytesIO(province["xlsx"]), read_only=True)
    late = {(r[0], r[2]): r for r in _sheet(book, "Báo cáo trễ")}
    assert late[(world.late, HOURLY)][4] == "Trễ hạn"
    assert late[(world.late, HOURLY)][7] == pytest.approx(11.0, abs=0.01)  # hours without a reading
    assert late[(world.silent, HOURLY)][4] == "Không báo cáo"
    assert late[(world.silent, HOURLY)][5] == 0
    assert (world.on_time, HOURLY) not in late
    # an agency's own report lists only itself
    row = await _make(world, world.agency_tokens[world.late], area="37")
    assert row["agency"] == world.late
    own = openpyxl.load_workbook(io.BytesIO(await _file(world, world.agency_tokens[world.late], row["id"], "xlsx")),
                                 read_only=True)
    assert "Xếp hạng" not in own.sheetnames and "Camera" not in own.sheetnames
    assert {r[0] for r in _sheet(own, "Báo cáo trễ")} == {world.late}


async def test_a_units_report_keeps_to_the_unit(world: World) -> None:
    """A commune's report: its own figures, no units below to rank, only its own cameras, and
    lateness judged from the readings for it (the late agency reported for another commune)."""
    row = await _make(world, world.staff["operator"], area="13285")
    book = openpyxl.load_workbook(io.BytesIO(await _file(world, world.staff["operator"], row["id"], "xlsx")),
                                  read_only=True)
    figures = {r[0]: r for r in _sheet(book, "Chỉ tiêu")}
    assert figures[RATIO][3] == pytest.approx(90.0)
    assert _sheet(book, "Xếp hạng") == []
    assert world.camera not in {r[0] for r in _sheet(book, "Camera")}
    late = {(r[0], r[2]): r[4] for r in _sheet(book, "Báo cáo trễ")}
    assert (world.on_time, HOURLY) not in late and late[(world.late, HOURLY)] == "Không báo cáo"


def test_reports_are_due_from_the_hour_on_the_first() -> None:
    assert due_month(datetime(2026, 5, 1, 5, 59, tzinfo=TZ), 6) == date(2026, 3, 1)
    assert due_month(datetime(2026, 5, 1, 6, tzinfo=TZ), 6) == date(2026, 4, 1)
    assert due_month(datetime(2026, 5, 20, 1, tzinfo=TZ), 6) == date(2026, 4, 1)
    assert due_month(datetime(2026, 1, 1, 8, tzinfo=TZ), 6) == date(2025, 12, 1)


async def test_camera_uptime_from_the_status_history(world: World, province: dict[str, Any]) -> None:
    book = openpyxl.load_workbook(io.BytesIO(province["xlsx"]), read_only=True)
    cams = {r[0]: r for r in _sheet(book, "Camera")}
    cam = cams[world.camera]
    assert cam[3] == pytest.approx(100 * 30 / 31)
    assert cam[4] == pytest.approx(30 * 24) and cam[5] == pytest.approx(31 * 24)
    assert cam[6] == 1  # the offline event of 11 March


def _pdftotext(pdf: bytes, tmp: Path, name: str) -> str:
    """The PDF's text; its first page is also rendered to an image (pdftoppm), which must
    work and not be blank."""
    path = tmp / f"{name}.pdf"
    path.write_bytes(pdf)
    # -singlefile: the image is <name>.png whatever the page count (pdftoppm pads the page
    # number to the count's width: a 10-page report in the full suite's database gave -01)
    subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", "-singlefile", str(path), str(tmp / name)],
                   check=True)
    assert (tmp / f"{name}.png").stat().st_size > 1000
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


async def test_pdf_text_is_vietnamese(world: World, province: dict[str, Any], tmp_path: Path) -> None:
    text = _pdftotext(province["pdf"], tmp_path, "vi")
    for words in ("BÁO CÁO THÁNG 03/2026", "Tỉnh Ninh Bình", "Chỉ tiêu so với mục tiêu", "Hồ sơ TTHC tiếp nhận",
                  "Xếp hạng theo đơn vị", "Phường Quang Trung",
                  "Thời gian hoạt động của camera", "Không báo cáo", "Trễ hạn", f"Ngã tư Biên Hòa {world.camera}"):
        assert words in text, words
    counter = sum(100 + d for d in range(1, 32))
    assert f"{counter // 1000}.{counter % 1000:03d}" in text  # 3.596: Vietnamese thousands
    # each KPI's line shows the API's figures for the month, the month before and a year before
    book = openpyxl.load_workbook(io.BytesIO(province["xlsx"]), read_only=True)
    lines = text.splitlines()
    feb, mar25 = datetime(2026, 2, 1, tzinfo=TZ), datetime(2025, 3, 1, tzinfo=TZ)
    for kpi, name in ((r[0], r[1]) for r in _sheet(book, "Chỉ tiêu")):
        line = next(x for x in lines if x.startswith(name[:40]))
        for lo, hi in ((START, END), (feb, START), (mar25, datetime(2025, 4, 1, tzinfo=TZ))):
            value = await _series(world, kpi, lo, hi)
            assert number(value, "vi") in line.split(), (kpi, value, line)
    english = await _make(world, world.staff["admin"], area="37", lang="en")
    text_en = _pdftotext(await _file(world, world.staff["admin"], english["id"], "pdf"), tmp_path, "en")
    assert "MONTHLY REPORT March 2026" in text_en and "Camera uptime" in text_en


async def test_schedule_makes_one_report_with_two_nodes(world: World) -> None:
    fonts = world.api.app.state.reports.fonts
    info = world.api.app.state
    makers = [Maker(world.api.pool, info.timezone, info.mode, fonts) for _ in range(2)]
    now = datetime(2026, 5, 1, 7, tzinfo=TZ)  # April's reports are due from 06:00 on 1 May
    made = await asyncio.gather(*(run_due(m, now, 6) for m in makers))
    async with world.api.pool.acquire() as conn:
        keys = await scheduled_keys(conn, date(2026, 4, 1))
        rows = [await report_store.find(conn, k) for k in keys]
    assert keys and all(r is not None for r in rows)
    ids = made[0] + made[1]
    assert sorted(ids) == sorted(r["id"] for r in rows if r is not None)  # each made once, by one node
    assert await run_due(makers[0], now, 6) == []  # and not again
    # the lock: while one holds it, the other is told, not blocked
    key = ReportKey(date(2026, 4, 1), "37", None, "en")
    async with world.api.pool.acquire() as conn:
        assert await report_store.try_lock(conn, key)
        with pytest.raises(ReportBusy):
            await makers[1].make(key, made_by="test", replace=False)
        await report_store.unlock(conn, key)


async def test_a_failing_report_does_not_hold_up_the_schedule(world: World, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """The font file gone after start: every report of the round fails when drawn; each is
    logged and skipped (none stored), and the round ends instead of raising at the first."""
    info = world.api.app.state
    gone = Fonts(tmp_path / "gone.ttf", tmp_path / "gone-bold.ttf")
    broken = Maker(world.api.pool, info.timezone, info.mode, gone)
    now = datetime(2026, 7, 1, 7, tzinfo=TZ)
    with caplog.at_level("ERROR", logger="ioc.reports"):
        assert await run_due(broken, now, 6) == []
    async with world.api.pool.acquire() as conn:
        keys = await scheduled_keys(conn, date(2026, 6, 1))
        assert [await report_store.find(conn, k) for k in keys] == [None] * len(keys)
    failed = [r for r in caplog.records if r.getMessage().startswith("scheduled report not made")]
    assert len(failed) == len(keys) and {r.area for r in failed} == {"37"}  # type: ignore[attr-defined]


async def test_roles_unknown_ids_and_path_tricks(world: World, province: dict[str, Any]) -> None:
    api, pid = world.api, province["row"]["id"]
    own = await _make(world, world.agency_tokens[world.silent], area="37")
    other = world.agency_tokens[world.on_time]
    for role in ("admin", "operator", "leader"):
        assert (await api.get(f"/api/v1/reports/{own['id']}.pdf", world.staff[role])).status_code == 200
        listed = (await api.get("/api/v1/reports", world.staff[role], params={"month": MONTH})).json()
        assert {pid, own["id"]} <= {r["id"] for r in listed}
    # an agency: its own report only; another agency's and the province's do not exist for it
    assert (await api.get(f"/api/v1/reports/{own['id']}.xlsx", world.agency_tokens[world.silent])).status_code == 200
    assert (await api.get(f"/api/v1/reports/{own['id']}.pdf", other)).status_code == 404
    assert (await api.get(f"/api/v1/reports/{pid}.pdf", other)).status_code == 404
    listed = (await api.get("/api/v1/reports", other)).json()
    assert all(r["agency"] == world.on_time for r in listed)
    r = await api.request("POST", "/api/v1/reports", other, json={"month": MONTH, "agency": world.silent})
    assert r.status_code == 403
    assert (await api.get(f"/api/v1/reports/{pid}.pdf")).status_code == 401
    for name in ("987654321.pdf", f"{pid}.exe", f"{pid}", f"..%2F{pid}.pdf", "..%2F..%2Fetc%2Fpasswd",
                 f"{pid}.pdf%00.txt", f"-{pid}.pdf", f"{pid}.pdf.xlsx", "%2Fetc%2Fpasswd", "9" * 40 + ".pdf"):
        r = await api.get(f"/api/v1/reports/{name}", world.staff["admin"])
        assert r.status_code == 404, (name, r.status_code, r.text)
    # a stored file whose bytes changed is refused, never handed out
    async with api.pool.acquire() as conn:
        await conn.execute("UPDATE reports SET xlsx = xlsx || '\\x00'::bytea WHERE id = $1", own["id"])
    r = await api.request("GET", f"/api/v1/reports/{own['id']}.xlsx", world.staff["admin"], crash=False)
    assert r.status_code == 500 and "checksum" in r.json()["detail"]


async def test_bad_month_area_and_agency_get_422(world: World) -> None:
    admin = world.staff["admin"]
    for month in ("2026-13", "2026-00", "26-03", "2026-3", "2026-03-01", "march", "1999-12", "2100-01", ""):
        r = await world.api.request("POST", "/api/v1/reports", admin, json={"month": month, "area": "37"})
        assert r.status_code == 422 and "month" in r.text, (month, r.text)
        r = await world.api.get("/api/v1/reports", admin, params={"month": month})
        assert r.status_code == 422, month
    r = await world.api.request("POST", "/api/v1/reports", admin, json={"month": MONTH, "area": "99999"})
    assert r.status_code == 422 and "unknown area" in r.text
    r = await world.api.request("POST", "/api/v1/reports", admin, json={"month": MONTH, "area": "37", "agency": "nope"})
    assert r.status_code == 422 and "unknown agency" in r.text
    r = await world.api.request("POST", "/api/v1/reports", admin, json={"month": MONTH, "lang": "fr"})
    assert r.status_code == 422


def test_a_missing_font_stops_serve_with_the_setting_named(db_url: str, tmp_path: Path) -> None:
    settings = load_settings(database_url=db_url, jwt_secret=SECRET, report_font=str(tmp_path / "none.ttf"))
    with pytest.raises(SettingsError, match="IOC_REPORT_FONT: .*fonts-dejavu-core"):
        create_app(settings)
    (tmp_path / "bad.ttf").write_bytes(b"not a font")
    with pytest.raises(SettingsError, match="not a TrueType font"):
        create_app(load_settings(database_url=db_url, jwt_secret=SECRET, report_font=str(tmp_path / "bad.ttf")))


async def test_without_any_font_everything_but_the_reports_works(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare machine (the demo with nothing but Python) has no font with Vietnamese letters
    and none is named: `ioc serve` starts anyway, and making a report says why it cannot."""
    from ioc.serve.reports import fonts

    monkeypatch.setattr(fonts, "SYSTEM_FONTS", (("/nonexistent/DejaVuSans.ttf", "/nonexistent/DejaVuSans-Bold.ttf"),))
    app = create_app(load_settings(database_url=db_url, jwt_secret=SECRET, report_schedule=False))
    async with app.router.lifespan_context(app):
        api = Api(app, app.state.pool)
        _, _, token = await api.user("admin")
        assert (await api.get("/api/v1/latest", token)).status_code == 200
        r = await api.request("POST", "/api/v1/reports", token, json={"month": MONTH})
        assert r.status_code == 503 and "fonts-dejavu-core" in r.text, r.text


def test_report_make_from_the_command_line(db_url: str, world: World, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update(IOC_DATABASE_URL=db_url, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "ioc.cli", "report", "make", "--month", MONTH, "--area", "37",
                          "--agency", world.late, "--lang", "en", "--out", str(tmp_path)],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "report " in run.stdout and world.late in run.stdout
    book = openpyxl.load_workbook(tmp_path / f"ioc-{MONTH}-37-{world.late}-en.xlsx", read_only=True)
    assert book.sheetnames == ["Summary", "KPIs", "Late reports"]
    bad = subprocess.run([sys.executable, "-m", "ioc.cli", "report", "make", "--month", "2026-13"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "month must be YYYY-MM" in bad.stderr


async def test_the_report_row_keeps_the_files_checksums(world: World, province: dict[str, Any]) -> None:
    import hashlib

    row = province["row"]
    assert row["pdf_sha256"] == hashlib.sha256(province["pdf"]).hexdigest()
    assert row["xlsx_sha256"] == hashlib.sha256(province["xlsx"]).hexdigest()
    assert row["pdf_url"] == f"/api/v1/reports/{row['id']}.pdf"
    r = await world.api.get(row["xlsx_url"], world.staff["leader"])
    assert r.headers["x-checksum-sha256"] == row["xlsx_sha256"]
    assert isinstance(httpx.Headers(r.headers).get("content-disposition"), str)
    assert r.headers["content-disposition"].endswith(f'ioc-{MONTH}-37-vi.xlsx"')
