"""Keeping the hourly and daily roll-ups true to the readings.

Plain mode: `readings_hourly`, `readings_daily` and `readings_monthly` are tables, and every
hour the ingest touched is listed in `rollup_dirty`; `refresh` recomputes exactly those
hours from readings, the days that contain them from the hours, and their months from the
days. TimescaleDB mode: the continuous
aggregates' policy keeps recent data current and real-time aggregation covers the tail;
`rollup_dirty` then lists only late arrivals older than the policy window, which `refresh`
hands to `refresh_continuous_aggregate`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from ioc.core.storage.modes import StorageMode

REFRESH_LOCK_KEY = 0x10C0002  # int4, first of the two-key advisory lock: (it, hashtext(kpi)) plain, (it, 0) TimescaleDB


async def refresh(conn: asyncpg.Connection, mode: StorageMode, timezone: str, *, kpi: str | None = None,
                  before_snapshot: Callable[[], None] = lambda: None) -> int:
    """Bring roll-ups up to date (for one KPI, or all); returns the hours recomputed.

    `before_snapshot` is called once this refresher holds its lock, just before it reads
    which hours are dirty: what was committed before that call is in the roll-ups after."""
    if mode is StorageMode.TIMESCALE:
        return await _refresh_timescale(conn, timezone, before_snapshot)
    if kpi is None:
        before_snapshot()
        total = 0
        for row in await conn.fetch("SELECT DISTINCT kpi FROM rollup_dirty"):
            total += await _refresh_plain(conn, row["kpi"], timezone)
        return total
    return await _refresh_plain(conn, kpi, timezone, before_snapshot)


async def _refresh_plain(conn: asyncpg.Connection, kpi: str, timezone: str,
                         before_snapshot: Callable[[], None] = lambda: None) -> int:
    async with conn.transaction():
        # one refresher per KPI at a time: two computing the same day from different
        # snapshots of the hours could commit a stale day last
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", REFRESH_LOCK_KEY, kpi)
        before_snapshot()
        # two statements: the CTEs of one statement share a snapshot, so a daily roll-up
        # computed in the same statement would read the hours as they were before it
        touched = await conn.fetch(
            """WITH d AS (
                   DELETE FROM rollup_dirty WHERE kpi = $1 RETURNING kpi, area, hour
               )
               INSERT INTO readings_hourly AS t (bucket, kpi, area, n, sum, min, max, last_value, last_ts,
                                                 num_sum, den_sum, n_bare)
               SELECT d.hour, d.kpi, d.area, count(*), sum(r.value), min(r.value), max(r.value),
                      (array_agg(r.value ORDER BY r.ts DESC))[1], max(r.ts),
                      sum(r.numerator), sum(r.denominator), count(*) FILTER (WHERE r.numerator IS NULL)
                 FROM d JOIN readings r
                   ON r.kpi = d.kpi AND r.area = d.area AND r.ts >= d.hour AND r.ts < d.hour + interval '1 hour'
                GROUP BY d.hour, d.kpi, d.area
               ON CONFLICT (kpi, area, bucket) DO UPDATE
                  SET n = EXCLUDED.n, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
                      last_value = EXCLUDED.last_value, last_ts = EXCLUDED.last_ts,
                      num_sum = EXCLUDED.num_sum, den_sum = EXCLUDED.den_sum, n_bare = EXCLUDED.n_bare
               RETURNING t.kpi, t.area, t.bucket""",
            kpi,
        )
        if not touched:
            return 0
        args = ([t["kpi"] for t in touched], [t["area"] for t in touched], [t["bucket"] for t in touched], timezone)
        # the days of those hours from the hours, then their months from the days: one
        # statement each, for the same reason
        await conn.execute(_DAYS_FROM_HOURS, *args)
        await conn.execute(_MONTHS_FROM_DAYS, *args)
        n = len(touched)
    return int(n or 0)


def _coarser(target: str, source: str, unit: str) -> str:
    """Recompute the `unit`s (local, $4 the time zone) of the listed (kpi $1, area $2,
    hour $3) in `target` from the finer roll-up `source`. A unit ends a local unit later:
    added in UTC, the month from 1 March 00:00 in Viet Nam (29 February 17:00 UTC) ended on
    29 March and lost the month's last days."""
    return f"""WITH spans AS (
                   SELECT DISTINCT k, a, date_trunc('{unit}', b, $4) AS start
                     FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(k, a, b)
               )
               INSERT INTO {target} AS t (bucket, kpi, area, n, sum, min, max, last_value, last_ts,
                                          num_sum, den_sum, n_bare)
               SELECT spans.start, spans.k, spans.a, sum(x.n), sum(x.sum), min(x.min), max(x.max),
                      (array_agg(x.last_value ORDER BY x.last_ts DESC))[1], max(x.last_ts),
                      sum(x.num_sum), sum(x.den_sum), sum(x.n_bare)
                 FROM spans JOIN {source} x
                   ON x.kpi = spans.k AND x.area = spans.a
                  AND x.bucket >= spans.start
                  AND x.bucket < ((spans.start AT TIME ZONE $4) + interval '1 {unit}') AT TIME ZONE $4
                GROUP BY spans.start, spans.k, spans.a
               ON CONFLICT (kpi, area, bucket) DO UPDATE
                  SET n = EXCLUDED.n, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
                      last_value = EXCLUDED.last_value, last_ts = EXCLUDED.last_ts,
                      num_sum = EXCLUDED.num_sum, den_sum = EXCLUDED.den_sum, n_bare = EXCLUDED.n_bare"""


