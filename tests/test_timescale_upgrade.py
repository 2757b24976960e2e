"""An upgrade on TimescaleDB keeps history in the roll-ups: a database with readings from
before migration 0010 (which makes the continuous aggregates again) still answers for them
once the refresh policies have moved the watermark (issue 14's leftover). Runs on PGlite with
TimescaleDB, like tests/test_timescale_sql.py (never skipped)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
from ioc.core.storage.migrate import migrate
from ioc.core.storage.queries import parse_bucket, series
from tests.test_timescale_sql import MIGRATE_ARGS, TZ, TZ_NAME, conn, rig  # noqa: F401  (fixtures: a rig of this module's own)

KPI = "tsup.counter"


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
