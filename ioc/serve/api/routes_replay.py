"""The time machine: the wall as it was at a past instant, and replays of it on the screens.

`GET /wall/at?t=` answers what the screens showed at `t`: the layout and pins in force
then, each KPI tile's value as it was known then (a correction received later is not shown
until its time) under the indicator's definition then (its names, unit and target, from the
audit log), the alerts open then, and for each camera tile the recorded segment that
holds `t` with the offset to seek to, of its main stream (`recording`) and, where it was
recorded, of its sub-stream (`recording_sub`), with the stream a live tile of its size would
play (`stream`, the hub's rule): a small tile plays the small picture. `POST /wall/replay` puts the nine screens into a
replay of the past (or the console's mini-wall alone: `scope: console`), changes its speed,
pauses, steps, seeks, and returns the wall to live; a change reaches every screen at the
same instant, like a layout switch, and is audited with who made it.

Instants are UTC on the wire (ISO 8601 with an offset; a time without one is refused); the
answer also gives `t` in the wall's time zone (`IOC_TIMEZONE`, Asia/Ho_Chi_Minh).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from functools import cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from ioc.core.catalogue.model import KpiDef
from ioc.core.catalogue.shipped import shipped_catalogue
from ioc.core.contracts.wall import Replay
from ioc.core.storage import alerts as alert_store
from ioc.core.storage import audit, past
from ioc.core.storage import recordings as recording_store
from ioc.core.storage import wall as wall_store
from ioc.serve.api.routes_recordings import segment_at_out
from ioc.serve.api.security import Principal, require
from ioc.serve.api.wall_past import layout_at
from ioc.serve.wall import tiledata
from ioc.serve.wall.hub import tile_stream
from ioc.serve.wall.layout import SCREENS, Layout, LayoutError, Tile
from ioc.serve.wall.node import WallNode
from ioc.serve.wall.tiledata import KpiMeta

log = logging.getLogger("ioc.replay")
router = APIRouter(prefix="/api/v1", tags=["time machine"])
OPERATORS = ("admin", "operator")
UTC = timezone.utc
MAX_SPEED = 16.0
SETTLE_S = 2.0  # past a segment's length, how old an instant is before its recordings are indexed
PAST_MAX_BYTES = 512 * 1024  # the largest past sent with a replay: a quarter of the broker's 2 MB packet limit


def _node(request: Request) -> WallNode:
    node: WallNode | None = request.app.state.wall
    if node is None:
        raise HTTPException(503, detail="the wall hub is off: set IOC_MQTT_URL (and IOC_WALL_PORT > 0)")
    return node


def _aware(v: datetime, name: str) -> datetime:
    if v.tzinfo is None:
        raise HTTPException(422, detail=f"{name} needs a time zone (e.g. 2026-03-01T17:42:00+07:00)")
    return v.astimezone(UTC)


def metas_then(now: dict[str, KpiMeta], changed: dict[str, dict[str, Any] | None],
               shipped: Callable[[], dict[str, KpiDef]]) -> dict[str, KpiMeta]:
    """The indicators as they were defined at an instant (`changed`, from
    `past.kpi_definitions_at`): their definition then, or, changed only after the instant by
    a change the audit log recorded without the definition it replaced, the one they shipped
    with (one created after it: as now); the rest as now. Read from the audit log, not the
    hub's catalogue, which may lag a change by its refresh."""
    out = dict(now)
    ship: dict[str, KpiDef] | None = None
    for kpi, doc in changed.items():
        if doc is None:
            ship = shipped() if ship is None else ship
            if kpi not in ship:
                continue
            doc = ship[kpi].model_dump(mode="json")
        out[kpi] = tiledata.meta_of(doc)
    return out


@cache
def _shipped_kpis() -> dict[str, KpiDef]:
    return {k.id: k for k in shipped_catalogue()[1]}


async def _kpi_tile(conn: Any, metas: dict[str, KpiMeta], tile: Tile, at: datetime) -> dict[str, Any]:
    known = await past.reading_known_at(conn, tile.kpi or "", tile.area or "", at)
    if known is None:
        return {"kpi": tile.kpi, "area": tile.area, "value": None, "ts": None}
    live = {"kpi": tile.kpi, "area": tile.area, "value": known["value"], "ts": known["ts"].isoformat()}
    data = tiledata.kpi_data(metas.get(tile.kpi or ""), live, known["previous"])
    data.update(revision=known["revision"], received_at=known["received_at"].isoformat())
    return data