_DAYS_FROM_HOURS = _coarser("readings_daily", "readings_hourly", "day")
_MONTHS_FROM_DAYS = _coarser("readings_monthly", "readings_daily", "month")


async def _refresh_timescale(conn: asyncpg.Connection, timezone: str, before_snapshot: Callable[[], None]) -> int:
    # one refresher at a time across API nodes: concurrent refreshes of the same spans redo
    # each other's work. A session lock, as the CALLs below cannot run in a transaction; if
    # this is cancelled midway, the pool's reset on release (pg_advisory_unlock_all) frees it.
    await conn.execute("SELECT pg_advisory_lock($1, 0)", REFRESH_LOCK_KEY)
    try:
        before_snapshot()
        return await _refresh_timescale_locked(conn, timezone)
    finally:
        with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresError):
            await conn.execute("SELECT pg_advisory_unlock($1, 0)", REFRESH_LOCK_KEY)


async def _refresh_timescale_locked(conn: asyncpg.Connection, timezone: str) -> int:
    rows = await conn.fetch("SELECT kpi, area, hour FROM rollup_dirty")
    if not rows:
        return 0
    hours = sorted({r["hour"] for r in rows})
    # refresh_continuous_aggregate cannot run inside a transaction block: one call per span.
    # tier by tier: each aggregate reads the one below, so a month is refreshed only once every
    # day under it is. The upper tiers are forced: TimescaleDB 2.29 did not carry the hourly
    # tier's new rows up as invalidations once the aggregates had been refreshed past them
    # (a reading of 1 April 00:30 in Hanoi reached the hour, never April's day or month), so
    # the days around each span and the local months it touches are computed again whole.
    spans = _spans(hours)
    for start, end in spans:
        await refresh_aggregate(conn, "readings_hourly", start, end)
    for start, end in spans:
        await refresh_aggregate(conn, "readings_daily", start - timedelta(days=2), end + timedelta(days=2), force=True)
    for start, end in _months(spans, ZoneInfo(timezone)):
        await refresh_aggregate(conn, "readings_monthly", start, end, force=True)
    # only now: a refresh that failed leaves its hours listed for the next round
    await conn.execute(
        """DELETE FROM rollup_dirty d USING unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(k, a, h)
            WHERE d.kpi = u.k AND d.area = u.a AND d.hour = u.h""",
        [r["kpi"] for r in rows], [r["area"] for r in rows], [r["hour"] for r in rows],
    )
    return len(hours)


REFRESH_TRIES = 8


async def refresh_aggregate(conn: asyncpg.Connection, view: str, start: datetime | None, end: datetime | None,
                            *, force: bool = False) -> None:
    """`refresh_continuous_aggregate`, waiting out a concurrent one: TimescaleDB refuses a
    refresh that overlaps another in progress (its own policy job, another node's) with
    "could not refresh ... due to a concurrent refresh" instead of waiting for it, and that
    must not become a request's 500 or a failed `ioc migrate`. A few tries, 0.1 s to 6 s apart.
    Its window arguments are of type "any": a bare $n has no type to bind to, hence the casts."""
    for attempt in range(REFRESH_TRIES):
        try:
            if force:
                await conn.execute("CALL refresh_continuous_aggregate($1::regclass, $2::timestamptz, $3::timestamptz, "
                                   "force => true)", view, start, end)
            else:
                await conn.execute(
                    "CALL refresh_continuous_aggregate($1::regclass, $2::timestamptz, $3::timestamptz)", view, start, end)
            return
        except asyncpg.exceptions.LockNotAvailableError:
            if attempt == REFRESH_TRIES - 1:
                raise
            await asyncio.sleep(min(6.0, 0.1 * 2 ** attempt))


def _months(spans: list[tuple[datetime, datetime]], tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The local months the spans touch, as windows a day wider on each side, merged."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        s, e = start.astimezone(tz), (end - timedelta(microseconds=1)).astimezone(tz)
        lo = datetime(s.year, s.month, 1, tzinfo=tz) - timedelta(days=1)
        hi = datetime(e.year + (e.month == 12), e.month % 12 + 1, 1, tzinfo=tz) + timedelta(days=1)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _spans(hours: list[datetime], join: timedelta = timedelta(hours=6)) -> list[tuple[datetime, datetime]]:
    spans: list[tuple[datetime, datetime]] = []
    for h in hours:
        if spans and h <= spans[-1][1] + join:
            spans[-1] = (spans[-1][0], h + timedelta(hours=1))
        else:
            spans.append((h, h + timedelta(hours=1)))
    return spans
