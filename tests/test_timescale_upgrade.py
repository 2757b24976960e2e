"""An upgrade on TimescaleDB keeps history in the roll-ups: a database with readings from
before migration 0010 (which makes the continuous aggregates again) still answers for them
once the refresh policies have moved the watermark (issue 14's leftover). Runs on PGlite with
TimescaleDB, like tests/test_timescale_sql.py (never skipped)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from ioc.core.storage.migrate import migrate
from ioc.core.storage.queries import parse_bucket, series
from tests.rigs.pglite import PgliteTimescaleRig, PgliteUnavailable
from tests.test_timescale_sql import MIGRATE_ARGS, TZ, TZ_NAME

KPI = "tsup.counter"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgliteTimescaleRig]:
    try:
        server = PgliteTimescaleRig(log_path=tmp_path_factory.mktemp("pglite-up") / "server.log").start()
    except PgliteUnavailable as exc:
        pytest.fail(f"PGlite with TimescaleDB could not be started: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def conn(rig: PgliteTimescaleRig) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(rig.dsn, statement_cache_size=0, command_timeout=120, timeout=30)
    await c.execute("SET timezone = 'UTC'")
    try:
        yield c
    finally:
        await c.close(timeout=5)


async def test_history_from_before_the_aggregates_were_made_again_stays(conn: asyncpg.Connection) -> None:
    await migrate(conn, **MIGRATE_ARGS, upto=9)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    old = now - timedelta(days=60)
    rows = [(old + timedelta(hours=h), KPI, "35", 10.0 + h) for h in range(5)]
    rows += [(now - timedelta(days=2, hours=h), KPI, "35", 1.0) for h in range(3)]
    await conn.executemany(
        """INSERT INTO readings (ts, kpi, area, value, agency, revision, msg_id, received_at)
           VALUES ($1, $2, $3, $4, 'tsup', 0, NULL, now())""", rows)
    result = await migrate(conn, **MIGRATE_ARGS)
    assert "0010_rollups_fractions" in result.applied
    # what the refresh policies do on their first runs: their recent windows only
    await conn.execute("CALL refresh_continuous_aggregate('readings_hourly', now() - interval '7 days', now() - interval '1 hour')")
    await conn.execute("CALL refresh_continuous_aggregate('readings_daily', now() - interval '35 days', now() - interval '1 day')")
    for bucket in ("1h", "1d"):
        points = await series(conn, kpi=KPI, kind="counter", area="35", start=old - timedelta(days=1),
                              end=now, bucket=parse_bucket(bucket), timezone=TZ_NAME, agency=None)
        total = sum(p["value"] for p in points)  # type: ignore[misc]
        assert total == sum(v for *_, v in rows), (bucket, points)
        first = min(p["bucket"] for p in points)  # type: ignore[type-var]
        assert first.astimezone(TZ) <= old.astimezone(TZ), bucket  # type: ignore[union-attr]