async def _camera_tiles(conn: Any, node: WallNode, layout: Layout, tiles: list[Tile], at: datetime,
                        on_screen: bool) -> dict[str, dict[str, Any]]:
    """Every camera tile's recordings at `at`, both streams, in one query for the lot."""
    cams = [t for t in tiles if t.kind == "camera" and t.camera]
    found = await recording_store.around(conn, [t.camera or "" for t in cams], at) if cams else {}
    out: dict[str, dict[str, Any]] = {}
    for tile in cams:
        cam = tile.camera or ""
        main = found.get((cam, "main"))
        data: dict[str, Any] = {"camera": cam, "name": node.hub.camera_names.get(cam, cam),
                                "stream": tile_stream(tile, layout, on_screen),
                                "recording": segment_at_out(main, at),
                                "recording_sub": segment_at_out(found.get((cam, "sub")), at)}
        if data["recording"] is None:
            before, after = (main["before"], main["after"]) if main else (None, None)
            data["gap"] = {"nearest_before": before.isoformat() if before else None,
                           "nearest_after": after.isoformat() if after else None}
        out[tile.id] = data
    return out


async def past_wall(conn: Any, node: WallNode, tz: str, at: datetime, screen: int | None,
                    on_screen: bool) -> tuple[Layout, dict[str, Any]]:
    """The wall (or one screen's part) as it was at `at`; `on_screen`: for a wall screen
    (its large camera tiles play the main stream)."""
    layout, info = await layout_at(conn, node.hub, at)
    try:
        tiles = layout.tiles_for(screen)
        region = layout.region(screen) if screen else None
    except LayoutError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    open_alerts = await alert_store.open_at(conn, at)
    data: dict[str, Any] = await _camera_tiles(conn, node, layout, tiles, at, on_screen)
    kpis = [t.kpi for t in tiles if t.kind == "kpi" and t.kpi]
    changed = await past.kpi_definitions_at(conn, kpis, at) if kpis else {}
    metas = metas_then(node.hub.kpi_meta, changed, _shipped_kpis) if changed else node.hub.kpi_meta
    for t in tiles:
        if t.kind == "kpi":
            data[t.id] = await _kpi_tile(conn, metas, t, at)
        elif t.kind == "alerts":
            data[t.id] = {"alerts": open_alerts}
        elif t.kind in ("clock", "text"):
            data[t.id] = tiledata.static_data(t)
        elif t.kind == "chart":
            data[t.id] = {**tiledata.chart_data(t, None), "until": at.isoformat()}
    doc = layout.model_dump(mode="json")
    doc["tiles"] = [t.model_dump(mode="json") for t in tiles]
    return layout, {"t": at.isoformat(), "t_local": at.astimezone(ZoneInfo(tz)).isoformat(), "timezone": tz,
                    "epoch": at.timestamp(), "state": info, "layout": doc,
                    "region": region.model_dump() if region else None, "tiles": data, "alerts": open_alerts}


async def wall_at(request: Request, at: datetime, screen: int | None, on_screen: bool = False) -> dict[str, Any]:
    """`on_screen`: asked by a wall screen (its large camera tiles play the main stream)."""
    node = _node(request)
    async with request.app.state.pool.acquire() as conn:
        _, doc = await past_wall(conn, node, request.app.state.settings.timezone, at, screen, on_screen)
    return doc


async def screens_past(conn: Any, node: WallNode, tz: str, at: datetime) -> dict[str, Any]:
    """The whole wall at `at` as the screens see it, with each screen's part (`screens`:
    its region and tile ids): sent with a replay's start, so the nine screens show the past
    without each asking `/wall/at` first."""
    layout, doc = await past_wall(conn, node, tz, at, None, True)
    doc["screens"] = {str(n): {"region": layout.region(n).model_dump(), "tiles": [t.id for t in layout.tiles_for(n)]}
                      for n in range(1, SCREENS + 1)}
    return doc


@router.get("/wall/at")
async def wall_at_route(request: Request, t: datetime,
                        p: Annotated[Principal, Depends(require("admin", "operator", "leader", "screen"))],
                        screen: int | None = None) -> dict[str, Any]:
    """The wall as it was at instant `t` (all of it, or one screen's part with `screen`).
    Wall screens may ask only while the wall shows a replay."""
    if p.role == "screen" and not _node(request).hub.replay_open():
        raise HTTPException(403, detail="a wall screen may look at the past only while the wall replays it")
    at = _aware(t, "t")
    if at.timestamp() > time.time() + 1:
        raise HTTPException(422, detail="t is in the future: the time machine shows the past")
    if screen is not None and not 1 <= screen <= 9:
        raise HTTPException(422, detail="screen must be 1-9")
    return await wall_at(request, at, screen, on_screen=p.role == "screen")


