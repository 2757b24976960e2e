"""Cameras for the console and the wall: current status, history, events, uptime per day."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from camera.history import uptime_per_day
from ioc.api.security import STAFF, Principal, require

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])


async def _known(request: Request, camera_id: str) -> None:
    async with request.app.state.pool.acquire() as conn:
        if not await conn.fetchval("SELECT true FROM cameras WHERE id = $1", camera_id):
            raise HTTPException(404, detail=f"unknown camera {camera_id[:80]!r}")


@router.get("")
async def cameras(request: Request, _: Annotated[Principal, Depends(require(*STAFF))]) -> list[dict[str, Any]]:
    """Every camera with its latest status (credentials are never stored here)."""
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT c.id, c.name, c.lat, c.lon, c.area, c.stream_url, c.mode, c.tags,
                      s.state, s.healthy, s.flags, s.reason, s.at AS status_since
                 FROM cameras c LEFT JOIN LATERAL (
                      SELECT * FROM camera_status_log l WHERE l.camera = c.id ORDER BY at DESC LIMIT 1) s ON true
                ORDER BY c.id"""
        )
    return [dict(r) for r in rows]


@router.get("/{camera_id}/history")
async def status_history(
    request: Request, camera_id: str, _: Annotated[Principal, Depends(require(*STAFF))],
    start: datetime | None = None, end: datetime | None = None, limit: int = 500,
) -> list[dict[str, Any]]:
    await _known(request, camera_id)
    end = end or datetime.now(timezone.utc)
    start = start or end - timedelta(days=1)
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT at, state, healthy, flags, reason FROM camera_status_log
                WHERE camera = $1 AND at >= $2 AND at < $3 ORDER BY at DESC LIMIT $4""",
            camera_id, start, end, max(1, min(limit, 5000)),
        )
    return [dict(r) for r in rows]


@router.get("/{camera_id}/events")
async def events(
    request: Request, camera_id: str, _: Annotated[Principal, Depends(require(*STAFF))],
    open_only: bool = False, limit: int = 200,
) -> list[dict[str, Any]]:
    await _known(request, camera_id)
    async with request.app.state.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT id, kind, started_at, ended_at, details::text AS details, acknowledged_by, acknowledged_at
                 FROM camera_events WHERE camera = $1 AND (NOT $2 OR ended_at IS NULL)
                ORDER BY started_at DESC LIMIT $3""",
            camera_id, open_only, max(1, min(limit, 2000)),
        )
    return [dict(r) for r in rows]


@router.get("/{camera_id}/uptime")
async def uptime(
    request: Request, camera_id: str, _: Annotated[Principal, Depends(require(*STAFF))], days: int = 7,
) -> list[dict[str, Any]]:
    """Share of each local day the camera was online, over the days it was watched."""
    await _known(request, camera_id)
    days = max(1, min(days, 366))
    end = datetime.now(timezone.utc)
    async with request.app.state.pool.acquire() as conn:
        return await uptime_per_day(conn, camera_id, end - timedelta(days=days), end, request.app.state.timezone)
