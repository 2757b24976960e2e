"""Playback: what was recorded, the segment at an instant, a segment's bytes, exports, kept spans.

Operators and admins may do everything here but set modes (admins) and release kept spans
(admins); leaders watch and export but change nothing; agencies get 403, and so do wall
screens, except for the segments their wall's replay plays (`segment_bytes`).
Every file is reached through the index and `ioc.core.recordings.inside`: a parameter is
never joined onto a path, so no camera id, date, segment id, `..` or symlink reaches a file
outside the recordings directory. A time with no recording answers 404 with the nearest
recorded times before and after it, so a player can jump there.

A camera with a sub-stream has it recorded too: listing and seeking take `stream=main|sub`
(main by default; anything else is refused with 422, never looked up); exports and event
clips are of the main stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from ioc.core.contracts.video_frame import STREAMS, Stream
from ioc.core.recordings import CAMERA_ID, RecordingMode, UnsafePath, inside
from ioc.core.storage import audit
from ioc.core.storage import cameras as camera_store
from ioc.core.storage import recordings as store
from ioc.serve.api.security import Principal, require
from ioc.serve.api.wall_past import cameras_of, layout_at

router = APIRouter(prefix="/api/v1", tags=["recordings"])
WATCHERS = ("admin", "operator", "leader")
KEEPERS = ("admin", "operator")
JOINED_S = 0.5  # segments closer than this are one span; a wider hole is a gap
MAX_LIST = 5000


def _root(request: Request) -> Path:
    return Path(request.app.state.settings.recordings_dir).absolute()


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def _aware(v: datetime, name: str) -> datetime:
    if v.tzinfo is None:
        raise HTTPException(422, detail=f"{name} needs a time zone (e.g. 2026-03-01T17:42:00+07:00)")
    return v


async def _known(request: Request, camera_id: str) -> None:
    if not CAMERA_ID.match(camera_id):
        raise HTTPException(404, detail="no such camera")
    async with request.app.state.pool.acquire() as conn:
        if not await camera_store.camera_exists(conn, camera_id):
            raise HTTPException(404, detail=f"unknown camera {camera_id!r}")


def stream_param(value: str) -> Stream:
    """The `stream` query parameter, checked: main or sub."""
    for stream in STREAMS:
        if value == stream:
            return stream
    raise HTTPException(422, detail=f"stream must be one of {', '.join(STREAMS)}, not {value[:40]!r}")


def segment_url(segment_id: int) -> str:
    return f"/api/v1/recordings/segments/{segment_id}"


def clip_url(request: Request, camera: str, start: datetime, end: datetime | None) -> str:
    """The export of an event's clip: `IOC_RECORDING_CLIP_BEFORE_S` before it starts to
    `IOC_RECORDING_CLIP_AFTER_S` after it ends (after it starts, while it lasts)."""
    s = request.app.state.settings
    begin = start - timedelta(seconds=s.recording_clip_before_s)
    finish = (end or start) + timedelta(seconds=s.recording_clip_after_s)
    query = urlencode({"start": begin.astimezone(timezone.utc).isoformat(),
                       "end": finish.astimezone(timezone.utc).isoformat()})
    return f"/api/v1/cameras/{camera}/export?{query}"


def segment_out(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "start": _iso(row["started_at"]), "end": _iso(row["ended_at"]), "bytes": row["bytes"],
            "kept": row["kept"], "stream": row.get("stream", "main"), "url": segment_url(row["id"])}


def segment_at_out(found: dict[str, Any] | None, at: datetime) -> dict[str, Any] | None:
    """One camera stream's entry of `store.around` as the API answers it: the segment that
    holds `at`, the offset of `at` in it (seconds from its first frame, a keyframe) and the
    ones that follow; None for a gap."""
    if found is None or found["segment"] is None:
        return None
    row = found["segment"]
    return {"segment": segment_out(row), "offset_s": round((at - row["started_at"]).total_seconds(), 3),
            "following": [segment_out(r) for r in found["following"]]}


def _gap(camera: str, at: datetime, before: datetime | None, after: datetime | None, what: str) -> JSONResponse:
    return JSONResponse(status_code=404, content={
        "detail": f"camera {camera} has no recording {what}", "camera": camera, "at": at.isoformat(),
        "nearest_before": _iso(before), "nearest_after": _iso(after)})


# -- modes --------------------------------------------------------------------------------------
class ModeBody(BaseModel):
    mode: RecordingMode


@router.get("/cameras/{camera_id}/recording")
async def recording_mode(request: Request, camera_id: str,
                         _: Annotated[Principal, Depends(require(*WATCHERS))]) -> dict[str, Any]:
    await _known(request, camera_id)
    async with request.app.state.pool.acquire() as conn:
        return {"camera": camera_id, **await store.mode_of(conn, camera_id)}


@router.put("/cameras/{camera_id}/recording")
async def set_recording_mode(request: Request, camera_id: str, body: ModeBody,
                             p: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
    """continuous, events (around each camera event, with pre-roll) or off; the camera service
    follows within IOC_CAMERA_RELOAD_S."""
    await _known(request, camera_id)
    async with request.app.state.pool.acquire() as conn:
        await store.set_mode(conn, camera_id, body.mode, p.username)
        return {"camera": camera_id, **await store.mode_of(conn, camera_id)}


# -- what was recorded ------------------------------------------------------------------------------
@router.get("/cameras/{camera_id}/recordings")
async def recordings(request: Request, camera_id: str, start: datetime, end: datetime,
                     _: Annotated[Principal, Depends(require(*WATCHERS))],
                     segments: bool = True, stream: str = "main") -> dict[str, Any]:
    """The spans of `stream` (main or sub) recorded in [start, end) and the gaps between them;
    with `segments`, the segments themselves (each with the address of its bytes)."""
    which = stream_param(stream)
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start or end - start > timedelta(days=31):
        raise HTTPException(422, detail="need start < end, at most 31 days apart")
    await _known(request, camera_id)
    async with request.app.state.pool.acquire() as conn:
        rows = await store.segments(conn, camera_id, start, end, MAX_LIST + 1, which)
    spans: list[dict[str, Any]] = []
    cursor = start
    for r in rows[:MAX_LIST]:
        s, e = max(r["started_at"], start), min(r["ended_at"], end)
        if spans and spans[-1]["kind"] == "recording" and (s - spans[-1]["_end"]).total_seconds() <= JOINED_S:
            spans[-1]["_end"] = max(spans[-1]["_end"], e)
            spans[-1]["segments"] += 1
        else:
            if s > cursor:
                spans.append({"kind": "gap", "_start": cursor, "_end": s})
            spans.append({"kind": "recording", "_start": s, "_end": e, "segments": 1})
        cursor = max(cursor, spans[-1]["_end"])
    if cursor < end and len(rows) <= MAX_LIST:
        spans.append({"kind": "gap", "_start": cursor, "_end": end})
    out = [{"kind": x["kind"], "start": x["_start"].isoformat(), "end": x["_end"].isoformat(),
            **({"segments": x["segments"]} if x["kind"] == "recording" else {})} for x in spans]
    answer: dict[str, Any] = {"camera": camera_id, "stream": which, "start": start.isoformat(),
                              "end": end.isoformat(), "spans": out, "truncated": len(rows) > MAX_LIST}
    if segments:
        answer["segments"] = [segment_out(r) for r in rows[:MAX_LIST]]
    return answer


@router.get("/cameras/{camera_id}/recordings/at", responses={404: {"description": "no recording then"}})
async def recording_at(request: Request, camera_id: str, t: datetime,
                       _: Annotated[Principal, Depends(require(*WATCHERS))], following: int = 3,
                       stream: str = "main") -> Any:
    """The segment of `stream` (main or sub) that holds instant `t`, the offset of `t` in it
    (seconds from its first frame, a keyframe) and the next few, for a player to seek and
    keep playing."""
    which = stream_param(stream)
    t = _aware(t, "t")
    await _known(request, camera_id)
    async with request.app.state.pool.acquire() as conn:
        found = (await store.around(conn, [camera_id], t, max(0, min(following, 50)), streams=(which,))).get(
            (camera_id, which))
    held = segment_at_out(found, t)
    if held is None:
        before, after = (found["before"], found["after"]) if found else (None, None)
        return _gap(camera_id, t, before, after, f"{'' if which == 'main' else 'of its sub-stream '}"
                    f"at {t.isoformat()}")
    return {"camera": camera_id, "stream": which, "at": t.isoformat(), **held}


@router.get("/recordings/segments/{segment_id}", response_class=Response,
            responses={200: {"content": {"video/mp4": {}}}, 206: {"description": "the range asked for"}})
async def segment_bytes(request: Request, segment_id: int,
                        p: Annotated[Principal, Depends(require(*WATCHERS, "screen"))]) -> Response:
    """A segment's fragmented MP4, with HTTP Range (players seek inside it). A wall screen
    may fetch one only while the wall replays the past, and only of a camera the wall showed
    when the segment was recorded (what its replay plays)."""
    async with request.app.state.pool.acquire() as conn:
        row = await store.segment(conn, segment_id)
        if p.role == "screen":
            await _screen_may_play(request, conn, row)
    if row is None:
        raise HTTPException(404, detail=f"no segment {segment_id}")
    try:
        path = await asyncio.to_thread(inside, _root(request), row["path"])
    except (UnsafePath, FileNotFoundError):
        raise HTTPException(404, detail=f"segment {segment_id} is not on disk") from None
    return FileResponse(path, media_type="video/mp4", headers={
        "Cache-Control": "private, max-age=3600", "X-Recording-Start": row["started_at"].isoformat(),
        "X-Recording-End": row["ended_at"].isoformat(), "X-Camera": row["camera"]})


async def _screen_may_play(request: Request, conn: Any, row: dict[str, Any] | None) -> None:
    node = request.app.state.wall
    if node is None or not node.hub.replay_open():
        raise HTTPException(403, detail="a wall screen plays recordings only while the wall replays the past")
    if row is None:
        return
    shown, _ = await layout_at(conn, node.hub, row["started_at"])
    shown_end, _ = await layout_at(conn, node.hub, row["ended_at"])
    if row["camera"] not in cameras_of(shown) | cameras_of(shown_end):
        raise HTTPException(403, detail="the wall did not show this camera then")


# -- export ---------------------------------------------------------------------------------------
@router.get("/cameras/{camera_id}/export", response_class=Response,
            responses={200: {"content": {"video/mp4": {}}}, 404: {"description": "nothing recorded in the span"}})
async def export_span(request: Request, camera_id: str, start: datetime, end: datetime,
                      p: Annotated[Principal, Depends(require(*WATCHERS))]) -> Response:
    """[start, end) as one MP4 (from the keyframe at or before `start`); its SHA-256 is in
    `X-Content-SHA256` and, with who exported it, in the audit log. Event clips link here."""
    start, end = _aware(start, "start"), _aware(end, "end")
    limit = request.app.state.settings.recording_export_max_s
    if end <= start or (end - start).total_seconds() > limit:
        raise HTTPException(422, detail=f"need start < end, at most {limit:g} s apart (IOC_RECORDING_EXPORT_MAX_S)")
    await _known(request, camera_id)
    async with request.app.state.pool.acquire() as conn:
        rows = await store.segments(conn, camera_id, start, end, MAX_LIST)
        if not rows:
            before, after = await store.nearest(conn, camera_id, start)
            return _gap(camera_id, start, before, after, f"between {start.isoformat()} and {end.isoformat()}")
    try:  # PyAV: in the image with the `playback` extra (docker/Dockerfile), not needed for the rest
        from ioc.serve.api.export import NothingToExport, export
    except ImportError:
        raise HTTPException(503, detail="exports need PyAV on this node: pip install 'ioc-backend[playback]'") from None
    root = _root(request)
    tmp = root / ".exports"
    await asyncio.to_thread(_tidy_exports, tmp)
    target = tmp / f"{uuid.uuid4().hex}.mp4"
    try:
        done = await asyncio.to_thread(export, root, [(r["path"], r["started_at"].timestamp()) for r in rows],
                                       start.timestamp(), end.timestamp(), target)
    except NothingToExport:
        before, after = await store_nearest(request, camera_id, start)
        return _gap(camera_id, start, before, after, f"between {start.isoformat()} and {end.isoformat()}")
    except (UnsafePath, FileNotFoundError):
        target.unlink(missing_ok=True)
        raise HTTPException(404, detail="a segment of that span is no longer on disk (retention)") from None
    first = datetime.fromtimestamp(done.start, timezone.utc)
    last = datetime.fromtimestamp(done.end, timezone.utc)
    async with request.app.state.pool.acquire() as conn:
        await audit.record(conn, p.username, "recording.exported", f"camera/{camera_id}", {
            "start": first.isoformat(), "end": last.isoformat(), "asked": [start.isoformat(), end.isoformat()],
            "sha256": done.sha256, "bytes": done.bytes, "segments": len(rows)})
    name = f"{camera_id}-{first.strftime('%Y%m%dT%H%M%SZ')}.mp4"
    return FileResponse(done.path, media_type="video/mp4", filename=name,
                        background=BackgroundTask(os.unlink, done.path), headers={
                            "X-Content-SHA256": done.sha256, "X-Recording-Start": first.isoformat(),
                            "X-Recording-End": last.isoformat(), "Cache-Control": "no-store"})


def _tidy_exports(tmp: Path) -> None:
    """The exports' scratch directory, without what a crashed answer left there (an hour old)."""
    tmp.mkdir(exist_ok=True)
    old = time.time() - 3600
    for entry in os.scandir(tmp):
        if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < old:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


