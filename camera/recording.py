"""The camera service's side of recording: one `Recorder` per camera stream, the index, retention.

The recorders run in the reader threads (recorder.py); this runs on the event loop and
owns what they cannot do there: the PostgreSQL index (closed segments queue here and are
written in batches, retried through a database outage), each camera's mode (from the
registry, re-read with it), the events that open and close an `events` camera's recording,
and retention (by age and by the disk quota, oldest first, never a kept segment). Every
file operation (unlink, directory walks) runs in a worker thread.

A camera with a sub-stream records it too (unless `sub_stream` is off), with the main
stream's mode, so a small replay tile can play the small picture; the camera's status
follows its main stream's recorder (the sub-stream's failures are logged).

At start, what a kill left behind is put right for this process's cameras: `.part` files
(the segment being written) are removed, and closed segments that were renamed into place
but not yet indexed are indexed from their names.

When the quota cannot be met because everything left is kept as evidence, every recorder
of this process is blocked with that reason (their cameras show recording "stopped", a
"recording" fault, hence an alert); they resume by themselves once retention finds room.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg

from camera.recorder import Recorder, SegmentDone
from ioc.core.contracts.video_frame import STREAMS, Stream
from ioc.core.recordings import PART_SUFFIX, UnsafePath, day_of, inside, parse_segment_name, stream_dir
from ioc.core.storage import recordings as store

log = logging.getLogger("ioc.camera.recording")

QUOTA_FULL = "disk quota full: everything left is kept as evidence"
PICTURE_EVENTS = frozenset({"black", "uniform", "frozen", "blurred", "scene_changed"})


@dataclass(frozen=True)
class RecordingConfig:
    root: Path
    segment_s: float = 4.0
    pre_roll_s: float = 10.0  # an `events` camera's clip starts this long before the event
    post_s: float = 20.0  # and goes on this long after it ends
    retention_days: int = 30
    quota_bytes: int = 0
    every_s: float = 30.0
    sub_stream: bool = True  # record a camera's sub-stream too, where it has one


class RecordingKeeper:
    def __init__(self, config: RecordingConfig, pool: asyncpg.Pool) -> None:
        self.config = config
        self.pool = pool
        self.recorders: dict[tuple[str, Stream], Recorder] = {}
        self.modes: dict[str, str] = {}
        self._done: asyncio.Queue[SegmentDone] = asyncio.Queue()
        self._retention_due = asyncio.Event()
        self._written = 0  # bytes indexed since the last retention run
        self._blocked: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def recorder(self, camera_id: str, on_state: Callable[[str, str | None], None] | None,
                 stream: Stream = "main") -> Recorder:
        """The recorder of a camera's stream (kept across its readers); `on_state` is called
        on the loop (None: its state changes are only logged)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        rec = self.recorders.get((camera_id, stream))
        if rec is None:
            rec = Recorder(camera_id, self.config.root, segment_s=self.config.segment_s,
                           pre_roll_s=self.config.pre_roll_s, stream=stream,
                           on_segment=lambda done: loop.call_soon_threadsafe(self._done.put_nowait, done),
                           on_state=lambda s, why: None)
            self.recorders[(camera_id, stream)] = rec
        if on_state is not None:
            rec.on_state = lambda s, why: _call_soon(loop, on_state, s, why)
        rec.mode = self.modes.get(camera_id, "off")
        rec.blocked = self._blocked
        return rec

    def forget(self, camera_id: str) -> None:
        for stream in STREAMS:
            self.recorders.pop((camera_id, stream), None)

    def mode(self, camera_id: str) -> str:
        return self.modes.get(camera_id, "off")

    async def load_modes(self) -> dict[str, str]:
        async with self.pool.acquire() as conn:
            modes = await store.modes(conn)
        self.apply_modes(modes)
        return modes

    def apply_modes(self, modes: dict[str, str]) -> None:
        for (cam, stream), rec in self.recorders.items():
            mode = modes.get(cam, "off")
            if rec.mode != mode:
                log.info("camera recording mode", extra={"camera": cam, "stream": stream, "mode": mode})
                rec.mode = mode
        self.modes = dict(modes)

    def faults(self, camera_id: str, open_now: set[str], closed: set[str]) -> None:
        """A camera's faults changed: an `events` camera records while a picture fault is open
        and `post_s` after the last one ends."""
        for stream in STREAMS:
            rec = self.recorders.get((camera_id, stream))
            if rec is None:
                continue
            if open_now & PICTURE_EVENTS:
                rec.record_until = math.inf
            elif closed & PICTURE_EVENTS or rec.record_until == math.inf:
                rec.record_until = time.time() + self.config.post_s

    # -- on the loop ---------------------------------------------------------------------------
    async def run(self, camera_ids: list[str]) -> None:
        await self._tidy(camera_ids)
        await asyncio.gather(self._index_writer(), self._retention())

    async def _tidy(self, camera_ids: list[str]) -> None:
        """Remove what a kill interrupted; index what was closed but not indexed."""
        found = await asyncio.to_thread(_leftovers, self.config.root, camera_ids)
        if not found:
            return
        async with self.pool.acquire() as conn:
            known = await store.indexed_paths(conn, [d.path for d in found])
            missing = [d for d in found if d.path not in known]
            if missing:
                await _index(conn, missing)
                log.info("recordings indexed after a restart", extra={"segments": len(missing)})

    async def _index_writer(self) -> None:
        while True:
            batch = [await self._done.get()]
            while not self._done.empty():
                batch.append(self._done.get_nowait())
            delay = 0.5
            while True:
                try:
                    async with self.pool.acquire() as conn:
                        await _index(conn, batch)
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("recording index not written, retrying", extra={"error": str(exc)[:200]})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            self._written += sum(d.bytes for d in batch)
            if self.config.quota_bytes and self._written > self.config.quota_bytes // 20:
                self._retention_due.set()  # the quota is checked as often as 5% of it is written

    async def _retention(self) -> None:
        while True:
            try:
                await self.retain()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("recording retention failed, retrying", extra={"error": str(exc)[:200]})
            self._retention_due.clear()
            try:
                await asyncio.wait_for(self._retention_due.wait(), self.config.every_s)
            except asyncio.TimeoutError:
                pass

    async def retain(self) -> None:
        """One pass: by age, then by quota; block or unblock the recorders."""
        self._written = 0
        gone: list[str] = []
        full = False
        async with self.pool.acquire() as conn:
            if self.config.retention_days:
                cutoff = datetime.now(timezone.utc) - timedelta(days=self.config.retention_days)
                while batch := await store.expire(conn, cutoff):
                    gone += batch
            if self.config.quota_bytes:
                while batch := await store.over_quota(conn, self.config.quota_bytes):
                    gone += batch
                full = await store.total_bytes(conn) > self.config.quota_bytes
        if gone:
            await asyncio.to_thread(_unlink, self.config.root, gone)
            log.info("recordings deleted by retention", extra={"segments": len(gone)})
        blocked = QUOTA_FULL if full else None
        if blocked != self._blocked:
            log.log(logging.ERROR if blocked else logging.INFO,
                    "camera recording " + ("stopped: " + QUOTA_FULL if blocked else "may resume: the quota has room"))
        self._blocked = blocked
        for rec in self.recorders.values():
            rec.blocked = blocked