class ReplayIn(BaseModel):
    action: Literal["start", "pause", "resume", "speed", "step", "seek", "live"]
    t: datetime | None = Field(None, description="start, seek: the instant to show (with its time zone)")
    speed: float | None = Field(None, ge=1, le=MAX_SPEED, description="1 to 16 times real time")
    step_s: float = Field(1.0, ge=-3600, le=3600, description="step: how far to move (paused)")
    paused: bool = Field(False, description="start: paused at t (then step, resume)")
    scope: Literal["wall", "console"] = Field("wall", description="console: the operator's mini-wall only")
    delay_s: float | None = Field(None, ge=0, le=60, description="how far ahead the change is announced "
                                  "(default IOC_WALL_SWITCH_DELAY_S): the screens get ready meanwhile")


def _next(cur: Replay | None, body: ReplayIn, at: float, actor: str) -> Replay | None:
    """The replay after the operator's action; every change takes effect at `at`."""
    if body.action == "live":
        return None
    if body.action == "start":
        if body.t is None:
            raise HTTPException(422, detail="start needs t")
        return Replay(_aware(body.t, "t").timestamp(), at, body.speed or 1.0, body.paused, actor)
    if cur is None:
        raise HTTPException(409, detail="the wall is live: start a replay first")
    pos = min(cur.position(at), at)  # a replay that caught up with the present stays there
    speed = body.speed or cur.speed
    if body.action == "pause":
        return Replay(pos, at, speed, True, actor)
    if body.action == "resume":
        return Replay(pos, at, speed, False, actor)
    if body.action == "speed":
        return Replay(pos, at, speed, cur.paused, actor)
    if body.action == "step":
        return Replay(pos + body.step_s, at, speed, True, actor)
    if body.t is None:
        raise HTTPException(422, detail="seek needs t")
    return Replay(_aware(body.t, "t").timestamp(), at, speed, cur.paused, actor)


@router.post("/wall/replay")
async def replay(request: Request, body: ReplayIn, p: Annotated[Principal, Depends(require(*OPERATORS))]) -> dict[str, Any]:
    """Replay the past on the nine screens (or preview it on the console), at 1x-16x, pause,
    step, seek, or `live`: every screen changes together at the answer's `at`."""
    node = _node(request)
    delay = body.delay_s if body.delay_s is not None else request.app.state.settings.wall_switch_delay_s
    now = time.time()
    at = now + delay
    if body.scope == "console":  # the operator's own preview: nothing changes on the screens
        t = _aware(body.t, "t").isoformat() if body.t is not None else None
        async with request.app.state.pool.acquire() as conn:
            await audit.record(conn, p.username, "wall.replay_preview", "wall", {"action": body.action, "t": t})
        return {"scope": "console", "action": body.action, "t": t, "at": now}
    new = _next(node.hub.state.replay, body, at, p.username)
    if new is not None and new.t > at + 1:
        raise HTTPException(422, detail="that instant is in the future: the time machine shows the past")
    async with request.app.state.pool.acquire() as conn:
        settings = request.app.state.settings
        past = await _past_for_screens(conn, node, settings.timezone, new, settings.recording_segment_s + SETTLE_S)
        state = await wall_store.change_replay(
            conn, new, actor=p.username, default_layout=node.hub.state.layout, action="wall.replay",
            details={"action": body.action, "t": _iso(new.t) if new else None, "speed": new.speed if new else None,
                     "paused": new.paused if new else None, "delay_s": delay})
    base: Layout = node.hub.find_layout(state.layout) or node.hub.default
    node.publish_state(replace(state, past=past), base)
    return {"scope": "wall", "replay": state.replay.as_dict() if state.replay else None, "at": state.at,
            "version": state.version}


async def _past_for_screens(conn: Any, node: WallNode, tz: str, new: Replay | None,
                            settled_s: float) -> dict[str, Any] | None:
    """The wall at the replay's instant, sent with it; without it (it failed) the screens ask
    `/wall/at` themselves, so a failure here slows the start and stops nothing. Only for an
    instant at least `settled_s` old: nearer the present (a replay that caught up and is
    paused, a start announced ahead), the segment holding it is not closed and indexed yet,
    nor every reading in, and the screens ask at the announced instant instead."""
    if new is None or new.t > time.time() - settled_s:
        return None
    try:
        doc = await screens_past(conn, node, tz, datetime.fromtimestamp(new.t, UTC))
        # it travels in the retained wall state and the screens' message: never a value they
        # cannot carry, nor a size that would make the broker drop the node's connection
        size = len(orjson.dumps(doc))
        if size > PAST_MAX_BYTES:
            log.info("the wall's past is too large to send with the replay: the screens will ask for it",
                     extra={"t": _iso(new.t), "user": new.by, "bytes": size})
            return None
        return doc
    except Exception:
        log.warning("the wall's past not sent with the replay: the screens will ask for it",
                    extra={"t": _iso(new.t), "user": new.by}, exc_info=True)
        return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