async def store_nearest(request: Request, camera_id: str, at: datetime) -> tuple[datetime | None, datetime | None]:
    async with request.app.state.pool.acquire() as conn:
        return await store.nearest(conn, camera_id, at)


# -- evidence -------------------------------------------------------------------------------------
class KeepBody(BaseModel):
    start: datetime
    end: datetime
    reason: str = Field("", max_length=500)


@router.post("/cameras/{camera_id}/recordings/keep", status_code=201)
async def keep_span(request: Request, camera_id: str, body: KeepBody,
                    p: Annotated[Principal, Depends(require(*KEEPERS))]) -> dict[str, Any]:
    """Keep [start, end) as evidence: retention leaves every segment that overlaps it."""
    start, end = _aware(body.start, "start"), _aware(body.end, "end")
    if end <= start:
        raise HTTPException(422, detail="need start < end")
    await _known(request, camera_id)
    async with request.app.state.pool.acquire() as conn:
        span = await store.keep(conn, camera_id, start, end, body.reason, p.username)
    return {"id": span, "camera": camera_id, "start": start.isoformat(), "end": end.isoformat(),
            "kept_by": p.username}


@router.get("/cameras/{camera_id}/recordings/kept")
async def kept(request: Request, camera_id: str,
               _: Annotated[Principal, Depends(require(*WATCHERS))]) -> list[dict[str, Any]]:
    await _known(request, camera_id)
    async with request.app.state.pool.acquire() as conn:
        return await store.kept_spans(conn, camera_id)


@router.delete("/recordings/kept/{span_id}", status_code=204)
async def release(request: Request, span_id: int, p: Annotated[Principal, Depends(require("admin"))]) -> Response:
    async with request.app.state.pool.acquire() as conn:
        if not await store.release(conn, span_id, p.username):
            raise HTTPException(404, detail=f"no kept span {span_id}")
    return Response(status_code=204)

