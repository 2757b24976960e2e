"""The KPI catalogue and administrative areas: read by everyone, changed by admins."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from ioc.serve.api.security import READERS, Principal, require
from ioc.core.storage import catalogue as store
from ioc.core.catalogue.model import Area, KpiDef, Sector

router = APIRouter(prefix="/api/v1", tags=["catalogue"])


@router.get("/sectors", response_model=list[Sector])
async def sectors(request: Request, _: Annotated[Principal, Depends(require(*READERS))]) -> list[Sector]:
    async with request.app.state.pool.acquire() as conn:
        return await store.list_sectors(conn)


@router.get("/kpis", response_model=list[KpiDef])
async def kpis(
    request: Request,
    _: Annotated[Principal, Depends(require(*READERS))],
    sector: Annotated[list[str] | None, Query()] = None,
) -> list[KpiDef]:
    async with request.app.state.pool.acquire() as conn:
        return await store.list_kpis(conn, sector)


@router.get("/kpis/{kpi_id}", response_model=KpiDef)
async def kpi(request: Request, kpi_id: str, _: Annotated[Principal, Depends(require(*READERS))]) -> KpiDef:
    async with request.app.state.pool.acquire() as conn:
        found = await store.get_kpi(conn, kpi_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown kpi {kpi_id[:80]!r}")
    return found


@router.put("/kpis/{kpi_id}", response_model=KpiDef)
async def put_kpi(
    request: Request,
    response: Response,
    kpi_id: str,
    body: KpiDef,
    p: Annotated[Principal, Depends(require("admin"))],
) -> KpiDef:
    """Create or change an indicator. The ingest picks the change up within a second."""
    if body.id != kpi_id:
        raise HTTPException(422, detail="the id in the body must match the URL")
    try:
        async with request.app.state.pool.acquire() as conn:
            created = await store.upsert_kpi(conn, body, actor=p.username)
    except asyncpg.ForeignKeyViolationError:
        raise HTTPException(422, detail=f"unknown sector {body.sector!r}") from None
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return body


@router.get("/areas", response_model=list[Area])
async def areas(
    request: Request,
    _: Annotated[Principal, Depends(require(*READERS))],
    level: str | None = None,
    parent: str | None = None,
    on: date | None = None,
) -> list[Area]:
    """Area versions (a reform reuses codes: a unit is its code and validity period); with
    `on` (a local date, YYYY-MM-DD) only those valid that day."""
    async with request.app.state.pool.acquire() as conn:
        return await store.list_areas(conn, level=level, parent=parent, on=on)
