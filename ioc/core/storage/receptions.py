"""When each agency's readings of each KPI arrived: what the monthly report judges late or
missing reports from (by the rule of `ioc.core.silence`, the wall's "agency silent" one).

An agency owes the KPIs of its sectors that have a reporting interval. This reads, per such
(agency, KPI), the distinct arrival times (`received_at`) of its readings stamped from a
look-back before the period up to the period's end and arrived before that end: the period's
own readings and enough before it to know when the agency last reported as it began.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

_RECEPTIONS = """
    WITH owed AS (
        SELECT g.id AS agency, g.name_vi AS agency_vi, g.name_en AS agency_en,
               k.id AS kpi, k.name_vi AS kpi_vi, k.name_en AS kpi_en, k.report_interval AS every
          FROM agencies g JOIN kpis k ON k.sector = ANY (g.sectors)
         WHERE NOT g.disabled AND k.report_interval IS NOT NULL AND ($3::text IS NULL OR g.id = $3)
    )
    SELECT o.*, coalesce(r.received, '{}') AS received
      FROM owed o LEFT JOIN LATERAL (
           SELECT array_agg(DISTINCT x.received_at ORDER BY x.received_at) AS received
             FROM readings x
            WHERE x.kpi = o.kpi AND x.agency = o.agency
              AND x.ts >= $1::timestamptz - o.every * 2 - $5::interval AND x.ts < $2 AND x.received_at < $2
              AND ($4::text[] IS NULL OR x.area = ANY ($4))) r ON true
     ORDER BY o.agency, o.kpi
"""


async def receptions(conn: asyncpg.Connection, start: datetime, end: datetime, *, agency: str | None = None,
                     areas: Sequence[str] | None = None,
                     look_back: timedelta = timedelta(days=2)) -> list[asyncpg.Record]:
    """Per owed (agency, KPI): agency, agency_vi, agency_en, kpi, kpi_vi, kpi_en, every (the
    interval) and `received` (sorted arrival times). `areas` limits it to readings of those
    units (a unit's report); `agency` to one agency."""
    return await conn.fetch(_RECEPTIONS, start, end, agency, list(areas) if areas is not None else None, look_back)
