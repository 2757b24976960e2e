"""A province's monthly report: 500 communes, 30 KPIs, one month (issue 14: <= 10 s).

Loads a province of `--communes` communes, `--kpis` KPIs of the shipped catalogue reported
daily by every commune and by the province over the month (and by the province over the
month before and the same month a year earlier, for the trends), one agency per sector (one
of them silent, one late), and `--cameras` cameras with a status history; then times
what `ioc serve` and `ioc report make` do for the report: gather the figures (the series,
the rankings, camera uptime, late agencies) and draw the PDF and the XLSX
(ioc.serve.reports.make.Maker.build), `--runs` times. Plain PostgreSQL.

    python bench/report.py [--communes 500] [--kpis 30] [--cameras 10] [--runs 5]

It creates `ioc_bench_<random>` on the server at IOC_BENCH_PG_ADMIN_URL (default
postgresql://postgres@127.0.0.1:5432/postgres) and drops it at the end. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import asyncpg  # noqa: E402

from bench.scratch_db import scratch_database  # noqa: E402
from ioc.core.accounts import create_agency  # noqa: E402
from ioc.core.catalogue.model import Area, KpiDef  # noqa: E402
from ioc.core.readings import Reading  # noqa: E402
from ioc.core.storage import catalogue, reading_writes, rollups  # noqa: E402
from ioc.core.storage.modes import StorageMode  # noqa: E402
from ioc.core.storage.reports import ReportKey  # noqa: E402
from ioc.serve.reports.fonts import report_fonts  # noqa: E402
from ioc.serve.reports.gather import gather  # noqa: E402
from ioc.serve.reports.make import Maker  # noqa: E402
from ioc.serve.reports.pdf import render_pdf  # noqa: E402
from ioc.serve.reports.rankings import rankings  # noqa: E402
from ioc.serve.reports.xlsx import render_xlsx  # noqa: E402

TZ_NAME = "Asia/Ho_Chi_Minh"
TZ = ZoneInfo(TZ_NAME)
PROVINCE = "BENCHP"
MONTH = date(2026, 3, 1)


def _value(k: KpiDef, i: int, d: int) -> tuple[float, float | None, float | None]:
    """A reading in the KPI's range: (value, numerator, denominator)."""
    if k.kind == "ratio":
        den = 20 + (i * 7 + d) % 50
        num = den - (i + d) % 4
        return 100.0 * num / den, float(num), float(den)
    lo, hi = k.min, min(k.max, k.min + 1000)
    v = lo + (hi - lo) * (((i * 37 + d * 11) % 100) / 100)
    return (float(round(v)) if k.integer else v), None, None


