"""Our TimescaleDB SQL, run for real: migrations, policies, continuous aggregates, series.

TimescaleDB is not packaged for our machines, so these tests run against PGlite (PostgreSQL
17 in WASM) with the TimescaleDB extension, served over the wire protocol by
tests/rigs/pglite.py. That server has ONE session for all connections and cannot take
COPY, so everything here goes through one asyncpg connection and plain INSERTs. If Node.js,
npm or the npm packages are missing and cannot be installed, the tests FAIL (not skip).

The tests in this module share one database and run in file order.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from ioc.core.catalogue.store import seed_shipped
from ioc.core.storage import rollups
from ioc.core.storage.migrate import MigrateResult, migrate
from ioc.core.storage.modes import StorageMode
from ioc.core.storage.queries import parse_bucket, series
from tests.rigs.pglite import PgliteTimescaleRig, PgliteUnavailable
from tests.test_storage import check_login_failures

TZ_NAME = "Asia/Ho_Chi_Minh"
TZ = ZoneInfo(TZ_NAME)
UTC = timezone.utc
MIGRATE_ARGS: dict[str, Any] = dict(
    timezone=TZ_NAME, wanted_mode="timescale", compress_after_days=30, retention_days=365
)

COUNTER = "tsdb.counter"  # summed per bucket
GAUGE = "tsdb.gauge"  # averaged per bucket
AREAS = ("35", "347")
# readings every 20 minutes from 22:00 local on 30 April to 03:00 local on 2 May 2024: they
# cross two local midnights (17:00 UTC) and a UTC midnight, and sit exactly on both
FIRST = datetime(2024, 4, 30, 22, 0, tzinfo=TZ)
LAST = datetime(2024, 5, 2, 3, 0, tzinfo=TZ)
WINDOW = (datetime(2024, 4, 29, tzinfo=TZ), datetime(2024, 5, 4, tzinfo=TZ))


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgliteTimescaleRig]:
    log = tmp_path_factory.mktemp("pglite") / "server.log"
    problem = None
    try:
        server = PgliteTimescaleRig(log_path=log).start()
    except PgliteUnavailable as exc:
        problem = str(exc)
    if problem is not None:
        # never a skip: a machine that cannot run these tests must say so
        pytest.fail(
            "PGlite with TimescaleDB could not be started; these tests need Node.js >= 20, npm and the npm "
            f"registry (the packages install into .pglite/ on first use):\n{problem}",
            pytrace=False,
        )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def conn(rig: PgliteTimescaleRig) -> AsyncIterator[asyncpg.Connection]:
    # one connection: PGlite has a single session, and a second client would wait for this one
    c = await asyncpg.connect(rig.dsn, statement_cache_size=0, command_timeout=60, timeout=30)
    # PGlite ignores startup parameters, so set the session time zone as our pool does
    await c.execute("SET timezone = 'UTC'")
    try:
        yield c
    finally:
        await c.close(timeout=5)


@pytest.fixture(scope="module")
async def migrated(conn: asyncpg.Connection) -> MigrateResult:
    return await migrate(conn, **MIGRATE_ARGS)


# -- helpers ------------------------------------------------------------------------------


def _readings() -> list[tuple[datetime, str, str, float]]:
    """(ts, kpi, area, value): the second area 5 minutes later, so no two share a ts."""
    rnd = random.Random(20240501)
    out = []
    ts = FIRST
    while ts <= LAST:
        for i, area in enumerate(AREAS):
            t = (ts + timedelta(minutes=5 * i)).astimezone(UTC)
            out.append((t, COUNTER, area, float(rnd.randint(0, 40))))
            out.append((t, GAUGE, area, rnd.randint(0, 400) / 4))  # quarters: exact sums
        ts += timedelta(minutes=20)
    return out


def _local_floor(ts: datetime, unit: str, count: int = 1) -> datetime:
    """A bucket's start, as the API defines it: hours and days counted from local midnight."""
    local = ts.astimezone(TZ)
    if unit == "M":
        return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "h":
        return midnight + timedelta(hours=(local.hour // count) * count)
    if unit == "m":
        minutes = local.hour * 60 + local.minute
        return midnight + timedelta(minutes=(minutes // count) * count)
    assert unit == "d" and count == 1
    return midnight


def _expected(
    rows: list[tuple[datetime, str, str, float]], kpi: str, area: str | None, unit: str, count: int = 1
) -> list[dict[str, Any]]:
    groups: dict[datetime, list[tuple[datetime, float]]] = defaultdict(list)
    for ts, k, a, v in rows:
        if k == kpi and (area is None or a == area):
            groups[_local_floor(ts, unit, count)].append((ts, v))
    out = []
    for b in sorted(groups):
        vals = [v for _, v in groups[b]]
        total = sum(vals)
        out.append({
            "bucket": b,
            "value": total if kpi == COUNTER else total / len(vals),
            "n": len(vals),
            "min": min(vals),
            "max": max(vals),
            "last": max(groups[b])[1],
            "last_ts": max(groups[b])[0],
        })
    return out


async def _series(conn: asyncpg.Connection, kpi: str, area: str | None, bucket: str) -> list[dict[str, Any]]:
    return await series(
        conn, kpi=kpi, kind="counter" if kpi == COUNTER else "gauge", area=area,
        start=WINDOW[0], end=WINDOW[1], bucket=parse_bucket(bucket), timezone=TZ_NAME, agency=None,
    )


def _assert_series(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [p["bucket"] for p in got] == [p["bucket"] for p in want]
    for g, w in zip(got, want):
        assert g["n"] == w["n"], g["bucket"]
        assert g["value"] == pytest.approx(w["value"], rel=1e-12), g["bucket"]
        assert (g["min"], g["max"], g["last"], g["last_ts"]) == (w["min"], w["max"], w["last"], w["last_ts"]), g["bucket"]


async def _insert(conn: asyncpg.Connection, rows: list[tuple[datetime, str, str, float]]) -> None:
    # plain INSERTs: PGlite cannot take COPY over the wire
    await conn.executemany(
        """INSERT INTO readings (ts, kpi, area, value, agency, revision, msg_id, received_at)
           VALUES ($1, $2, $3, $4, 'tsdb-test', 0, NULL, now())""",
        rows,
    )


async def _caggs(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        """SELECT view_name, hypertable_schema, hypertable_name, materialized_only,
                  materialization_hypertable_schema, materialization_hypertable_name, view_definition
             FROM timescaledb_information.continuous_aggregates WHERE view_schema = 'public'"""
    )
    return {r["view_name"]: r for r in rows}


async def _materialized_rows(conn: asyncpg.Connection, view: str) -> int:
    c = (await _caggs(conn))[view]
    table = f'"{c["materialization_hypertable_schema"]}"."{c["materialization_hypertable_name"]}"'
    return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def _jobs(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT job_id, proc_name, hypertable_name, config::text AS config
             FROM timescaledb_information.jobs
            WHERE proc_name IN ('policy_compression', 'policy_retention', 'policy_refresh_continuous_aggregate')
            ORDER BY proc_name, hypertable_name"""
    )


def _job_summary(jobs: list[asyncpg.Record]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for j in jobs:
        cfg = json.loads(j["config"])
        cfg.pop("hypertable_id", None)
        cfg.pop("mat_hypertable_id", None)
        out.append((j["proc_name"], j["hypertable_name"], cfg))
    return out


# -- the schema ---------------------------------------------------------------------------


async def test_migrate_chooses_timescale(rig: PgliteTimescaleRig, conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    assert migrated.mode is StorageMode.TIMESCALE
    assert migrated.timescale_version == rig.versions["timescaledb"]
    assert migrated.applied == ["0001_core", "0002_rollups", "0003_cameras", "0004_wall", "0005_camera_admin",
                                "0006_login_failures", "0007_recordings", "0008_alert_unknown_camera",
                                "0009_areas_over_time", "0010_rollups_fractions", "0011_rollups_monthly",
                                "0012_wall_history", "0013_revision_parts",
                                "0014_area_geometry", "0015_reports", "0016_recording_streams"]
    assert await conn.fetchval("SELECT value FROM ioc_meta WHERE key = 'storage_mode'") == "timescale"
    assert await conn.fetchval("SELECT value FROM ioc_meta WHERE key = 'timezone'") == TZ_NAME


async def test_login_failures_store_on_timescale(conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    await check_login_failures(conn)


async def test_readings_is_a_compressed_hypertable(conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    ht = await conn.fetchrow(
        """SELECT num_dimensions, primary_dimension, compression_enabled
             FROM timescaledb_information.hypertables
            WHERE hypertable_schema = 'public' AND hypertable_name = 'readings'"""
    )
    assert ht is not None, "readings is not a hypertable"
    assert (ht["num_dimensions"], ht["primary_dimension"], ht["compression_enabled"]) == (1, "ts", True)
    interval = await conn.fetchval(
        """SELECT time_interval FROM timescaledb_information.dimensions
            WHERE hypertable_name = 'readings' AND column_name = 'ts'"""
    )
    assert interval == timedelta(days=7)
    settings = await conn.fetch(
        """SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc
             FROM timescaledb_information.compression_settings
            WHERE hypertable_schema = 'public' AND hypertable_name = 'readings'"""
    )
    segmentby = [r["attname"] for r in sorted(settings, key=lambda r: r["segmentby_column_index"] or 99)
                 if r["segmentby_column_index"] is not None]
    orderby = [(r["attname"], r["orderby_asc"]) for r in settings if r["orderby_column_index"] is not None]
    assert segmentby == ["kpi", "area"]
    assert orderby == [("ts", False)]


async def test_rollups_are_hierarchical_continuous_aggregates(conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    caggs = await _caggs(conn)
    assert set(caggs) >= {"readings_hourly", "readings_daily"}
    hourly, daily = caggs["readings_hourly"], caggs["readings_daily"]
    # hourly reads the readings hypertable, daily reads hourly's materialization
    assert (hourly["hypertable_schema"], hourly["hypertable_name"]) == ("public", "readings")
    assert (daily["hypertable_schema"], daily["hypertable_name"]) == (
        hourly["materialization_hypertable_schema"], hourly["materialization_hypertable_name"],
    )
    assert "readings_hourly" in daily["view_definition"]
    # real-time: the not yet materialized tail is read from the source
    assert hourly["materialized_only"] is False and daily["materialized_only"] is False
    # days are local days of the province
    assert f"'{TZ_NAME}'" in daily["view_definition"]
    # months are months of the daily aggregate, local too
    monthly = caggs["readings_monthly"]
    assert (monthly["hypertable_schema"], monthly["hypertable_name"]) == (
        daily["materialization_hypertable_schema"], daily["materialization_hypertable_name"],
    )
    assert monthly["materialized_only"] is False and f"'{TZ_NAME}'" in monthly["view_definition"]


async def test_policies_exist(conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    assert _job_summary(await _jobs(conn)) == [
        ("policy_compression", "readings", {"compress_after": "30 days"}),
        ("policy_refresh_continuous_aggregate", "readings_daily", {"start_offset": "35 days", "end_offset": "1 day"}),
        ("policy_refresh_continuous_aggregate", "readings_hourly", {"start_offset": "7 days", "end_offset": "01:00:00"}),
        ("policy_refresh_continuous_aggregate", "readings_monthly", {"start_offset": "3 mons", "end_offset": "1 day"}),
        ("policy_retention", "readings", {"drop_after": "365 days"}),
    ]


async def test_migrate_again_is_a_no_op_and_follows_the_settings(conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    before = await conn.fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    again = await migrate(conn, **MIGRATE_ARGS)
    assert (again.mode, again.applied) == (StorageMode.TIMESCALE, [])
    assert await conn.fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version") == before
    jobs = _job_summary(await _jobs(conn))
    assert [j[0] for j in jobs].count("policy_compression") == 1
    assert [j[0] for j in jobs].count("policy_retention") == 1
    # "auto" keeps the stored mode; changed settings replace the policies
    changed = await migrate(conn, timezone=TZ_NAME, wanted_mode="auto", compress_after_days=14, retention_days=0)
    assert (changed.mode, changed.applied) == (StorageMode.TIMESCALE, [])
    jobs = _job_summary(await _jobs(conn))
    assert ("policy_compression", "readings", {"compress_after": "14 days"}) in jobs
    assert not [j for j in jobs if j[0] == "policy_retention"]
    await migrate(conn, **MIGRATE_ARGS)
    assert _job_summary(await _jobs(conn)) == [
        ("policy_compression", "readings", {"compress_after": "30 days"}),
        ("policy_refresh_continuous_aggregate", "readings_daily", {"start_offset": "35 days", "end_offset": "1 day"}),
        ("policy_refresh_continuous_aggregate", "readings_hourly", {"start_offset": "7 days", "end_offset": "01:00:00"}),
        ("policy_refresh_continuous_aggregate", "readings_monthly", {"start_offset": "3 mons", "end_offset": "1 day"}),
        ("policy_retention", "readings", {"drop_after": "365 days"}),
    ]


async def test_seed_shipped_runs(conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    counts = await seed_shipped(conn)
    assert counts["sectors"] > 0 and counts["kpis"] > 0 and counts["areas"] > 0
    assert await conn.fetchval("SELECT count(*) FROM sectors") == counts["sectors"]
    assert await conn.fetchval("SELECT count(*) FROM kpis WHERE builtin") == counts["kpis"]
    assert await conn.fetchval("SELECT count(*) FROM areas") == counts["areas"]
    assert await seed_shipped(conn) == counts  # a second run changes nothing
    assert await conn.fetchval("SELECT count(*) FROM kpis") == counts["kpis"]


# -- data through the aggregates ----------------------------------------------------------

ROWS = _readings()
# (bucket text, unit, count): hours and days from the aggregates, minutes from readings
BUCKETS = [("1h", "h", 1), ("6h", "h", 6), ("1d", "d", 1), ("1M", "M", 1), ("30m", "m", 30)]


async def _check_all_series(conn: asyncpg.Connection, rows: list[tuple[datetime, str, str, float]]) -> None:
    for kpi in (COUNTER, GAUGE):
        for area in (*AREAS, None):
            for text, unit, count in BUCKETS:
                got = await _series(conn, kpi, area, text)
                _assert_series(got, _expected(rows, kpi, area, unit, count))


async def test_series_from_real_time_aggregates(conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    await _insert(conn, ROWS)
    assert await conn.fetchval("SELECT count(*) FROM readings WHERE agency = 'tsdb-test'") == len(ROWS)
    assert await conn.fetchval(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
    ) >= 1
    # nothing materialized yet: the values come from the real-time part of both aggregates
    assert await _materialized_rows(conn, "readings_hourly") == 0
    assert await _materialized_rows(conn, "readings_daily") == 0
    await _check_all_series(conn, ROWS)


async def test_series_after_refresh_continuous_aggregate(conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    lo, hi = WINDOW
    await conn.execute("CALL refresh_continuous_aggregate('readings_hourly', $1::timestamptz, $2::timestamptz)", lo, hi)
    await conn.execute("CALL refresh_continuous_aggregate('readings_daily', $1::timestamptz, $2::timestamptz)", lo, hi)
    hours = {(k, a, ts.replace(minute=0)) for ts, k, a, _ in ROWS}
    days = {(k, a, _local_floor(ts, "d")) for ts, k, a, _ in ROWS}
    assert await _materialized_rows(conn, "readings_hourly") == len(hours)
    assert await _materialized_rows(conn, "readings_daily") == len(days)
    # the daily buckets start at local midnight: 17:00 UTC
    buckets = [r["bucket"] for r in await conn.fetch(
        "SELECT DISTINCT bucket FROM readings_daily WHERE kpi = $1 ORDER BY 1", COUNTER)]
    assert buckets == [datetime(2024, 4, 29, 17, tzinfo=UTC), datetime(2024, 4, 30, 17, tzinfo=UTC),
                       datetime(2024, 5, 1, 17, tzinfo=UTC)]
    await _check_all_series(conn, ROWS)
    # a full local day, checked by hand once: 1 May 00:00 to 24:00 in Hanoi time
    day = [r for r in ROWS if r[1] == COUNTER and r[2] == "35"
           and datetime(2024, 5, 1, tzinfo=TZ) <= r[0] < datetime(2024, 5, 2, tzinfo=TZ)]
    assert len(day) == 72
    got = await _series(conn, COUNTER, "35", "1d")
    assert got[1]["bucket"] == datetime(2024, 4, 30, 17, tzinfo=UTC)
    assert got[1]["value"] == sum(v for *_, v in day) and got[1]["n"] == 72


async def test_rollups_refresh_processes_late_arrivals(conn: asyncpg.Connection, migrated: MigrateResult) -> None:
    late_ts = datetime(2024, 5, 1, 10, 10, tzinfo=TZ).astimezone(UTC)
    late = (late_ts, COUNTER, "35", 1000.0)
    fixed_ts = next(r for r in ROWS if r[1] == GAUGE and r[2] == "347" and r[0].astimezone(TZ).hour == 23)[0]
    await _insert(conn, [late])
    await conn.execute(
        "UPDATE readings SET value = 99.75, revision = 1 WHERE kpi = $1 AND area = '347' AND ts = $2", GAUGE, fixed_ts
    )
    rows = [r for r in ROWS if not (r[1] == GAUGE and r[2] == "347" and r[0] == fixed_ts)]
    rows += [late, (fixed_ts, GAUGE, "347", 99.75)]
    # below the watermark the aggregates show what was materialized: the old numbers
    _assert_series(await _series(conn, COUNTER, "35", "1h"), _expected(ROWS, COUNTER, "35", "h"))
    _assert_series(await _series(conn, GAUGE, "347", "1d"), _expected(ROWS, GAUGE, "347", "d"))
    # the ingest lists such hours in rollup_dirty (UTC hours)
    dirty = sorted({(COUNTER, "35", late_ts.replace(minute=0)), (GAUGE, "347", fixed_ts.replace(minute=0))})
    await conn.executemany("INSERT INTO rollup_dirty (kpi, area, hour) VALUES ($1, $2, $3)", dirty)
    n = await rollups.refresh(conn, StorageMode.TIMESCALE, TZ_NAME)
    assert n == len({h for *_, h in dirty})
    assert await conn.fetchval("SELECT count(*) FROM rollup_dirty") == 0
    await _check_all_series(conn, rows)
    # the correction went through the trigger on the hypertable into the audit log
    assert await conn.fetchval(
        "SELECT details->>'old_revision' FROM audit_log WHERE action = 'reading.corrected' AND subject LIKE $1",
        f"{GAUGE}/347@%",
    ) == "0"
    # nothing dirty: nothing to do
    assert await rollups.refresh(conn, StorageMode.TIMESCALE, TZ_NAME) == 0


async def test_ratio_rollups_are_weighted_in_the_continuous_aggregates(
    conn: asyncpg.Connection, migrated: MigrateResult
) -> None:
    """The aggregates carry sum(numerator), sum(denominator) and the count of bare
    percentages: a ratio over areas is weighted, and a bucket with a bare one has no value."""
    kpi = "tsdb.ratio"
    first = datetime(2024, 6, 10, 9, 0, tzinfo=TZ)
    second = first + timedelta(days=1)
    rows = [(first, "35", 99.0, 99.0, 100.0), (first + timedelta(minutes=5), "347", 10.0, 1.0, 10.0),
            (second, "35", 95.0, None, None), (second + timedelta(minutes=5), "347", 50.0, 5.0, 10.0)]
    await conn.executemany(
        """INSERT INTO readings (ts, kpi, area, value, agency, revision, msg_id, received_at, numerator, denominator)
           VALUES ($1, $2, $3, $4, 'tsdb-test', 0, NULL, now(), $5, $6)""",
        [(ts.astimezone(UTC), kpi, a, v, num, den) for ts, a, v, num, den in rows],
    )
    lo, hi = datetime(2024, 6, 9, tzinfo=TZ), datetime(2024, 6, 13, tzinfo=TZ)
    for refreshed in (False, True):
        if refreshed:
            await conn.execute("CALL refresh_continuous_aggregate('readings_hourly', $1::timestamptz, $2::timestamptz)", lo, hi)
            await conn.execute("CALL refresh_continuous_aggregate('readings_daily', $1::timestamptz, $2::timestamptz)", lo, hi)
            assert await _materialized_rows(conn, "readings_daily") > 0
        for bucket in ("1h", "1d"):
            points = await series(conn, kpi=kpi, kind="ratio", area=None, start=lo, end=hi,
                                  bucket=parse_bucket(bucket), timezone=TZ_NAME, agency=None)
            assert len(points) == 2, (bucket, points)
            assert points[0]["value"] == pytest.approx(100 * 100 / 110), (bucket, refreshed)  # not 54.5
            assert (points[0]["numerator"], points[0]["denominator"]) == (100.0, 110.0)
            assert points[1]["value"] is None and "bare percentages" in str(points[1]["reason"]), (bucket, refreshed)
