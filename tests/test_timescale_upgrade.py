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


async def test_a_late_reading_reaches_its_local_day_and_month(conn: asyncpg.Connection) -> None:
    """Readings of 30 and 31 March and of 1 April 00:30 (Hanoi) refreshed after the aggregates
    had moved on to today: each reaches its hour, its local day and its local month. Without
    forcing the upper tiers, 1 April's day and month stayed empty on TimescaleDB 2.29."""
    from ioc.core.storage import rollups
    from ioc.core.storage.modes import StorageMode

    async def dirty(kpi: str, rows: list[tuple[datetime, float]]) -> None:
        await conn.executemany(
            """INSERT INTO readings (ts, kpi, area, value, agency, revision, msg_id, received_at)
               VALUES ($1, $2, '35', $3, 'tsup', 0, NULL, now())""", [(ts, kpi, v) for ts, v in rows])
        await conn.executemany("INSERT INTO rollup_dirty (kpi, area, hour) VALUES ($1, '35', date_trunc('hour', $2::timestamptz)) "
                               "ON CONFLICT DO NOTHING", [(kpi, ts) for ts, _ in rows])
        await rollups.refresh(conn, StorageMode.TIMESCALE, TZ_NAME)

    await dirty("tsup.other", [(datetime(2023, 4, 10, 9, tzinfo=TZ), 1.0), (datetime.now(timezone.utc), 1.0)])
    await dirty("tsup.late", [(datetime(2023, 3, 30, 9, tzinfo=TZ), 5.0), (datetime(2023, 3, 31, 23, 30, tzinfo=TZ), 7.0),
                              (datetime(2023, 4, 1, 0, 30, tzinfo=TZ), 11.0)])
    for bucket, want in (("1M", [12.0, 11.0]), ("1d", [5.0, 7.0, 11.0])):
        points = await series(conn, kpi="tsup.late", kind="counter", area="35", start=datetime(2023, 3, 30, tzinfo=TZ),
                              end=datetime(2023, 4, 3, tzinfo=TZ), bucket=parse_bucket(bucket), timezone=TZ_NAME, agency=None)
        assert [p["value"] for p in points] == want, (bucket, points)
