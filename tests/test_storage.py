"""Migrations, storage modes, the write path's rounds and the plain-mode roll-ups."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from ioc.core.readings import Reading
from ingest.store import ReadingStore, split_rounds
from ioc.core.storage import login_failures
from ioc.core.storage.migrate import load_migrations, migrate
from ioc.core.storage.modes import StorageMode
from ioc.core.storage.rollups import refresh
from tests.conftest import timescale_available

UTC = timezone.utc
TZ = "Asia/Ho_Chi_Minh"


async def test_migrations_run_twice_and_concurrently_without_change(db_url: str, storage_mode: str) -> None:
    conns = [await asyncpg.connect(db_url) for _ in range(2)]
    try:
        before = await conns[0].fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        results = await asyncio.gather(*(migrate(c, timezone=TZ) for c in conns))
        after = await conns[0].fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        assert [r.applied for r in results] == [[], []]
        assert before == after
        assert all(r.mode is StorageMode(storage_mode) for r in results)
        assert {m.version for m in load_migrations()} == {r["version"] for r in after}
    finally:
        for c in conns:
            await c.close()


async def check_login_failures(conn: asyncpg.Connection) -> None:
    """The throttle's store: a sliding window per key, only the newest `limit` times kept.
    (Run here on plain PostgreSQL and by test_timescale_sql on TimescaleDB.)"""
    pair, address = f"u{random.randrange(10**9)}@10.9.0.1", f"@10.9.{random.randrange(256)}.1"
    keys, window = [(pair, 2), (address, 3)], 1.0
    assert await login_failures.wait_s(conn, keys, window) == 0
    await login_failures.record(conn, keys, window)
    assert await login_failures.wait_s(conn, keys, window) == 0
    await login_failures.record(conn, keys, window)
    assert 0 < await login_failures.wait_s(conn, keys, window) <= window  # the pair is at its limit
    for _ in range(3):
        await login_failures.record(conn, keys, window)
    kept = dict(await conn.fetch("SELECT key, cardinality(failures) FROM login_failures WHERE key = ANY($1::text[])",
                                 [pair, address]))
    assert kept == {pair: 2, address: 3}
    await login_failures.clear(conn, pair)
    assert 0 < await login_failures.wait_s(conn, keys, window) <= window  # the address still is
    await asyncio.sleep(window + 0.2)
    assert await login_failures.wait_s(conn, keys, window) == 0
    assert await login_failures.prune(conn, window) >= 1
    assert await conn.fetchval("SELECT count(*) FROM login_failures WHERE key = $1", address) == 0


async def test_login_failures_store(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await check_login_failures(conn)
    finally:
        await conn.close()


async def test_asking_for_timescale_without_the_extension_fails_clearly(db_url: str) -> None:
    if await timescale_available(db_url):
        pytest.skip("this server has the TimescaleDB extension: nothing to refuse")
    admin = await asyncpg.connect(db_url)
    name = "ioc_test_ts_" + hex(random.getrandbits(32))[2:]
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = db_url.rpartition("/")[0]
        conn = await asyncpg.connect(f"{base}/{name}")
        try:
            with pytest.raises(RuntimeError, match="TimescaleDB extension is not available"):
                await migrate(conn, timezone=TZ, wanted_mode="timescale")
            assert await conn.fetchval("SELECT to_regclass('readings')") is None
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def r(ts: datetime, value: float, rev: int = 0, area: str = "35", kpi: str = "mt.pm25", agency: str = "a") -> Reading:
    return Reading(ts, kpi, area, value, agency, rev, None, datetime.now(UTC))


def test_split_rounds_orders_corrections_after_originals() -> None:
    t = datetime(2024, 5, 1, tzinfo=UTC)
    rounds, dupes, conflicts = split_rounds([r(t, 1), r(t, 1), r(t, 2, rev=1), r(t, 3, rev=2), r(t, 9), r(t + timedelta(hours=1), 5)])
    assert [[(x.value, x.revision) for x in rnd] for rnd in rounds] == [[(1, 0), (5, 0)], [(2, 1)], [(3, 2)]]
    assert [d.value for d in dupes] == [1]
    # a different value without a higher revision than the last one seen is a conflict
    assert [(c[0].value, "rev >" in c[1]) for c in conflicts] == [(9, True)]


async def test_plain_rollups_match_the_readings_after_writes_and_corrections(pool: asyncpg.Pool, storage_mode: str) -> None:
    if storage_mode != "plain":
        pytest.skip("the plain roll-up tables; TimescaleDB's aggregates: tests/test_timescale_sql.py")
    rng = random.Random(7)
    kpi = "mt.pm10"
    areas = ["347", "349"]
    start = datetime(2023, 3, 5, 15, 0, tzinfo=UTC)  # crosses local midnight (UTC+7) several times
    rows = [
        r(start + timedelta(minutes=17 * i), float(rng.randint(5, 400)), area=areas[i % 2], kpi=kpi, agency="rollup-test")
        for i in range(400)
    ]
    store = ReadingStore()
    async with pool.acquire() as conn:
        # 100 readings span 28 hours per batch (hours listed as a range), the next 150
        # span more than two days (hours listed one by one)
        await store.write(conn, rows[:100], [])
        await store.write(conn, rows[100:250], [])
        await refresh(conn, StorageMode.PLAIN, TZ)
        await store.write(conn, rows[250:], [])
        fixes = [r(x.ts, x.value + 1000, rev=1, area=x.area, kpi=kpi, agency="rollup-test") for x in rows[::37]]
        out = await store.write(conn, fixes, [])
        assert len(out.written) == len(fixes)
        assert await conn.fetchval("SELECT count(*) FROM rollup_dirty WHERE kpi = $1", kpi) > 0
        await refresh(conn, StorageMode.PLAIN, TZ, kpi=kpi)
        assert await conn.fetchval("SELECT count(*) FROM rollup_dirty WHERE kpi = $1", kpi) == 0
        for table, trunc in (("readings_hourly", "date_trunc('hour', ts)"), ("readings_daily", f"date_trunc('day', ts, '{TZ}')"),
                             ("readings_monthly", f"date_trunc('month', ts, '{TZ}')")):
            diff = await conn.fetchval(
                f"""WITH truth AS (
                        SELECT {trunc} AS bucket, area, count(*) AS n, sum(value) AS sum, min(value) AS min,
                               max(value) AS max, (array_agg(value ORDER BY ts DESC))[1] AS last_value
                          FROM readings WHERE kpi = $1 GROUP BY 1, 2)
                    SELECT count(*) FROM truth t FULL JOIN (SELECT * FROM {table} WHERE kpi = $1) x
                        ON x.bucket = t.bucket AND x.area = t.area
                     WHERE x.n IS DISTINCT FROM t.n OR x.sum IS DISTINCT FROM t.sum OR x.min IS DISTINCT FROM t.min
                        OR x.max IS DISTINCT FROM t.max OR x.last_value IS DISTINCT FROM t.last_value""",
                kpi,
            )
            assert diff == 0, f"{table} differs from the readings in {diff} buckets"
        days = await conn.fetch("SELECT DISTINCT bucket FROM readings_daily WHERE kpi = $1", kpi)
        # daily buckets begin at local midnight: 17:00 UTC
        assert days and all(d["bucket"].astimezone(UTC).hour == 17 for d in days)


async def test_concurrent_writers_of_the_same_keys_neither_deadlock_nor_double(pool: asyncpg.Pool) -> None:
    t0 = datetime(2022, 8, 1, tzinfo=UTC)
    keys = [(t0 + timedelta(minutes=i), a) for i in range(300) for a in ("35", "347", "350")]
    batch_a = [r(ts, 10.0, area=a, kpi="mt.aqi", agency="conc") for ts, a in keys]
    batch_b = [r(ts, 10.0, area=a, kpi="mt.aqi", agency="conc") for ts, a in reversed(keys)]

    async def write(batch: list[Reading]) -> int:
        store = ReadingStore()
        async with pool.acquire() as conn:
            out = await store.write(conn, batch, [])
        return len(out.written) + len(out.duplicates)

    results = await asyncio.gather(write(batch_a), write(batch_b), write(batch_a))
    assert results == [len(keys)] * 3
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM readings WHERE agency = 'conc'") == len(keys)


async def test_a_correction_goes_straight_to_the_upsert(pool: asyncpg.Pool) -> None:
    """A batch carrying a correction (rev > 0) skips the COPY, which could only fail on the
    stored key (and have PostgreSQL log an ERROR); a failed COPY would also switch the store
    to upserts for a while, which is how this is seen from here."""
    t0 = datetime(2022, 9, 1, tzinfo=UTC)
    store = ReadingStore()
    async with pool.acquire() as conn:
        first = await store.write(conn, [r(t0, 40.0, agency="corr")], [])
        fixed = await store.write(conn, [r(t0, 42.0, rev=1, agency="corr")], [])
        value = await conn.fetchval("SELECT value FROM readings WHERE agency = 'corr' AND ts = $1", t0)
    assert len(first.written) == 1 and len(fixed.written) == 1 and value == 42.0
    assert store._prefer_upsert_until == 0.0  # no COPY failed on the way


async def test_last_of_a_bucket_is_defined_when_areas_report_at_the_same_time(pool: asyncpg.Pool) -> None:
    """Several areas at the bucket's newest timestamp: `last` is the lowest area code's value,
    whatever plan PostgreSQL takes (index or sequential scan), from readings and roll-ups."""
    from ioc.core.storage.queries import SeriesSource, parse_bucket, series

    # a month no other test writes to: the monthly bucket sums every area's readings in it
    ts = datetime(2003, 3, 5, 10, 30, tzinfo=timezone.utc)
    values = {"13630": 128.5, "13294": 115.3, "13513": 121.0}  # an order that is neither code nor value
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO readings (ts, kpi, area, value, agency, revision, received_at) "
            "VALUES ($1, 'mt.aqi', $2, $3, 'test', 0, now())", [(ts, a, v) for a, v in values.items()])
        await conn.executemany("INSERT INTO rollup_dirty (kpi, area, hour) VALUES ('mt.aqi', $1, $2) ON CONFLICT DO NOTHING",
                               [(a, ts.replace(minute=0)) for a in values])
        mode = StorageMode(await conn.fetchval("SELECT value FROM ioc_meta WHERE key = 'storage_mode'"))
        await refresh(conn, mode, "Asia/Ho_Chi_Minh", kpi="mt.aqi")
        answers = set()
        # every area, or the areas as sources (ranked by code: queries._last), listed out of order
        for sources in (None, [SeriesSource(a) for a in ("13630", "13513", "13294", "13444")]):
            for bucket in ("1m", "1h", "1d", "1M"):  # readings, hourly, daily and monthly roll-ups
                for plan in ("on", "off"):
                    await conn.execute(f"SET enable_indexscan = {plan}; SET enable_bitmapscan = {plan}")
                    points = await series(conn, kpi="mt.aqi", kind="gauge", area=None, start=ts - timedelta(days=1),
                                          end=ts + timedelta(days=1), bucket=parse_bucket(bucket),
                                          timezone="Asia/Ho_Chi_Minh", agency=None, sources=sources)
                    last = [p for p in points if p["last_ts"] == ts]
                    answers.add((bucket, sources is None, last[-1]["last"]))
        await conn.execute("RESET enable_indexscan; RESET enable_bitmapscan")
    assert answers == {(b, every, values["13294"]) for b in ("1m", "1h", "1d", "1M") for every in (True, False)}


async def test_a_series_over_many_sources_is_planned_for_its_arguments(pool: asyncpg.Pool) -> None:
    """asyncpg prepares each statement; PostgreSQL may then run a generic plan from the sixth
    time, one that guesses ten sources for the `unnest` join. Right after a history is
    loaded (no statistics yet) that plan looped over 500 sources for each of 30,000 monthly
    rows (3-8 s instead of 60 ms, bench/series_areas.py): a series over sources, and a
    breakdown's totals, are planned for their own arguments every time."""
    from ioc.core.storage.queries import Group, SeriesSource, parse_bucket, series, totals

    sources = [SeriesSource(f"PLAN{i:03d}") for i in range(300)]
    start, end = datetime(2021, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 1, tzinfo=timezone.utc)
    async with pool.acquire() as conn:
        for _ in range(8):
            await series(conn, kpi="test.plans", kind="counter", area=None, start=start, end=end,
                         bucket=parse_bucket("1M"), timezone="Asia/Ho_Chi_Minh", agency=None, sources=sources)
            await totals(conn, kpi="test.plans", kind="counter", groups=[Group(x.area, [x]) for x in sources],
                         start=start, end=end, agency=None)
        plans = await conn.fetch(
            """SELECT generic_plans, custom_plans FROM pg_prepared_statements
                WHERE (statement LIKE '%readings_monthly s JOIN unnest%' OR statement LIKE '%readings_daily s JOIN unnest%')
                  AND statement NOT LIKE '%pg_prepared_statements%'""")
    # (the connection may have run other series before: those count too)
    assert sum(p["custom_plans"] for p in plans) >= 16 and all(p["generic_plans"] == 0 for p in plans), plans


