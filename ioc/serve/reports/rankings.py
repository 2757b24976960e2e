"""Rankings by unit: for each KPI, the month's rows of /api/v1/breakdown?by=unit for the
report's area, from the same pieces the endpoint uses (the units below the area across the
reform, `queries.totals`, the endpoint's ranking), so every row is the API's."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from ioc.core.catalogue.lineage import level_below, series_sources, units_below
from ioc.core.ranking import empty_cell, rank_rows
from ioc.core.catalogue.model import KpiDef
from ioc.core.storage import catalogue, queries
from ioc.serve.api.routes_readings import to_series_sources
from ioc.serve.reports.model import Ranking, RankRow


async def rankings(conn: asyncpg.Connection, kpis: Sequence[KpiDef], *, area: str, start: datetime, end: datetime,
                   timezone: str, pool: asyncpg.Pool | None = None, parallel: int = 1) -> list[Ranking]:
    """One ranking per KPI that a unit below the area reported over [start, end) (local
    midnights), rows best first. With a `pool` and `parallel` > 1, that many KPIs are
    queried at once on connections of their own (a province's 30 KPIs x 500 communes is
    database work that PostgreSQL spreads over its cores)."""
    tz = ZoneInfo(timezone)
    first, last = start.astimezone(tz).date(), (end.astimezone(tz) - timedelta(days=1)).date()
    areas = await catalogue.list_areas(conn)
    successions = await catalogue.list_successions(conn)
    level = level_below(area, first, last, areas, successions)
    units = units_below(area, level, first, last, areas, successions) if level else []
    if not units:
        return []
    groups = [queries.Group(u.code, to_series_sources(series_sources(u.code, areas, successions), tz)) for u in units]
    gate = asyncio.Semaphore(max(1, parallel))

    async def figures(k: KpiDef) -> dict[str, dict[str, object]]:
        if pool is None or parallel <= 1:
            return await queries.totals(conn, kpi=k.id, kind=k.kind, groups=groups, start=start, end=end, agency=None)
        async with gate, pool.acquire() as own:
            return await queries.totals(own, kpi=k.id, kind=k.kind, groups=groups, start=start, end=end, agency=None)

    if pool is None or parallel <= 1:
        all_found = [await figures(k) for k in kpis]
    else:
        all_found = await asyncio.gather(*(figures(k) for k in kpis))
    out = []
    for k, found in zip(kpis, all_found):
        rows: list[dict[str, Any]] = [{"code": u.code, "name_vi": u.name_vi, "name_en": u.name_en,
                                       **(found.get(u.code) or empty_cell())} for u in units]
        rank_rows(rows, k)
        if rows[0]["value"] is None:
            continue  # no unit below reported it: nothing to rank
        out.append(Ranking(k.id, k.name_vi, k.name_en, k.unit, k.unit_en or k.unit, level or "", [
            RankRow(r["rank"], r["code"], r["name_vi"], r["name_en"], r["value"], r["status"]) for r in rows]))
    return out
