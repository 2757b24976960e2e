"""A KPI over a period split by sub-unit or by reporting agency: the numbers behind the map,
the drill-down, the ranking tile and the monthly report (one query, so they agree)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from ioc.core.catalogue.lineage import level_below, series_sources, units_below
from ioc.core.ranking import empty_cell, rank_rows
from ioc.core.storage import accounts, catalogue, queries
from ioc.serve.api.routes_readings import AGGREGATES, LEVELS, aware, readable_kpi, to_series_sources
from ioc.serve.api.security import READERS, Principal, require

router = APIRouter(prefix="/api/v1", tags=["readings"])

MAX_DAYS = 3 * 366  # a breakdown reads daily roll-ups: a few years is what a report compares


@router.get("/breakdown")
async def breakdown(
    request: Request,
    p: Annotated[Principal, Depends(require(*READERS))],
    kpi: str,
    area: str,
    level: Annotated[str | None, Query(description="the rows' level; default: the level below the area's")] = None,
    start: datetime | None = None,
    end: datetime | None = None,
    by: Literal["unit", "agency"] = "unit",
    compare: Literal["none", "year"] = "none",
    as_of: Annotated[datetime | None, Query(description="the figures as known at this instant (the time machine)")] = None,
) -> dict[str, Any]:
    """The KPI over [start, end) (default: this month so far, widened to whole local days)
    for `area` (`total`, the same figure as its series) and for each row: the units at
    `level` below it, across reforms (`by=unit`), or each agency that reported for it
    (`by=agency`). Rows come best first by the KPI's better direction; `rank` counts the rows
    with a value, `status` says whether a row meets the KPI's target. With `compare=year`
    every figure also carries the same days a year earlier (`previous`). `by=agency` splits
    the area's own readings by who sent them, or with `level` the readings of the units at
    that level below it (the figures a ranking is made of)."""
    if level is not None and level not in LEVELS:
        raise HTTPException(422, detail=f"level is one of {', '.join(LEVELS)}")
    state = request.app.state
    tz = ZoneInfo(state.timezone)
    first, last = _days(start, end, tz)
    if as_of is not None and aware(as_of, "as_of") > datetime.now(timezone.utc) + timedelta(seconds=1):
        raise HTTPException(422, detail="as_of is in the future: it shows what was known in the past")
    async with state.pool.acquire() as conn:
        k = await readable_kpi(conn, p, kpi)
        areas = await catalogue.list_areas(conn)
        successions = await catalogue.list_successions(conn)
    if not any(a.code == area for a in areas):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown area {area[:80]!r}")
    if not p.is_agency and as_of is None:
        await state.rollup_flight.refresh(kpi)  # as /series: one refresh for the requests waiting
    async with state.pool.acquire() as conn:
        own = queries.Group(area, to_series_sources(series_sources(area, areas, successions), tz))
        names: dict[str, tuple[str, str]] = {}
        if by == "unit" or level is not None:
            level = level or level_below(area, first, last, areas, successions)
            units = units_below(area, level, first, last, areas, successions) if level else []
            groups = [queries.Group(u.code, to_series_sources(series_sources(u.code, areas, successions), tz))
                      for u in units]
            if by == "unit":
                names = {u.code: (u.name_vi, u.name_en) for u in units}
        else:
            groups = [own]
        agency = p.agency_id if p.is_agency else None

        async def figures(lo: date, hi: date) -> tuple[dict[str, dict[str, object]], dict[str, object] | None]:
            s, e = _instant(lo, tz), _instant(hi + timedelta(days=1), tz)
            try:
                rows = await queries.totals(conn, kpi=kpi, kind=k.kind, groups=groups, start=s, end=e,
                                            agency=agency, by_agency=by == "agency", known_at=as_of)
                total = await queries.totals(conn, kpi=kpi, kind=k.kind, groups=[own], start=s, end=e, agency=agency,
                                             known_at=as_of)
            except queries.QueryError as exc:
                raise HTTPException(422, detail=str(exc)) from None
            return rows, total.get(area)

        rows, total = await figures(first, last)
        prev_rows: dict[str, dict[str, object]] = {}
        previous = None
        if compare == "year":
            p_first, p_last = _year_before(first), _year_before(last)
            prev_rows, prev_total = await figures(p_first, p_last)
            previous = {"start": _instant(p_first, tz), "end": _instant(p_last + timedelta(days=1), tz),
                        "total": prev_total or empty_cell()}
        if by == "agency":
            known = {a["id"]: (a["name_vi"], a["name_en"]) for a in await accounts.agencies_overview(conn)}
            names = {code: known.get(code, (code, code)) for code in rows.keys() | prev_rows.keys()}
    out_rows = [
        {"code": code, "name_vi": vi, "name_en": en, **(rows.get(code) or empty_cell()),
         "previous": (prev_rows.get(code) or empty_cell()) if compare == "year" else None}
        for code, (vi, en) in names.items()
    ]
    rank_rows(out_rows, k)
    return {"kpi": kpi, "area": area, "level": level, "by": by,
            "start": _instant(first, tz), "end": _instant(last + timedelta(days=1), tz),
            "kind": k.kind, "unit": k.unit, "unit_en": k.unit_en or k.unit, "aggregate": AGGREGATES[k.kind],
            "target": k.target, "better": k.better,
            "total": total or empty_cell(), "rows": out_rows, "previous": previous}


def _days(start: datetime | None, end: datetime | None, tz: ZoneInfo) -> tuple[date, date]:
    """The local days [first, last] that [start, end) touches; default this month so far."""
    now = datetime.now(timezone.utc)
    end = aware(end, "end") if end else now
    if not queries.EARLIEST < end <= queries.LATEST:
        raise HTTPException(422, detail="end must lie between 2000 and 2100")
    if start is None:
        local = end.astimezone(tz) - timedelta(microseconds=1)
        start = datetime(local.year, local.month, 1, tzinfo=tz)
    start = aware(start, "start")
    if not queries.EARLIEST <= start < end:
        raise HTTPException(422, detail="start must be before end, from 2000 on")
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    if (last - first).days >= MAX_DAYS:
        raise HTTPException(422, detail=f"a breakdown spans at most {MAX_DAYS} days")
    return first, last


def _instant(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz)


def _year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)
