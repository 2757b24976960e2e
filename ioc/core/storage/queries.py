"""Read queries for the API: latest values and series bucketed on the server."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg

from ioc.core import buckets
from ioc.core.buckets import Bucket

MAX_POINTS = 10_000


class QueryError(ValueError):
    """A query the caller got wrong; the message says how."""


def parse_bucket(text: str) -> Bucket:
    """The shared grammar (`ioc.core.buckets`), refusals as this module's QueryError."""
    try:
        return buckets.parse_bucket(text)
    except buckets.BucketError as exc:
        raise QueryError(str(exc)) from None


EARLIEST = datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC"))
LATEST = datetime(2100, 1, 1, tzinfo=ZoneInfo("UTC"))


def align(bucket: Bucket, start: datetime, end: datetime, timezone: str) -> tuple[datetime, datetime]:
    """Widen [start, end) to whole buckets, so every source (readings or roll-ups) and every
    caller sees the same buckets, each complete. Buckets start at local midnight in the
    province's time zone, weeks on a Monday."""
    tz = ZoneInfo(timezone)
    if bucket.unit == "M":
        s_local = start.astimezone(tz)
        first = datetime(s_local.year, s_local.month, 1, tzinfo=tz)
        e_local = end.astimezone(tz)
        last = datetime(e_local.year, e_local.month, 1, tzinfo=tz)
        if last < end:
            last = datetime(last.year + (last.month == 12), last.month % 12 + 1, 1, tzinfo=tz)
        return first, last
    origin = datetime(2000, 1, 3, tzinfo=tz)
    step = bucket.approx
    lo = origin + ((start - origin) // step) * step
    hi = origin + -((origin - end) // step) * step
    return lo, hi


async def latest(
    conn: asyncpg.Connection,
    *,
    kpis: list[str] | None,
    sectors: list[str] | None,
    areas: list[str] | None,
    agency: str | None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT l.kpi, l.area, l.ts, l.value, l.revision, l.agency, l.received_at,
                  k.unit, k.target, k.better, k.sector
             FROM kpi_latest l JOIN kpis k ON k.id = l.kpi
            WHERE ($1::text[] IS NULL OR l.kpi = ANY($1))
              AND ($2::text[] IS NULL OR k.sector = ANY($2))
              AND ($3::text[] IS NULL OR l.area = ANY($3))
              AND ($4::text IS NULL OR l.agency = $4)
            ORDER BY l.kpi, l.area""",
        kpis, sectors, areas, agency,
    )


async def series(
    conn: asyncpg.Connection,
    *,
    kpi: str,
    kind: str,
    area: str | None,
    start: datetime,
    end: datetime,
    bucket: Bucket,
    timezone: str,
    agency: str | None,
) -> list[dict[str, object]]:
    """Aggregates per bucket: `value` is the sum for counters and the mean otherwise;
    `last_ts` is the time of the bucket's newest reading, and `last` its value. When several
    areas report at that same time, `last` is the one of the lowest area code: a defined
    answer, whichever plan PostgreSQL picks."""
    if end <= start:
        raise QueryError("end must be after start")
    if start < EARLIEST or end > LATEST:
        raise QueryError("start and end must lie between 2000 and 2100")
    start, end = align(bucket, start, end, timezone)
    if (end - start) / bucket.approx > MAX_POINTS:
        raise QueryError(f"that range holds more than {MAX_POINTS} buckets of {bucket.text}: use a larger bucket")
    tz = ZoneInfo(timezone)
    # buckets start at local midnight (and weeks on a Monday) in the province's time zone
    origin = datetime(2000, 1, 3, tzinfo=tz)
    if bucket.unit == "M" and bucket.count != 1:
        raise QueryError("month buckets: only 1M")
    # an agency reads only its own readings, which the roll-ups (per KPI and area) do not
    # separate: its series come from the readings themselves
    if agency is not None or bucket.unit == "m":
        source, col = "readings", "ts"
    elif bucket.unit == "h":
        source, col = "readings_hourly", "bucket"
    else:
        source, col = "readings_daily", "bucket"
    if bucket.unit == "M":
        b_expr = f"date_trunc('month', {col}, $6::text)"
        extra: list[object] = [timezone]
    else:
        b_expr = f"date_bin($6::interval, {col}, $7::timestamptz)"
        extra = [bucket.approx, origin]
    if source == "readings":
        sql = f"""SELECT {b_expr} AS b, count(*) AS n, sum(value) AS sum, min(value) AS min, max(value) AS max,
                         (array_agg(value ORDER BY ts DESC, area))[1] AS last, max(ts) AS last_ts
                    FROM readings
                   WHERE kpi = $1 AND ($2::text IS NULL OR area = $2) AND ts >= $3 AND ts < $4
                     AND ($5::text IS NULL OR agency = $5)
                   GROUP BY b ORDER BY b"""
        args: list[object] = [kpi, area, start, end, agency, *extra]
    else:
        sql = f"""SELECT {b_expr} AS b, sum(n) AS n, sum(sum) AS sum, min(min) AS min, max(max) AS max,
                         (array_agg(last_value ORDER BY last_ts DESC, area))[1] AS last, max(last_ts) AS last_ts
                    FROM {source}
                   WHERE kpi = $1 AND ($2::text IS NULL OR area = $2) AND bucket >= $3 AND bucket < $4
                     AND $5::text IS NULL
                   GROUP BY b ORDER BY b"""
        args = [kpi, area, start, end, None, *extra]
    rows = await conn.fetch(sql, *args)
    out = []
    for r in rows:
        n = int(r["n"])
        total = float(r["sum"])
        out.append({
            "bucket": r["b"],
            "value": total if kind == "counter" else total / n,
            "n": n,
            "min": r["min"],
            "max": r["max"],
            "last": r["last"],
            "last_ts": r["last_ts"],  # the newest reading counted: pages skip live values up to it
        })
    return out