async def load(conn: asyncpg.Connection, communes: int, nkpis: int, cameras: int) -> int:
    units = [Area(code=PROVINCE, parent_code=None, level="province", name_vi="Tỉnh thử", name_en="Bench Province")]
    units += [Area(code=f"BC{i:04d}", parent_code=PROVINCE, level="commune", name_vi=f"Xã Thử {i}",
                   name_en=f"Commune {i}") for i in range(communes)]
    async with conn.transaction():
        await catalogue.store_areas(conn, units, [])
    kpis = (await catalogue.list_kpis(conn))[:nkpis]
    sectors = sorted({k.sector for k in kpis})
    for s in sectors:
        await create_agency(conn, f"bench-{s}", name_vi=f"Sở {s}", sectors=[s], actor="bench")
    silent, late = f"bench-{sectors[0]}", f"bench-{sectors[1]}"
    total = 0
    months = [(MONTH, True), (date(2026, 2, 1), False), (date(2025, 3, 1), False)]
    for first, with_communes in months:
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        for d in range((nxt - first).days):
            day = first + timedelta(days=d)
            ts = datetime(day.year, day.month, day.day, tzinfo=TZ)
            rows = []
            for k in kpis:
                agency = f"bench-{k.sector}"
                if agency == silent and first == MONTH:
                    continue
                arrived = ts + (timedelta(days=3) if agency == late and day.day == 15 else timedelta(hours=1))
                areas = [PROVINCE] + ([f"BC{i:04d}" for i in range(communes)] if with_communes else [])
                for i, area in enumerate(areas):
                    v, num, den = _value(k, i, d)
                    rows.append(Reading(ts, k.id, area, v, agency, 0, None, arrived, num, den))
            async with conn.transaction():
                await reading_writes.copy_readings(conn, rows)
                await reading_writes.mark_dirty_hours(conn, sorted({(r.kpi, r.area, ts) for r in rows}))
            total += len(rows)
    start = datetime(MONTH.year, MONTH.month, 1, tzinfo=TZ)
    for c in range(cameras):
        cam = f"bench-cam-{c:02d}"
        await conn.execute("INSERT INTO cameras (id, name, stream_url, mode, area) VALUES ($1, $2, 'rtsp://x/1', "
                           "'sub', $3)", cam, f"Camera thử {c}", PROVINCE)
        await conn.executemany("INSERT INTO camera_status_log (camera, at, state, healthy) VALUES ($1, $2, $3, $4)",
                               [(cam, start + timedelta(hours=h), "online" if (h // 24 + c) % 9 else "offline",
                                 True) for h in range(0, 31 * 24, 6)])
    return total


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--communes", type=int, default=500)
    ap.add_argument("--kpis", type=int, default=30)
    ap.add_argument("--cameras", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=3, help="rankings' queries at once (ioc serve: 3 with the default pool)")
    args = ap.parse_args()
    async with scratch_database(TZ_NAME, pool_size=2 + max(1, args.parallel)) as (pool, settings):
        fonts = report_fonts(settings)
        async with pool.acquire() as conn:
            t0 = time.perf_counter()
            n = await load(conn, args.communes, args.kpis, args.cameras)
            t1 = time.perf_counter()
            await rollups.refresh(conn, StorageMode.PLAIN, TZ_NAME)
            await conn.execute("ANALYZE")
            t2 = time.perf_counter()
        print(f"loaded {n} readings in {t1 - t0:.1f} s; roll-ups computed in {t2 - t1:.1f} s")
        maker = Maker(pool, TZ_NAME, StorageMode.PLAIN, fonts, parallel=args.parallel)
        key = ReportKey(MONTH, PROVINCE, None, "vi")
        totals, phases, cpu = [], [], []
        for run in range(args.runs + 1):  # the first warms the cache and the plans
            c0 = time.process_time()
            t0 = time.perf_counter()
            async with pool.acquire() as conn:
                data = await gather(conn, month=MONTH, area=PROVINCE, agency=None, lang="vi", timezone=TZ_NAME,
                                    mode=StorageMode.PLAIN, pool=pool, parallel=args.parallel)
            t1 = time.perf_counter()
            pdf = render_pdf(data, fonts)
            t2 = time.perf_counter()
            xlsx = render_xlsx(data)
            t3 = time.perf_counter()
            if run:
                totals.append(t3 - t0)
                phases.append((t1 - t0, t2 - t1, t3 - t2))
                cpu.append(time.process_time() - c0)
        ranked = sum(len(r.rows) for r in data.rankings)
        print(f"report: {len(data.figures)} KPIs, {len(data.rankings)} rankings ({ranked} rows), "
              f"{len(data.cameras or [])} cameras, {len(data.lateness)} late or missing; "
              f"PDF {len(pdf) / 1024:.0f} KiB, XLSX {len(xlsx) / 1024:.0f} KiB")
        med = [statistics.median(p[i] for p in phases) for i in range(3)]
        r0 = time.perf_counter()
        async with pool.acquire() as conn:
            await rankings(conn, [k for k in await catalogue.list_kpis(conn) if k.id in {r.kpi for r in data.rankings}],
                           area=PROVINCE, start=data.start, end=data.end, timezone=TZ_NAME, pool=pool,
                           parallel=args.parallel)
        ranking_s = time.perf_counter() - r0
        print(f"gather {med[0]:.2f} s (the rankings alone {ranking_s:.2f} s), PDF {med[1]:.2f} s, XLSX {med[2]:.2f} s "
              f"(medians of {args.runs}); this process's CPU {statistics.median(cpu):.2f} s a report; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        total = statistics.median(totals)
        print(f"province report, {args.communes} communes x {args.kpis} KPIs, one month: median {total:.2f} s, "
              f"max {max(totals):.2f} s over {args.runs} runs (target <= 10 s)")
        made_t0 = time.perf_counter()
        row, _ = await maker.make(key, made_by="bench", replace=True)
        made = time.perf_counter() - made_t0
        print(f"made and stored through Maker.make: {made:.2f} s (report {row['id']})")
    print(json.dumps({"bench": "report", "communes": args.communes, "kpis": args.kpis, "cameras": args.cameras,
                      "runs": args.runs, "parallel": args.parallel, "median_s": round(total, 3), "cpu_s": round(statistics.median(cpu), 3),
                      "rankings_s": round(ranking_s, 3), "load": round(os.getloadavg()[0], 1), "gather_s": round(med[0], 3),
                      "pdf_s": round(med[1], 3), "xlsx_s": round(med[2], 3), "stored_s": round(made, 3),
                      "pdf_bytes": len(pdf), "xlsx_bytes": len(xlsx), "rank_rows": ranked, "target_s": 10}))


if __name__ == "__main__":
    asyncio.run(main())
