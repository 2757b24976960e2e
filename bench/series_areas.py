"""A province's series from its communes: five years, bucketed by month, 500 communes.

Issue 14's figure: `GET /api/v1/series?area=<province>&level=commune&bucket=1M` over five
years of a ratio KPI reported daily (numerator and denominator) by 500 communes must answer
in <= 150 ms. This measures what the endpoint does for it: load the area history, expand
the province into its communes (ioc.core.catalogue.lineage), and the weighted query on the
daily roll-up (ioc.core.storage.queries.series). The database gets the mode `ioc migrate`
would give it on that server: TimescaleDB where the server offers the extension (the
roll-ups are then continuous aggregates, materialized whole after the load as five years of
refresh policy would have left them), plain PostgreSQL otherwise; IOC_STORAGE_MODE=plain
forces plain tables on a TimescaleDB server.

    python bench/series_areas.py [--communes 500] [--years 5] [--runs 30]

It creates `ioc_bench_<random>` on the server at IOC_BENCH_PG_ADMIN_URL (default
postgresql://postgres@127.0.0.1:5432/postgres) and drops it at the end. The last line is
one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ioc.core.catalogue.lineage import local_start, series_sources, units_at_level  # noqa: E402
from ioc.core.catalogue.model import Area  # noqa: E402
from ioc.core.readings import Reading  # noqa: E402
from ioc.core.settings import load_settings  # noqa: E402
from ioc.core.storage import catalogue, queries, reading_writes, rollups  # noqa: E402
from ioc.core.storage.modes import StorageMode  # noqa: E402
from ioc.core.storage.pool import create_pool  # noqa: E402
from ioc.core.storage.setup import prepare_database  # noqa: E402

TZ_NAME = "Asia/Ho_Chi_Minh"
TZ = ZoneInfo(TZ_NAME)
KPI = "tthc.on_time_rate"
PROVINCE = "BENCHP"


async def load(conn: asyncpg.Connection, communes: int, years: int, mode: StorageMode) -> int:
    units = [Area(code=PROVINCE, parent_code=None, level="province", name_vi="Tỉnh thử", name_en="Bench Province")]
    units += [Area(code=f"BC{i:04d}", parent_code=PROVINCE, level="commune", name_vi=f"Xã {i}", name_en=f"Commune {i}")
              for i in range(communes)]
    async with conn.transaction():
        await catalogue.store_areas(conn, units, [])
    first = date(2026, 1, 1) - timedelta(days=365 * years)
    now = datetime.now(timezone.utc)
    total = 0
    for d in range(365 * years):
        day = first + timedelta(days=d)
        ts = datetime(day.year, day.month, day.day, 17, tzinfo=TZ)
        rows = []
        for i in range(communes):
            den = 20 + (i * 7 + d) % 50
            num = den - (i + d) % 3
            rows.append(Reading(ts, KPI, f"BC{i:04d}", 100.0 * num / den, "bench", 0, None, now, float(num), float(den)))
        async with conn.transaction():
            await reading_writes.copy_readings(conn, rows)
            if mode is StorageMode.PLAIN:  # TimescaleDB: the aggregates are materialized whole after the load
                await reading_writes.mark_dirty_hours(conn, [(KPI, r.area, ts.replace(minute=0)) for r in rows])
        total += len(rows)
    return total


async def compute_rollups(url: str, mode: StorageMode) -> None:
    """Plain: the refresh the ingest's timer runs. TimescaleDB: each continuous aggregate
    refreshed whole, finest first (the daily reads the hourly): what the refresh policies
    leave behind over five years. `rollups.refresh` would refresh the 1,825 marked days one
    window at a time, the late-arrival path, which is not what a five-year history went through.
    A connection of its own: the hourly refresh of five years takes minutes, past the pool's
    command timeout."""
    conn = await asyncpg.connect(url)
    try:
        if mode is StorageMode.PLAIN:
            await rollups.refresh(conn, mode, TZ_NAME)
            return
        for view in ("readings_hourly", "readings_daily", "readings_monthly"):
            await conn.execute("CALL refresh_continuous_aggregate($1::regclass, NULL, NULL)", view)
    finally:
        await conn.close()


async def one_request(pool: asyncpg.Pool, years: int) -> tuple[float, int, int]:
    """What the endpoint does, timed: (ms, points, sources)."""
    t0 = time.perf_counter()
    async with pool.acquire() as conn:
        areas = await catalogue.list_areas(conn)
        successions = await catalogue.list_successions(conn)
        found = units_at_level(series_sources(PROVINCE, areas, successions), "commune", areas, successions)
        sources = [queries.SeriesSource(x.code, x.share, local_start(x.since, TZ) or queries.EARLIEST,
                                        local_start(x.until, TZ) or queries.LATEST) for x in found]
        end = datetime(2026, 1, 1, tzinfo=TZ)
        points = await queries.series(
            conn, kpi=KPI, kind="ratio", area=PROVINCE, start=datetime(2026 - years, 1, 1, tzinfo=TZ), end=end,
            bucket=queries.parse_bucket("1M"), timezone=TZ_NAME, agency=None, sources=sources)
    return (time.perf_counter() - t0) * 1000, len(points), len(sources)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--communes", type=int, default=500)
    ap.add_argument("--years", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--keep", action="store_true", help="keep the database (its name is printed) to look at plans")
    args = ap.parse_args()
    admin_url = os.environ.get("IOC_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"ioc_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rpartition("/")[0] + "/" + name
    try:
        settings = load_settings(database_url=url, timezone=TZ_NAME)
        pool = await create_pool(url, app="ioc-bench", min_size=1, max_size=2)
        info = await prepare_database(pool, settings)
        mode = info.mode
        print(f"storage mode {mode.value}" + (f" (TimescaleDB {info.timescale_version})" if info.timescale_version else ""))
        async with pool.acquire() as conn:
            t0 = time.perf_counter()
            n = await load(conn, args.communes, args.years, mode)
            t1 = time.perf_counter()
        await compute_rollups(url, mode)
        t2 = time.perf_counter()
        print(f"loaded {n} readings in {t1 - t0:.1f} s; roll-ups computed in {t2 - t1:.1f} s")
        figures: dict[str, object] = {"mode": mode.value, "communes": args.communes, "years": args.years,
                                      "runs": args.runs, "load_s": round(t1 - t0, 1), "rollups_s": round(t2 - t1, 1)}
        for label in ("fresh tables (no statistics yet)", "after ANALYZE (as autovacuum leaves them)"):
            if label.startswith("after"):
                async with pool.acquire() as conn:
                    await conn.execute("ANALYZE")
            await one_request(pool, args.years)  # warm the cache and the statement plans
            times = []
            for _ in range(args.runs):
                ms, points, nsrc = await one_request(pool, args.years)
                times.append(ms)
            times.sort()
            key = "fresh" if label.startswith("fresh") else "analyzed"
            figures[f"{key}_median_ms"] = round(statistics.median(times), 1)
            figures[f"{key}_p95_ms"] = round(times[int(len(times) * 0.95) - 1], 1)
            figures[f"{key}_max_ms"] = round(times[-1], 1)
            print(f"{label}: province series, {args.years} years by month, from {nsrc} communes, {points} points: "
                  f"median {statistics.median(times):.1f} ms, p95 {times[int(len(times) * 0.95) - 1]:.1f} ms, "
                  f"max {times[-1]:.1f} ms over {args.runs} runs")
        await pool.close()
        print(json.dumps(figures))
    finally:
        if args.keep:
            print(f"kept database {name}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
