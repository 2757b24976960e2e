"""Latest values and bucketed series. Agencies see only their own readings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from ioc.core.catalogue.model import KpiDef
from ioc.core.catalogue.lineage import Source, local_start, series_sources, units_at_level
from ioc.serve.api.security import READERS, Principal, require
from ioc.core.storage import catalogue
from ioc.core.storage import queries

router = APIRouter(prefix="/api/v1", tags=["readings"])


@router.get("/latest")
async def latest(
    request: Request,
    p: Annotated[Principal, Depends(require(*READERS))],
    kpi: Annotated[list[str] | None, Query()] = None,
    sector: Annotated[list[str] | None, Query()] = None,
    area: Annotated[list[str] | None, Query()] = None,
) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn:
        rows = await queries.latest(conn, kpis=kpi, sectors=sector, areas=area, agency=p.agency_id if p.is_agency else None)
    return [dict(r) for r in rows]


def aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise HTTPException(422, detail=f"{name} needs a UTC offset (Z or +07:00)")
    return value


@router.get("/series")
async def series(
    request: Request,
    p: Annotated[Principal, Depends(require(*READERS))],
    kpi: str,
    bucket: str = "1h",
    area: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    level: str | None = None,
    as_of: Annotated[datetime | None, Query(description="the series as it was known at this instant "
                                                         "(the time machine: later arrivals and corrections left out)")] = None,
) -> dict[str, Any]:
    """Aggregates per bucket over `area` and, before a reform, the units it succeeded
    (`sources`); with `level` (e.g. commune) over the units at that level below them instead.
    The sum for counters, sum(numerator) / sum(denominator) for ratios (null with a `reason`
    where bare percentages would have to be averaged), the mean for gauges."""
    if level is not None and (area is None or level not in LEVELS):
        raise HTTPException(422, detail=f"level needs an area and is one of {', '.join(LEVELS)}")
    state = request.app.state
    end = aware(end, "end") if end else datetime.now(timezone.utc)
    if not queries.EARLIEST < end <= queries.LATEST:
        raise HTTPException(422, detail="end must lie between 2000 and 2100")
    start = aware(start, "start") if start else end - timedelta(days=7)
    if as_of is not None:
        as_of = aware(as_of, "as_of")
        if as_of > datetime.now(timezone.utc) + timedelta(seconds=1):
            raise HTTPException(422, detail="as_of is in the future: it shows what was known in the past")
    try:
        b = queries.parse_bucket(bucket)
    except queries.QueryError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    async with state.pool.acquire() as conn:
        k = await readable_kpi(conn, p, kpi)
    # both modes: TimescaleDB's real-time tail begins at its watermark, so an hour the
    # ingest touched below it shows only once refreshed (README, "Storage"). Shared by the
    # requests waiting at the same time, and waited for without holding a connection.
    if b.unit != "m" and not p.is_agency and as_of is None:
        await state.rollup_flight.refresh(kpi)
    async with state.pool.acquire() as conn:
        sources = await area_sources(conn, area, level, state.timezone) if area is not None else None
        try:
            points = await queries.series(
                conn, kpi=kpi, kind=k.kind, area=area, start=start, end=end, bucket=b,
                timezone=state.timezone, agency=p.agency_id if p.is_agency else None, sources=sources,
                known_at=as_of,
            )
        except queries.QueryError as exc:
            raise HTTPException(422, detail=str(exc)) from None
    start, end = queries.align(b, start, end, state.timezone)
    return {"kpi": kpi, "area": area, "level": level, "bucket": bucket, "start": start, "end": end, "unit": k.unit,
            "unit_vi": k.unit, "unit_en": k.unit_en or k.unit, "aggregate": AGGREGATES[k.kind], "points": points,
            "sources": None if sources is None else [
                {"area": x.area, "share": x.share,
                 "since": None if x.since <= queries.EARLIEST else x.since,
                 "until": None if x.until >= queries.LATEST else x.until} for x in sources]}


async def readable_kpi(conn: Any, p: Principal, kpi: str) -> KpiDef:
    """The KPI's definition, if it exists and `p` may read it (an agency: its sectors only)."""
    k = await catalogue.get_kpi(conn, kpi)
    if k is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown kpi {kpi[:80]!r}")
    if p.is_agency and k.sector not in (p.sectors or ()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this KPI belongs to another agency's sector")
    return k


AGGREGATES = {"counter": "sum", "ratio": "sum(numerator) / sum(denominator)", "gauge": "mean"}
LEVELS = ("province", "district", "commune", "zone")


async def area_sources(conn: Any, area: str, level: str | None, tz_name: str) -> list[queries.SeriesSource]:
    """The area and the units it succeeded (or the units at `level` below them), as the time
    spans their readings count for."""
    areas = await catalogue.list_areas(conn)
    successions = await catalogue.list_successions(conn)
    found = series_sources(area, areas, successions)
    if level is not None:
        found = units_at_level(found, level, areas, successions)
    return to_series_sources(found, ZoneInfo(tz_name))


def to_series_sources(found: Sequence[Source], tz: ZoneInfo) -> list[queries.SeriesSource]:
    """Lineage's local days as the instants the queries compare readings with."""
    return [
        queries.SeriesSource(
            x.code, x.share,
            max(local_start(x.since, tz) or queries.EARLIEST, queries.EARLIEST),
            min(local_start(x.until, tz) or queries.LATEST, queries.LATEST),
        )
        for x in found
    ]