def test_one_bucket_grammar_for_layouts_and_the_series_api() -> None:
    """A chart tile may ask for any bucket the series API serves (`1w`, `1M` included), and is
    refused for what the API refuses."""
    from ioc.core.storage.queries import QueryError, parse_bucket
    from ioc.serve.wall.layout import Tile

    base = {"id": "c", "kind": "chart", "x": 0, "y": 0, "w": 2, "h": 2, "kpi": "mt.aqi", "area": "347"}
    for good in ("15m", "1h", "6h", "1d", "1w", "1M"):
        parse_bucket(good)
        assert Tile.model_validate({**base, "bucket": good}).bucket == good
    for bad in ("0d", "1y", "h", "1.5h", "10000d"):
        with pytest.raises(QueryError):
            parse_bucket(bad)
        with pytest.raises(ValueError):
            Tile.model_validate({**base, "bucket": bad})


async def test_people_get_owasp_iterations_and_broker_logins_the_affordable_ones(pool: asyncpg.Pool) -> None:
    """People's API passwords: PBKDF2-SHA512 at 210,000 iterations; agencies' and services'
    broker passwords at 20,000 (a broker restart's reconnect storm, bench/logins.py). An older,
    weaker hash of a person is upgraded at the next good login; all stay Mosquitto's $7$ format."""
    import secrets as _secrets

    from ioc.core.accounts import authenticate, create_agency, create_user, reset_password
    from ioc.core.passwords import hash_password, iterations_of

    tag = _secrets.token_hex(3)
    async with pool.acquire() as conn:
        op_pw = await create_user(conn, f"hash-op-{tag}", role="operator", actor="test")
        await create_user(conn, f"hash-svc-{tag}", role="ingest", actor="test")
        await create_agency(conn, f"hash-ag-{tag}", name_vi="Cơ quan thử", sectors=["tthc"], actor="test")
        stored = {r["username"]: r["password_hash"] for r in await conn.fetch(
            "SELECT username, password_hash FROM users WHERE username LIKE $1", f"hash-%-{tag}")}
        assert stored[f"hash-op-{tag}"].startswith("$7$210000$")
        assert stored[f"hash-svc-{tag}"].startswith("$7$20000$")
        assert stored[f"hash-ag-{tag}"].startswith("$7$20000$")
        await reset_password(conn, f"hash-op-{tag}", actor="test")
        assert iterations_of(await conn.fetchval("SELECT password_hash FROM users WHERE username = $1",
                                                 f"hash-op-{tag}")) == 210_000
        # a person's hash from before: upgraded by the next good login, which still works
        await conn.execute("UPDATE users SET password_hash = $2 WHERE username = $1", f"hash-op-{tag}",
                           hash_password(op_pw, 20_000))
        assert await authenticate(conn, f"hash-op-{tag}", op_pw) is not None
        upgraded = await conn.fetchval("SELECT password_hash FROM users WHERE username = $1", f"hash-op-{tag}")
        assert iterations_of(upgraded) == 210_000
        assert await authenticate(conn, f"hash-op-{tag}", op_pw) is not None


async def test_every_touched_hour_is_listed_for_the_roll_ups_in_both_modes(pool: asyncpg.Pool) -> None:
    """A reading two days back (a late one, or a correction) lists its hour for the roll-ups in
    TimescaleDB mode too: its continuous-aggregate policy would revisit that hour only up to an
    hour later, so `/series` showed the old figure that long (the issue's 480 s)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    late = now - timedelta(days=2, minutes=7)
    area = "13621"
    reading = Reading(late, "mt.aqi", area, 82.8, "test", 0, None, now)
    async with pool.acquire() as conn:
        tx = conn.transaction()  # uncommitted: no `ioc serve` of the session refreshes it away first
        await tx.start()
        try:
            await ReadingStore().write(conn, [reading], [])
            hours = [r["hour"] for r in await conn.fetch(
                "SELECT hour FROM rollup_dirty WHERE kpi = 'mt.aqi' AND area = $1", area)]
        finally:
            await tx.rollback()
    assert late.replace(minute=0, second=0) in hours
