"""Latest values and bucketed series. Agencies see only their own readings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from ioc.serve.api.security import READERS, Principal, require
from ioc.core.storage import catalogue
from ioc.core.storage import queries, rollups

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


def _aware(value: datetime, name: str) -> datetime:
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
) -> dict[str, Any]:
    """Aggregates per bucket (`value`: the sum for counters, the mean for gauges and ratios)."""
    state = request.app.state
    end = _aware(end, "end") if end else datetime.now(timezone.utc)
    if not queries.EARLIEST < end <= queries.LATEST:
        raise HTTPException(422, detail="end must lie between 2000 and 2100")
    start = _aware(start, "start") if start else end - timedelta(days=7)
    try:
        b = queries.parse_bucket(bucket)
    except queries.QueryError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    async with state.pool.acquire() as conn:
        k = await catalogue.get_kpi(conn, kpi)
        if k is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown kpi {kpi[:80]!r}")
        if p.is_agency and k.sector not in (p.sectors or ()):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this KPI belongs to another agency's sector")
        # both modes: TimescaleDB's real-time tail begins at its watermark, so an hour the
        # ingest touched below it shows only once refreshed (README, "Storage")
        if b.unit != "m" and not p.is_agency:
            await rollups.refresh(conn, state.mode, state.timezone, kpi=kpi)
        try:
            points = await queries.series(
                conn, kpi=kpi, kind=k.kind, area=area, start=start, end=end, bucket=b,
                timezone=state.timezone, agency=p.agency_id if p.is_agency else None,
            )
        except queries.QueryError as exc:
            raise HTTPException(422, detail=str(exc)) from None
    start, end = queries.align(b, start, end, state.timezone)
    return {"kpi": kpi, "area": area, "bucket": bucket, "start": start, "end": end, "unit": k.unit,
            "unit_vi": k.unit, "unit_en": k.unit_en or k.unit,
            "aggregate": "sum" if k.kind == "counter" else "mean", "points": points}
