"""Cameras for the console and the wall: current status, snapshot, history, events, uptime per day."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from ioc.core.storage import cameras as camera_store
from ioc.core.storage.cameras import uptime_per_day
from ioc.core.cameras import Camera, RegistryError
from ioc.core.storage import audit
from ioc.core.contracts import camera as camera_contract
from ioc.core.contracts import topics
from ioc.serve.api.routes_recordings import clip_url
from ioc.serve.api.security import VIEWERS, Principal, require

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])


async def _known(request: Request, camera_id: str) -> None:
    async with request.app.state.pool.acquire() as conn:
        if not await camera_store.camera_exists(conn, camera_id):
            raise HTTPException(404, detail=f"unknown camera {camera_id[:80]!r}")


@router.get("")
async def cameras(request: Request, _: Annotated[Principal, Depends(require(*VIEWERS))]) -> list[dict[str, Any]]:
    """Every camera with its latest status (credentials are never stored here)."""
    async with request.app.state.pool.acquire() as conn:
        return await camera_store.cameras_with_status(conn)


@router.get("/{camera_id}/history")
async def status_history(
    request: Request, camera_id: str, _: Annotated[Principal, Depends(require(*VIEWERS))],
    start: datetime | None = None, end: datetime | None = None, limit: int = 500,
) -> list[dict[str, Any]]:
    await _known(request, camera_id)
    end = end or datetime.now(timezone.utc)
    start = start or end - timedelta(days=1)
    async with request.app.state.pool.acquire() as conn:
        return await camera_store.status_history(conn, camera_id, start, end, max(1, min(limit, 5000)))


@router.get("/{camera_id}/events")
async def events(
    request: Request, camera_id: str, _: Annotated[Principal, Depends(require(*VIEWERS))],
    open_only: bool = False, limit: int = 200,
) -> list[dict[str, Any]]:
    """Fault events, newest first, each with its `clip` (the export of the recording around it)."""
    await _known(request, camera_id)
    async with request.app.state.pool.acquire() as conn:
        rows = await camera_store.events(conn, camera_id, open_only=open_only, limit=max(1, min(limit, 2000)))
    return [{**r, "clip": clip_url(request, camera_id, r["started_at"], r["ended_at"])} for r in rows]


@router.get("/{camera_id}/uptime")
async def uptime(
    request: Request, camera_id: str, _: Annotated[Principal, Depends(require(*VIEWERS))], days: int = 7,
) -> list[dict[str, Any]]:
    """Share of each local day the camera was online, over the days it was watched."""
    await _known(request, camera_id)
    days = max(1, min(days, 366))
    end = datetime.now(timezone.utc)
    async with request.app.state.pool.acquire() as conn:
        return await uptime_per_day(conn, camera_id, end - timedelta(days=days), end, request.app.state.timezone)


@router.get("/{camera_id}/snapshot", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no picture yet"}})
async def snapshot(
    request: Request, camera_id: str, _: Annotated[Principal, Depends(require(*VIEWERS))],
    size: Literal["sd", "hd"] = "sd",
) -> Response:
    """The newest tile the camera service published (the hub keeps it; nothing is decoded here).

    `X-Captured-At` (epoch seconds) says how old it is and `X-Camera-State` whether the
    camera is online now: a picture of a camera that went offline is still its last one.
    """
    node = request.app.state.wall
    if node is None:
        raise HTTPException(503, detail="snapshots come through the wall hub: set IOC_MQTT_URL")
    await _known(request, camera_id)
    hub = node.hub
    pic = hub.cam_picture.get((camera_id, size)) or hub.cam_picture.get((camera_id, "sd"))
    if pic is None:
        raise HTTPException(404, detail=f"no picture from camera {camera_id!r} yet")
    head, jpeg, _ = pic
    status = hub.cam_status.get(camera_id) or {}
    return Response(jpeg, media_type="image/jpeg", headers={
        "Cache-Control": "no-store", "X-Captured-At": f"{head.get('captured_at', 0):.3f}",
        "X-Camera-State": str(status.get("state", "unknown")), "X-Frame-Seq": str(head.get("seq", "")),
    })


def _camera_from(body: dict[str, Any], camera_id: str | None = None) -> Camera:
    if camera_id is not None:
        if body.get("id", camera_id) != camera_id:
            raise HTTPException(422, detail="the camera's id must match the address")
        body = {**body, "id": camera_id}
    try:
        return camera_store.parse_camera(body)
    except RegistryError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def _public(cam: Camera) -> dict[str, Any]:
    """What the API says of a camera: never its credentials."""
    return {"id": cam.id, "name": cam.name, "lat": cam.lat, "lon": cam.lon, "area": cam.area,
            "stream_url": cam.stream_url, "mode": cam.mode, "tags": list(cam.tags), "source": "api",
            "has_credentials": cam.username is not None}


async def _put(request: Request, cam: Camera, actor: str, *, create: bool) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn:
        try:
            await camera_store.put_camera(conn, cam, actor, create=create)
        except camera_store.CameraConflict as exc:
            raise HTTPException(409, detail=str(exc)) from None
        except LookupError:
            raise HTTPException(404, detail=f"unknown camera {cam.id!r}") from None
    return _public(cam)


@router.post("", status_code=201)
async def add_camera(request: Request, body: dict[str, Any], p: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
    """Add a camera (the camera service picks it up within IOC_CAMERA_RELOAD_S)."""
    return await _put(request, _camera_from(body), p.username, create=True)


@router.put("/{camera_id}")
async def change_camera(request: Request, camera_id: str, body: dict[str, Any],
                        p: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
    return await _put(request, _camera_from(body, camera_id), p.username, create=False)


@router.delete("/{camera_id}", status_code=204)
async def remove_camera(request: Request, camera_id: str, p: Annotated[Principal, Depends(require("admin"))]) -> Response:
    async with request.app.state.pool.acquire() as conn:
        try:
            await camera_store.delete_camera(conn, camera_id, p.username)
        except camera_store.CameraConflict as exc:
            raise HTTPException(409, detail=str(exc)) from None
        except LookupError:
            raise HTTPException(404, detail=f"unknown camera {camera_id[:80]!r}") from None
    return Response(status_code=204)


@router.post("/{camera_id}/reference", status_code=202)
async def accept_reference(request: Request, camera_id: str,
                           p: Annotated[Principal, Depends(require("admin", "operator"))]) -> dict[str, Any]:
    """The camera was turned on purpose: its current view becomes the one `scene_changed` compares with."""
    node = request.app.state.wall
    if node is None:
        raise HTTPException(503, detail="commands reach the camera service through the broker: set IOC_MQTT_URL")
    await _known(request, camera_id)
    node.link.publish(topics.camera_reference(camera_id), camera_contract.encode_reference_command(p.username), qos=1)
    async with request.app.state.pool.acquire() as conn:
        await audit.record(conn, p.username, "camera.reference_accepted", camera_id, {})
    return {"camera": camera_id, "status": "sent"}
