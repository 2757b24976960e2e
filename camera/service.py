"""`ioc cameras`: watch this process's share of the cameras, publish tiles and status.

Per camera: a CameraMonitor (probe, capture thread, health, reconnect) and a tile loop
that JPEG-encodes the newest frame at `IOC_CAMERA_TILE_FPS` (640x360) and
`IOC_CAMERA_HD_FPS` (1920x1080), retained on `ioc/v1/live/camera/<id>/tile` and
`.../tile/hd`; the status goes retained to `ioc/v1/live/camera/<id>/status` on every
change and at least every 10 s. A stale frame is never published twice. The service's
own presence is `ioc/v1/status/camera/<worker>` with a last will.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time

import asyncpg
import orjson

from camera import history
from camera.capture import Frame
from camera.monitor import CameraMonitor, CameraStatus
from camera.registry import Camera
from camera.tiles import encode_tile
from ioc.mqtt.link import MqttLink
from ioc.settings import MqttTarget

log = logging.getLogger("ioc.camera")
LIVE = "ioc/v1/live/camera"


class CameraService:
    def __init__(self, cameras: list[Camera], mqtt: MqttTarget, *, worker_id: str | None = None,
                 tile_fps: float = 2.0, hd_fps: float = 0.5, status_every_s: float = 10.0,
                 pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        self._changes: asyncio.Queue[CameraStatus] = asyncio.Queue()
        self.cameras = cameras
        self.worker_id = worker_id or f"cameras-{socket.gethostname()}"
        presence = f"ioc/v1/status/camera/{self.worker_id}"
        self.link = MqttLink(
            mqtt, self.worker_id,
            will=(presence, orjson.dumps({"state": "offline"}), 1, True),
            birth=(presence, orjson.dumps({"state": "online", "cameras": [c.id for c in cameras]}), 1, True),
        )
        self.tile_fps = tile_fps
        self.hd_fps = hd_fps
        self.status_every_s = status_every_s
        self.monitors: dict[str, CameraMonitor] = {}

    def _status(self, status: CameraStatus) -> None:
        self.link.publish(f"{LIVE}/{status.camera_id}/status", orjson.dumps(status.as_dict()), qos=1, retain=True)

    def _changed(self, status: CameraStatus) -> None:
        self._status(status)
        if self.pool is not None:
            self._changes.put_nowait(dataclasses.replace(status, flags=dict(status.flags)))

    async def _history_writer(self) -> None:
        """Status changes and events into PostgreSQL, in order; a database outage delays them."""
        assert self.pool is not None
        open_faults: dict[str, set[str]] = {}
        async with self.pool.acquire() as conn:
            await history.sync_registry(conn, self.cameras)
            await history.close_open_events(conn, [c.id for c in self.cameras])
        while True:
            status = await self._changes.get()
            before = open_faults.get(status.camera_id, set())
            delay = 0.5
            while True:
                try:
                    async with self.pool.acquire() as conn:
                        now_open = await history.record(conn, status, before)
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("camera history not written, retrying",
                                extra={"camera": status.camera_id, "error": str(exc)[:200]})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            open_faults[status.camera_id] = now_open
            for kind, state in [(k, "started") for k in sorted(now_open - before)] + \
                               [(k, "ended") for k in sorted(before - now_open)]:
                self.link.publish(f"{LIVE}/{status.camera_id}/event", orjson.dumps(
                    {"camera": status.camera_id, "kind": kind, "state": state, "at": status.since,
                     "reason": status.reason}), qos=1)

    async def _tiles(self, monitor: CameraMonitor) -> None:
        cam = monitor.camera.id
        last_sd = last_hd = 0
        next_hd = 0.0
        period = 1.0 / self.tile_fps
        while True:
            await asyncio.sleep(period)
            capture = monitor.capture
            # the reader's newest frame, not the watchdog's last sample: a tile is at most
            # one frame interval old when it is encoded
            frame: Frame | None = capture.latest if capture is not None else None
            if frame is None or monitor.status.state != "online" or frame.seq == last_sd:
                continue
            last_sd = frame.seq
            tile = await asyncio.to_thread(encode_tile, frame.image, camera=cam, seq=frame.seq,
                                           captured_at=frame.captured_at, variant="sd")
            self.link.publish(f"{LIVE}/{cam}/tile", tile, qos=0, retain=True)
            now = time.monotonic()
            if self.hd_fps > 0 and now >= next_hd and frame.seq != last_hd:
                next_hd = now + 1.0 / self.hd_fps
                last_hd = frame.seq
                hd = await asyncio.to_thread(encode_tile, frame.image, camera=cam, seq=frame.seq,
                                             captured_at=frame.captured_at, variant="hd")
                self.link.publish(f"{LIVE}/{cam}/tile/hd", hd, qos=0, retain=True)

    async def _status_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.status_every_s)
            for m in self.monitors.values():
                self._status(m.status)

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.link.run(), name="mqtt"),
                 asyncio.create_task(self._status_heartbeat(), name="status")]
        if self.pool is not None:
            tasks.append(asyncio.create_task(self._history_writer(), name="history"))
        else:
            log.warning("IOC_DATABASE_URL is not set: camera status history and events are not stored")
        for cam in self.cameras:
            m = CameraMonitor(cam, on_status=self._changed)
            self.monitors[cam.id] = m
            tasks.append(asyncio.create_task(m.run(), name=f"monitor-{cam.id}"))
            tasks.append(asyncio.create_task(self._tiles(m), name=f"tiles-{cam.id}"))
        log.info("cameras running", extra={"worker": self.worker_id, "cameras": len(self.cameras)})
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
