"""Read queries for the API: latest values and series bucketed on the server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
    """The newest reading per (kpi, area), with a ratio's numerator and denominator where it
    was sent with them (null for a bare percentage and for other kinds); for an agency, the newest of its own: where another
    agency reported the same KPI and area later, the agency still sees what it sent (its form
    shows its last figure beside each field)."""
    if agency is None:
        return await conn.fetch(
            """SELECT l.kpi, l.area, l.ts, l.value, l.revision, l.agency, l.received_at,
                      r.numerator, r.denominator, k.unit, k.target, k.better, k.sector
                 FROM kpi_latest l JOIN kpis k ON k.id = l.kpi
                 LEFT JOIN readings r ON r.kpi = l.kpi AND r.area = l.area AND r.ts = l.ts
                WHERE ($1::text[] IS NULL OR l.kpi = ANY($1))
                  AND ($2::text[] IS NULL OR k.sector = ANY($2))
                  AND ($3::text[] IS NULL OR l.area = ANY($3))
                ORDER BY l.kpi, l.area""",
            kpis, sectors, areas,
        )
    # kpi_latest lists the pairs that have readings; each pair's newest of this agency's is
    # found backwards on the primary key (at once where the agency sent the newest)
    return await conn.fetch(
        """SELECT r.kpi, r.area, r.ts, r.value, r.revision, r.agency, r.received_at,
                  r.numerator, r.denominator, k.unit, k.target, k.better, k.sector
             FROM kpi_latest l JOIN kpis k ON k.id = l.kpi
             CROSS JOIN LATERAL (
                 SELECT x.kpi, x.area, x.ts, x.value, x.revision, x.agency, x.received_at, x.numerator, x.denominator
                   FROM readings x
                  WHERE x.kpi = l.kpi AND x.area = l.area AND x.agency = $4
                  ORDER BY x.ts DESC LIMIT 1) r
            WHERE ($1::text[] IS NULL OR l.kpi = ANY($1))
              AND ($2::text[] IS NULL OR k.sector = ANY($2))
              AND ($3::text[] IS NULL OR l.area = ANY($3))
            ORDER BY r.kpi, r.area""",
        kpis, sectors, areas, agency,
    )


@dataclass(frozen=True)
class SeriesSource:
    """Readings of `area` in [since, until) count in the series with this `share`."""

    area: str
    share: float = 1.0
    since: datetime = EARLIEST
    until: datetime = LATEST


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
    sources: Sequence[SeriesSource] | None = None,
    known_at: datetime | None = None,
) -> list[dict[str, object]]:
    """Aggregates per bucket over the areas asked for (`sources`, e.g. a province and, before
    a reform, the units it succeeded; else `area` alone, or every area when None):

    - counters: the sum (each source's readings times its share);
    - ratios: sum(numerator) / sum(denominator) x 100, weighted, never a mean of
      percentages; a bucket holding a bare percentage (no parts) among other readings has no
      value (None) and a `reason`, since no honest total can be made from it;
    - gauges: the mean.

    `last_ts` is the time of the bucket's newest reading, and `last` its value. When several
    areas report at that same time, `last` is the one of the lowest area code (in code point
    order): a defined answer, whichever plan PostgreSQL picks (`_last`).

    `known_at`: the series as it could be seen at that instant (the time machine's rule,
    `ioc.core.storage.past`): only readings that had arrived by then, each (kpi, area, ts) at
    the highest revision that had, from the readings and the revisions corrections replaced.
    Always from the readings: the roll-ups hold only the current revisions."""
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
    if sources is None and area is not None:
        sources = [SeriesSource(area)]
    # an agency reads only its own readings, which the roll-ups (per KPI and area) do not
    # separate: its series come from the readings themselves
    if agency is not None or bucket.unit == "m" or known_at is not None:
        source, col = "readings", "ts"
    elif bucket.unit == "h":
        source, col = "readings_hourly", "bucket"
    elif bucket.unit == "M":
        source, col = "readings_monthly", "bucket"
    else:
        source, col = "readings_daily", "bucket"
    extra: list[object]
    if source == "readings_monthly":
        b_expr, extra = "s.bucket", []  # already a local month: date_trunc would cost a time zone lookup a row
    elif bucket.unit == "M":
        b_expr = f"date_trunc('month', s.{col}, $5::text)"
        extra = [timezone]
    else:
        b_expr = f"date_bin($5::interval, s.{col}, $6::timestamptz)"
        extra = [bucket.approx, origin]
    if sources is None:
        join, share = "", "1.0"
        params: list[object] = []
    else:
        first = 5 + len(extra)
        join = (f"JOIN unnest(${first}::text[], ${first + 1}::float8[], ${first + 2}::timestamptz[], "
                f"${first + 3}::timestamptz[], ${first + 4}::int[]) AS m(area, share, since, until, rank) "
                f"ON s.area = m.area AND s.{col} >= m.since AND s.{col} < m.until")
        share = "m.share"
        rank = {code: i for i, code in enumerate(sorted({x.area for x in sources}))}
        params = [[x.area for x in sources], [x.share for x in sources], [x.since for x in sources],
                  [x.until for x in sources], [rank[x.area] for x in sources]]
    table = "readings"
    if known_at is not None:
        table = _known_at_table(4 + len(extra) + len(params) + 1)
    if source == "readings":
        sql = f"""SELECT {b_expr} AS b, count(*) AS n, sum(s.value) AS raw, sum(s.value * {share}) AS sum,
                         min(s.value) AS min, max(s.value) AS max,
                         {_last("s.value", "s.ts", sources is not None)} AS last, max(s.ts) AS last_ts,
                         sum(s.numerator * {share}) AS num, sum(s.denominator * {share}) AS den,
                         count(*) FILTER (WHERE s.numerator IS NULL) AS n_bare
                    FROM {table} s {join}
                   WHERE s.kpi = $1 AND s.ts >= $2 AND s.ts < $3 AND ($4::text IS NULL OR s.agency = $4)
                   GROUP BY b ORDER BY b"""
        args: list[object] = [kpi, start, end, agency, *extra, *params]
        if known_at is not None:
            args.append(known_at)
    else:
        sql = f"""SELECT {b_expr} AS b, sum(s.n) AS n, sum(s.sum) AS raw, sum(s.sum * {share}) AS sum,
                         min(s.min) AS min, max(s.max) AS max,
                         {_last("s.last_value", "s.last_ts", sources is not None)} AS last, max(s.last_ts) AS last_ts,
                         sum(s.num_sum * {share}) AS num, sum(s.den_sum * {share}) AS den, sum(s.n_bare) AS n_bare
                    FROM {source} s {join}
                   WHERE s.kpi = $1 AND s.bucket >= $2 AND s.bucket < $3 AND $4::text IS NULL
                   GROUP BY b ORDER BY b"""
        args = [kpi, start, end, None, *extra, *params]
    rows = await _fetch_planned_for(conn, sql, args)
    return [_point(r, kind) for r in rows]


async def _fetch_planned_for(conn: asyncpg.Connection, sql: str, args: Sequence[object]) -> list[asyncpg.Record]:
    """A query joined to its sources (`unnest` of arrays), planned for these arguments each
    time. asyncpg prepares every statement, and from the sixth run PostgreSQL may keep a
    generic plan, which guesses ten sources: on tables without statistics yet (history just
    loaded) it loops over the 500 sources for each of 30,000 monthly rows, 3-8 s instead of
    60 ms. Planning costs 0.4 ms (plain) to 2 ms (TimescaleDB's chunks)."""
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        return await conn.fetch(sql, *args)


def _last(value: str, ts: str, ranked: bool) -> str:
    """The value of a group's newest row, ties to the lowest area code. Joined to the
    sources, whose `m.rank` orders their codes, it is the largest (time, -rank, value) triple:
    a plain aggregate, hashed with the others, where an ordered array_agg would sort all the
    group's rows (30,000 of them for a province's communes over five years by month, most
    tied on the time: half the query's time). date_part's float8 keeps microseconds apart
    until 2100."""
    if ranked:
        return f"(max(ARRAY[date_part('epoch', {ts}), -m.rank, {value}]))[3]"
    return f'(array_agg({value} ORDER BY {ts} DESC, s.area COLLATE "C"))[1]'


def _known_at_table(p: int) -> str:
    """`readings` as known at instant ${p}: per (kpi, area, ts) the highest revision that
    had arrived by then, current or since corrected. Narrowed by the outer query's kpi and
    span ($1, $2, $3), repeated inside so each side uses its primary key."""
    return f"""(SELECT DISTINCT ON (v.area, v.ts) v.* FROM (
                   SELECT kpi, area, ts, value, numerator, denominator, agency, revision FROM readings
                    WHERE kpi = $1 AND ts >= $2 AND ts < $3 AND received_at <= ${p}
                   UNION ALL
                   SELECT kpi, area, ts, value, numerator, denominator, agency, revision FROM reading_revisions
                    WHERE kpi = $1 AND ts >= $2 AND ts < $3 AND received_at <= ${p}
                ) v ORDER BY v.area, v.ts, v.revision DESC)"""


def _point(r: asyncpg.Record, kind: str) -> dict[str, object]:
    return {
        "bucket": r["b"], **_cell(r, kind), "min": r["min"], "max": r["max"], "last": r["last"],
        "last_ts": r["last_ts"],  # the newest reading counted: pages skip live values up to it
    }


def _cell(r: asyncpg.Record, kind: str) -> dict[str, object]:
    """A figure from a group's sums (`n`, `raw`, `sum`, `num`, `den`, `n_bare`): the one rule
    of each kind, shared by series buckets and breakdown rows so they always agree."""
    n = int(r["n"])
    cell: dict[str, object] = {"value": None, "n": n, "reason": None}
    if kind == "counter":
        cell["value"] = float(r["sum"])
    elif kind == "ratio":
        bare = int(r["n_bare"])
        cell["numerator"], cell["denominator"] = r["num"], r["den"]
        if bare == 0 and r["den"]:
            cell["value"] = 100.0 * float(r["num"]) / float(r["den"])
        elif n == 1:
            cell["value"] = float(r["raw"])  # one reading: nothing to combine
        else:
            cell["reason"] = (f"not aggregable: {bare} of the {n} readings in this bucket are bare percentages "
                              "(sent without numerator and denominator), and percentages do not add up")
    else:
        cell["value"] = float(r["raw"]) / n
    return cell


@dataclass(frozen=True)
class Group:
    """One row of a breakdown: the readings of `sources` counted together under `key`."""

    key: str
    sources: Sequence[SeriesSource]


async def totals(
    conn: asyncpg.Connection,
    *,
    kpi: str,
    kind: str,
    groups: Sequence[Group],
    start: datetime,
    end: datetime,
    agency: str | None,
    by_agency: bool = False,
    known_at: datetime | None = None,
) -> dict[str, dict[str, object]]:
    """One figure per group over [start, end), by the rules of `series` (`_cell`), so a
    unit's row equals its series over the same days. The caller aligns start and end to
    local midnights: the daily roll-ups then hold every reading of the span. An agency's
    figures come from its own readings (the roll-ups do not separate agencies), and so does
    a split by reporting agency (`by_agency`: keyed by agency over all the groups' sources).
    Groups without readings are absent. `known_at`: as known at that instant (`series`)."""
    if end <= start:
        raise QueryError("end must be after start")
    if start < EARLIEST or end > LATEST:
        raise QueryError("start and end must lie between 2000 and 2100")
    keys = [g.key for g in groups for _ in g.sources]
    srcs = [x for g in groups for x in g.sources]
    if not srcs:
        return {}
    params = [keys, [x.area for x in srcs], [x.share for x in srcs], [x.since for x in srcs], [x.until for x in srcs]]
    join = "JOIN unnest($4::text[], $5::text[], $6::float8[], $7::timestamptz[], $8::timestamptz[]) AS m(key, area, share, since, until)"
    if agency is not None or by_agency or known_at is not None:
        key = "s.agency" if by_agency else "m.key"
        table = "readings" if known_at is None else _known_at_table(10)
        sql = f"""SELECT {key} AS k, count(*) AS n, sum(s.value) AS raw, sum(s.value * m.share) AS sum,
                         sum(s.numerator * m.share) AS num, sum(s.denominator * m.share) AS den,
                         count(*) FILTER (WHERE s.numerator IS NULL) AS n_bare
                    FROM {table} s {join} ON s.area = m.area AND s.ts >= m.since AND s.ts < m.until
                   WHERE s.kpi = $1 AND s.ts >= $2 AND s.ts < $3 AND ($9::text IS NULL OR s.agency = $9)
                   GROUP BY 1"""
        rows = await _fetch_planned_for(conn, sql, [kpi, start, end, *params, agency, *([known_at] if known_at else [])])
    else:
        sql = f"""SELECT m.key AS k, sum(s.n) AS n, sum(s.sum) AS raw, sum(s.sum * m.share) AS sum,
                         sum(s.num_sum * m.share) AS num, sum(s.den_sum * m.share) AS den, sum(s.n_bare) AS n_bare
                    FROM readings_daily s {join} ON s.area = m.area AND s.bucket >= m.since AND s.bucket < m.until
                   WHERE s.kpi = $1 AND s.bucket >= $2 AND s.bucket < $3
                   GROUP BY 1"""
        rows = await _fetch_planned_for(conn, sql, [kpi, start, end, *params])
    return {str(r["k"]): _cell(r, kind) for r in rows}