async def _index(conn: asyncpg.Connection, done: list[SegmentDone]) -> None:
    for stream in STREAMS:
        rows = [(d.camera, d.start, d.end, d.bytes, d.path) for d in done if d.stream == stream]
        if rows:
            await store.add_segments(conn, rows, stream)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[str, str | None], None], state: str,
               why: str | None) -> None:
    try:
        loop.call_soon_threadsafe(fn, state, why)
    except RuntimeError:  # the loop has closed: the service is stopping
        pass


def _leftovers(root: Path, camera_ids: list[str]) -> list[SegmentDone]:
    """Delete `.part` files; the closed segments of the last two days (what a kill may have
    left unindexed), each stream's from its own directory."""
    out: list[SegmentDone] = []
    today = time.time()
    days = {day_of(today), day_of(today - 86400)}
    for cam in camera_ids:
        cam_dir = root / cam
        if cam_dir.is_symlink() or not cam_dir.is_dir():
            continue
        for day in sorted(days):
            for stream in STREAMS:
                rel = stream_dir(cam, day, stream)
                d = root / rel
                if (root / cam / day).is_symlink() or d.is_symlink() or not d.is_dir():
                    continue
                for entry in os.scandir(d):
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    if entry.name.endswith(PART_SUFFIX):
                        os.unlink(entry.path)
                        log.info("unfinished recording segment removed",
                                 extra={"camera": cam, "stream": stream, "file": entry.name})
                        continue
                    span = parse_segment_name(entry.name)
                    if span is not None:
                        out.append(SegmentDone(cam, span[0], span[1], entry.stat(follow_symlinks=False).st_size,
                                               f"{rel}/{entry.name}", stream))
    return out


def _unlink(root: Path, paths: list[str]) -> None:
    for rel in paths:
        try:
            inside(root, rel).unlink()
        except FileNotFoundError:
            pass
        except (UnsafePath, OSError) as exc:
            log.warning("recording file not deleted", extra={"file": rel[:200], "error": str(exc)[:200]})
