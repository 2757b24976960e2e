"""Agencies, dead letters, the audit log and ingest workers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field

from ioc.core.accounts import AccountError, create_agency
from ioc.core.contracts import topics
from ioc.core.storage import accounts as account_store
from ioc.core.storage import audit, ops
from ioc.serve.api.security import Principal, require

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/dead-letters")
async def dead_letters(
    request: Request,
    p: Annotated[Principal, Depends(require("admin", "agency"))],
    agency: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Rejected readings with their reasons, newest first. An agency sees its own only."""
    if p.is_agency:
        if agency not in (None, p.agency_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="an agency reads only its own dead letters")
        agency = p.agency_id
    limit = max(1, min(limit, 1000))
    async with request.app.state.pool.acquire() as conn:
        return await ops.dead_letters(conn, agency=agency, since=since, before_id=before_id, limit=limit)


class AgencyIn(BaseModel):
    id: str
    name_vi: str = Field(min_length=1, max_length=300)
    name_en: str = Field("", max_length=300)
    sectors: list[str] = Field(min_length=1)


@router.get("/agencies")
async def agencies(request: Request, _: Annotated[Principal, Depends(require("admin", "operator"))]) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn:
        return await account_store.agencies_overview(conn)


@router.post("/agencies", status_code=status.HTTP_201_CREATED)
async def add_agency(request: Request, body: AgencyIn, p: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
    """Create an agency. The MQTT password is in this answer only: keep it."""
    try:
        async with request.app.state.pool.acquire() as conn:
            password = await create_agency(conn, body.id, name_vi=body.name_vi, name_en=body.name_en,
                                           sectors=body.sectors, actor=p.username)
    except AccountError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return {"id": body.id, "mqtt_username": body.id, "mqtt_password": password,
            "publish_topic": topics.kpi(body.id), "ack_topic": topics.ack(body.id),
            "note": "run `ioc broker config` (or reload the broker) so the broker knows the new account"}


@router.get("/audit")
async def audit_entries(
    request: Request,
    _: Annotated[Principal, Depends(require("admin"))],
    subject: str | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn:
        return await audit.entries(conn, subject=subject, action=action, limit=limit)


@router.get("/ingest/workers")
async def workers(request: Request, _: Annotated[Principal, Depends(require("admin", "operator"))]) -> list[dict[str, Any]]:
    async with request.app.state.pool.acquire() as conn:
        return await ops.workers(conn)
