"""The wall for operators: layouts, switching, pinning cameras, alerts, kiosk tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from ioc.core import accounts
from ioc.serve.api.routes_recordings import clip_url
from ioc.serve.api.security import STAFF, VIEWERS, Principal, require
from ioc.serve.wall.layout import LayoutError, parse_layout
from ioc.serve.wall.alerts import SHOWN
from ioc.serve.wall.node import WallNode
from ioc.core.storage import alerts as alert_store
from ioc.core.storage import audit
from ioc.core.storage import cameras as camera_store
from ioc.core.storage import wall as wall_store

router = APIRouter(prefix="/api/v1", tags=["wall"])
OPERATORS = ("admin", "operator")


def _node(request: Request) -> WallNode:
    node: WallNode | None = request.app.state.wall
    if node is None:
        raise HTTPException(503, detail="the wall hub is off: set IOC_MQTT_URL (and IOC_WALL_PORT > 0)")
    return node


@router.get("/wall/hub")
async def hub_address(request: Request) -> dict[str, Any]:
    """Where pages open their websocket (no secret here: the hub asks for a token)."""
    s = request.app.state.settings
    return {"url": s.wall_public_url, "port": s.wall_port, "path": "/ws", "enabled": request.app.state.wall is not None}


class LayoutSummary(BaseModel):
    id: str
    name_vi: str
    name_en: str
    tiles: int
    preset: bool
    saved: bool


@router.get("/wall/layouts")
async def layouts(request: Request, _: Annotated[Principal, Depends(require(*VIEWERS))]) -> list[LayoutSummary]:
    node = _node(request)
    return [LayoutSummary(id=k, name_vi=v.name_vi, name_en=v.name_en, tiles=len(v.tiles),
                          preset=k in node.presets, saved=k in node.hub.saved)
            for k, v in sorted(node.hub.layouts().items())]


@router.get("/wall/layouts/{layout_id}")
async def layout(request: Request, layout_id: str, _: Annotated[Principal, Depends(require(*VIEWERS))]) -> dict[str, Any]:
    found = _node(request).hub.find_layout(layout_id)
    if found is None:
        raise HTTPException(404, detail=f"no layout {layout_id!r}")
    return found.model_dump(mode="json")


@router.put("/wall/layouts/{layout_id}")
async def save_layout(request: Request, layout_id: str, body: dict[str, Any],
                      p: Annotated[Principal, Depends(require(*OPERATORS))]) -> dict[str, Any]:
    node = _node(request)
    if body.get("id", layout_id) != layout_id:
        raise HTTPException(422, detail="the layout's id must match the address")
    try:
        new = parse_layout({**body, "id": layout_id})
    except LayoutError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    async with request.app.state.pool.acquire() as conn:
        await wall_store.save_layout(conn, layout_id, new.model_dump(mode="json"), p.username)
        state = None
        if node.hub.state.layout == layout_id:  # the wall shows it: show the new version
            state = await wall_store.change_state(conn, layout=None, pins=None, delay_s=0, actor=p.username,
                                                  default_layout=layout_id, layout_doc=new.model_dump(mode="json"))
    node.layout_saved(new, layout_id)
    node.warn_unknown_cameras(new)
    if state is not None:
        node.publish_state(state, new)
    return new.model_dump(mode="json")


@router.delete("/wall/layouts/{layout_id}", status_code=204)
async def delete_layout(request: Request, layout_id: str, p: Annotated[Principal, Depends(require(*OPERATORS))]) -> Response:
    node = _node(request)
    async with request.app.state.pool.acquire() as conn:
        gone = await wall_store.delete_layout(conn, layout_id, p.username)
    if not gone:
        raise HTTPException(404, detail=f"no saved layout {layout_id!r} (presets cannot be deleted)")
    node.layout_saved(None, layout_id)
    return Response(status_code=204)


def _state_out(node: WallNode) -> dict[str, Any]:
    s = node.hub.state
    return {"layout": s.layout, "version": s.version, "at": s.at, "pins": s.pins,
            "replay": s.replay.as_dict() if s.replay else None}


@router.get("/wall/state")
async def wall_state(request: Request, _: Annotated[Principal, Depends(require(*VIEWERS))]) -> dict[str, Any]:
    return _state_out(_node(request))


class SwitchIn(BaseModel):
    layout: str = Field(max_length=64)
    delay_s: float | None = Field(None, ge=0, le=60)


@router.post("/wall/switch")
async def switch(request: Request, body: SwitchIn, p: Annotated[Principal, Depends(require(*OPERATORS))]) -> dict[str, Any]:
    node = _node(request)
    target = node.hub.find_layout(body.layout)
    if target is None:
        raise HTTPException(404, detail=f"no layout {body.layout!r}")
    delay = body.delay_s if body.delay_s is not None else request.app.state.settings.wall_switch_delay_s
    async with request.app.state.pool.acquire() as conn:
        state = await wall_store.change_state(conn, layout=body.layout, pins=None, delay_s=delay, actor=p.username,
                                              default_layout=node.hub.state.layout,
                                              layout_doc=target.model_dump(mode="json"))
    node.publish_state(state, target)
    return _state_out(node)


class PinIn(BaseModel):
    tile: str = Field(max_length=64)
    camera: str | None = Field(max_length=64)


@router.post("/wall/pin")
async def pin(request: Request, body: PinIn, p: Annotated[Principal, Depends(require(*OPERATORS))]) -> dict[str, Any]:
    node = _node(request)
    base = node.hub.find_layout(node.hub.state.layout)
    if base is None or base.tile(body.tile) is None:
        raise HTTPException(404, detail=f"the current layout has no tile {body.tile!r}")
    async with request.app.state.pool.acquire() as conn:
        if body.camera is not None and not await camera_store.camera_exists(conn, body.camera):
            raise HTTPException(404, detail=f"no camera {body.camera!r}")
        state = await wall_store.change_state(conn, layout=None, pins={body.tile: body.camera}, delay_s=0,
                                              actor=p.username, default_layout=node.hub.state.layout,
                                              layout_doc=base.model_dump(mode="json"))
    node.publish_state(state, base)
    return _state_out(node)


@router.get("/wall/screens")
async def screens(request: Request, _: Annotated[Principal, Depends(require(*OPERATORS))]) -> list[dict[str, Any]]:
    return _node(request).hub.screens()


class ScreenTokenIn(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{1,31}$", description="e.g. screen-5")


@router.post("/wall/screen-tokens")
async def screen_token(request: Request, body: ScreenTokenIn, p: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
    """A long-lived token for one kiosk browser; `ioc user disable <name>` revokes it."""
    state = request.app.state
    async with state.pool.acquire() as conn:
        user = await accounts.get_user(conn, body.name)
        if user is None:
            await accounts.create_user(conn, body.name, role=accounts.SCREEN_ROLE, actor=p.username,
                                    display_name=f"Wall {body.name}")
            user = await accounts.get_user(conn, body.name)
        elif user.role != accounts.SCREEN_ROLE:
            raise HTTPException(409, detail=f"{body.name!r} is a {user.role} account, not a screen")
        assert user is not None
        await audit.record(conn, p.username, "wall.screen_token", body.name, {})
    token, ttl = state.issuer.issue(user, ttl_s=state.settings.wall_screen_token_days * 86400)
    return {"name": body.name, "token": token, "expires_in": ttl}


@router.get("/alerts")
async def alerts(request: Request, _: Annotated[Principal, Depends(require(*STAFF))], open: bool = False,
                 limit: int = SHOWN) -> list[dict[str, Any]]:
    """Open alerts first, then the newest ended ones: by default the very list the wall's
    alerts tiles carry, so that a page refreshing it by REST agrees with the hub; an alert
    that names a camera links to its `clip`."""
    async with request.app.state.pool.acquire() as conn:
        rows = await alert_store.recent(conn, open_only=open, limit=max(1, min(limit, 500)))
    for row in rows:
        if row["camera"]:
            start = datetime.fromisoformat(row["started_at"])
            end = datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None
            row["clip"] = clip_url(request, row["camera"], start, end)
    return rows


@router.post("/alerts/{alert_id}/ack")
async def ack(request: Request, alert_id: int, p: Annotated[Principal, Depends(require(*OPERATORS))]) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn:
        done = await alert_store.acknowledge(conn, alert_id, p.username)
    if done is None:
        raise HTTPException(404, detail=f"no alert {alert_id}")
    node: WallNode | None = request.app.state.wall
    if node is not None:
        await node.alerts.refresh()
    return done
