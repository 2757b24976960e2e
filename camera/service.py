"""`ioc cameras`: watch this process's share of the cameras, publish tiles and status.

Per camera: a CameraMonitor (probe, capture thread, health, reconnect) and a tile loop
that JPEG-encodes each new frame as soon as it is decoded, at most `IOC_CAMERA_TILE_FPS`
a second (640x360) and `IOC_CAMERA_HD_FPS` (1920x1080), retained on the camera's `tile`
and `tile/hd` topics. HD tiles are made only for the cameras a wall shows large: each wall
node says which (`topics.wall_demand`, cleared by its last will), unless
`IOC_CAMERA_HD_ALWAYS` is set. Live video is the camera's own H.264, forwarded access unit
by access unit (camera/video.py) on the camera's `video/main` or `video/sub` topic while
some wall node plays that stream (the same demand, per stream), from the reader the tiles
already decode: one RTSP session per stream. A node that wants the other stream (main video
while the tiles read the sub-stream) gets a video-only reader of that stream, which decodes
nothing, for as long as it is wanted. Recording reads the same way: a recorded camera's main
stream and, where it has one, its sub-stream are muxed by whichever reader reads them (the
tiles' reader, or a video-only one kept open while the stream is recorded). The status goes retained to the camera's `status` topic on
every change and at least every 10 s. A stale frame is never published twice. The
service's own presence (`topics.camera_presence`) has a last will. Every topic and payload
is defined in `ioc.core.contracts`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import dataclasses
import logging
import socket
import time

import asyncpg
import cv2

from camera.capture import CaptureThread, Frame, join_captures, keep_frames_off_the_heap, probe
from camera.monitor import CameraMonitor
from camera.recording import RecordingConfig, RecordingKeeper
from camera.video import VideoForwarder, VideoOutbox
from ioc.core import sharding
from ioc.core.cameras import Camera
from camera.tiles import encode_tile
from ioc.core.contracts import camera as camera_contract
from ioc.core.contracts import topics
from ioc.core.contracts import wall as wall_contract
from ioc.core.contracts.video_frame import STREAMS, Stream
from ioc.core.contracts.camera import CameraStatus
from ioc.core.mqtt.link import MqttLink, Subscription
from ioc.core.storage import cameras as camera_store
from ioc.core.settings import MqttTarget
from ioc.core.supervise import run_together

log = logging.getLogger("ioc.camera")


class CameraService:
    def __init__(self, cameras: list[Camera], mqtt: MqttTarget, *, worker_id: str | None = None,
                 shard: tuple[int, int] = (0, 1),
                 tile_fps: float = 2.0, hd_fps: float = 0.5, status_every_s: float = 10.0,
                 pool: asyncpg.Pool | None = None,
                 reload: Callable[[], Awaitable[list[Camera]]] | None = None, reload_every_s: float = 15.0,
                 file_cameras: list[Camera] | None = None, hd_always: bool = False,
                 recording: RecordingConfig | None = None, keyframe_max_s: float = 30.0) -> None:
        """`cameras` (and what `reload` returns) are ALL the cameras, every shard's: this
        process runs the share `ioc.core.sharding` gives shard `shard` = (index, count). Knowing
        the others is what tells a camera gone from the registry (taken off the wall) from one
        that moved to another shard (left on the wall for its new owner to overwrite)."""
        self.pool = pool
        self._reload = reload
        self.reload_every_s = reload_every_s
        self.file_cameras = cameras if file_cameras is None else file_cameras
        self._cam_tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._fatal: asyncio.Future[None] | None = None
        self._changes: asyncio.Queue[CameraStatus] = asyncio.Queue()
        self.shard = shard
        self.cameras = self._share(cameras)
        self.worker_id = worker_id or f"cameras-{socket.gethostname()}"
        presence = topics.camera_presence(self.worker_id)
        self.link = MqttLink(
            mqtt, self.worker_id,
            will=(presence, camera_contract.encode_presence(False), 1, True),
            birth=(presence, camera_contract.encode_presence(True, [c.id for c in self.cameras]), 1, True),
            subscriptions=[Subscription(topics.CAMERA_REFERENCE_ALL, qos=0, retain_handling=2),
                           Subscription(topics.WALL_DEMAND_ALL, qos=0)],
            on_message=self._on_message,
        )
        self.hd_always = hd_always
        self.keyframe_max_s = keyframe_max_s
        self._hd_demand: dict[str, frozenset[str]] = {}  # wall node -> cameras it shows large
        self._video_demand: dict[str, dict[Stream, frozenset[str]]] = {}  # wall node -> stream -> cameras
        self._forwarders: dict[tuple[str, Stream], VideoForwarder] = {}
        self._outbox: VideoOutbox | None = None  # made on the loop, with the first forwarder
        self._video_only: dict[tuple[str, Stream], asyncio.Task[None]] = {}
        self.tile_fps = tile_fps
        self.hd_fps = hd_fps
        self.status_every_s = status_every_s
        self.monitors: dict[str, CameraMonitor] = {}
        self._video_only_threads: dict[tuple[str, Stream], CaptureThread] = {}
        # recording needs the index: without a database, nothing is recorded
        self.keeper = RecordingKeeper(recording, pool) if recording is not None and pool is not None else None

    def _status(self, status: CameraStatus) -> None:
        self.link.publish(topics.live_camera(status.camera_id, "status"), camera_contract.encode_status(status),
                          qos=1, retain=True)

    def _changed(self, status: CameraStatus) -> None:
        self._status(status)
        if self.pool is not None:
            self._changes.put_nowait(dataclasses.replace(status, flags=dict(status.flags)))

    async def _history_writer(self) -> None:
        """Status changes and events into PostgreSQL, in order; a database outage delays them."""
        assert self.pool is not None
        open_faults: dict[str, set[str]] = {}
        async with self.pool.acquire() as conn:
            await camera_store.sync_registry(conn, self.file_cameras)
            await camera_store.close_open_events(conn, [c.id for c in self.cameras])
        while True:
            status = await self._changes.get()
            before = open_faults.get(status.camera_id, set())
            delay = 0.5
            while True:
                try:
                    async with self.pool.acquire() as conn:
                        now_open = await camera_store.record_status(conn, status, before)
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("camera history not written, retrying",
                                extra={"camera": status.camera_id, "error": str(exc)[:200]})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            open_faults[status.camera_id] = now_open
            if self.keeper is not None:
                self.keeper.faults(status.camera_id, now_open, before - now_open)
            for kind, state in [(k, "started") for k in sorted(now_open - before)] + \
                               [(k, "ended") for k in sorted(before - now_open)]:
                self.link.publish(topics.live_camera(status.camera_id, "event"), camera_contract.encode_event(
                    status.camera_id, kind, state, status.since, status.reason), qos=1)

    async def _tiles(self, monitor: CameraMonitor) -> None:
        cam = monitor.camera.id
        last_sd = last_hd = 0
        next_sd = next_hd = 0.0
        period = 1.0 / self.tile_fps
        loop = asyncio.get_running_loop()
        reader: CaptureThread | None = None
        while True:
            capture = monitor.capture
            if capture is None or monitor.status.state != "online":
                await asyncio.sleep(period)
                continue
            if capture is not reader:  # a new reader counts its frames from 1 again
                reader, last_sd, last_hd = capture, 0, 0
            wait = next_sd - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # at most tile_fps tiles a second
            # the reader's next frame the moment it is decoded, never one already published:
            # a keyframes-only camera's tile is as fresh as its keyframe (polling at tile_fps
            # made it wait up to 1/tile_fps more)
            frame: Frame | None = await capture.next_frame(last_sd, timeout=1.0)
            if frame is None or monitor.status.state != "online":
                continue
            next_sd = max(next_sd + period, loop.time())  # on a fixed grid while frames keep up
            last_sd = frame.seq
            tile = await asyncio.to_thread(encode_tile, frame.image, camera=cam, seq=frame.seq,
                                           captured_at=frame.captured_at, variant="sd")
            self.link.publish(topics.live_camera(cam, "tile"), tile, qos=0, retain=True)
            now = time.monotonic()
            if frame.full is not None and self.hd_fps > 0 and now >= next_hd and frame.seq != last_hd:
                # due again a little early: frames that come exactly every 1/hd_fps (keyframes)
                # would otherwise miss by a few ms and make every other HD tile a frame late
                next_hd = now + 1.0 / self.hd_fps - 0.5 * period
                last_hd = frame.seq
                hd = await asyncio.to_thread(encode_tile, frame.full, camera=cam, seq=frame.seq,
                                             captured_at=frame.captured_at, variant="hd")
                self.link.publish(topics.live_camera(cam, "tile/hd"), hd, qos=0, retain=True)

    async def _status_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.status_every_s)
            for m in self.monitors.values():
                self._status(m.status)

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool, generation: int) -> None:
        node = topics.parse_wall_demand(topic)
        if node is not None:
            self._demand(node, payload)
        else:
            self._command(topic, payload)

    def _demand(self, node: str, payload: bytes) -> None:
        """A wall node's cameras shown large and played live; an empty payload (its will) withdraws them."""
        try:
            demand = wall_contract.decode_demand(payload)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("wall demand ignored", extra={"node": node[:100], "error": str(exc)[:200]})
            return
        if demand.hd:
            self._hd_demand[node] = demand.hd
        else:
            self._hd_demand.pop(node, None)
        if demand.video_main or demand.video_sub:
            self._video_demand[node] = {"main": demand.video_main, "sub": demand.video_sub}
        else:
            self._video_demand.pop(node, None)
        self._apply_demand()

    def _hd_wanted(self, camera_id: str) -> bool:
        return self.hd_always or any(camera_id in cams for cams in self._hd_demand.values())

    def _video_wanted(self, cam: Camera, stream: Stream) -> bool:
        """The hubs ask for the stream a tile's size calls for; a camera with one stream (no
        sub_url) answers either request with it, and the hubs play what flows (their fallback)."""
        asked = {stream, "sub"} if stream == "main" and cam.sub_url is None else {stream}
        return any(cam.id in streams[s] for streams in self._video_demand.values() for s in asked)

    def _apply_demand(self) -> None:
        for cam_id, m in self.monitors.items():
            want = self._hd_wanted(cam_id)
            if want != m.want_full:
                m.want_full = want
                log.info("camera HD tiles " + ("wanted" if want else "no longer wanted"),
                         extra={"camera": cam_id, "worker": self.worker_id})
            for stream in STREAMS:
                want = self._video_wanted(m.camera, stream)
                if stream == _tile_stream(m.camera):
                    changed = want != m.want_video
                    m.want_video = want
                else:
                    changed = self._video_only_reader(m.camera, stream, want or self._records(m.camera, stream))
                    thread = self._video_only_threads.get((cam_id, stream))
                    if thread is not None:
                        changed = changed or thread.want_video != want
                        thread.want_video = want
                if changed:
                    log.info("camera video " + ("wanted" if want else "no longer wanted"),
                             extra={"camera": cam_id, "stream": stream, "worker": self.worker_id})

    def _records(self, cam: Camera, stream: Stream) -> bool:
        """Whether this stream is recorded: when the camera's mode is not off, its main stream,
        and its sub-stream if it has one and sub-streams are recorded (IOC_RECORDING_SUB_STREAM)."""
        if self.keeper is None or self.keeper.mode(cam.id) == "off":
            return False
        return stream == "main" or self._sub_recordable(cam)

    def _sub_recordable(self, cam: Camera) -> bool:
        """Whether this camera's sub-stream reader carries a recorder (which writes only
        while the camera's mode is not off: the mode changes without reopening the stream)."""
        return self.keeper is not None and self.keeper.config.sub_stream and cam.sub_url is not None

    def _video_only_reader(self, cam: Camera, stream: Stream, want: bool) -> bool:
        """Start or stop the reader of a stream the tiles do not read; True if that changed."""
        key = (cam.id, stream)
        task = self._video_only.get(key)
        if want == (task is not None):
            return False
        if task is not None:
            task.cancel()
            del self._video_only[key]
            return True
        if (cam.main_url if stream == "main" else cam.sub_url) is None:
            return False  # the camera has no such stream: its tiles' stream is all there is
        self._video_only[key] = asyncio.create_task(self._video_only_loop(cam, stream), name=f"video-{cam.id}-{stream}")
        return True

    async def _video_only_loop(self, cam: Camera, stream: Stream) -> None:
        """Keep a video-only reader of `stream` open (no decoding), reopening it with backoff."""
        url = cam.main_url if stream == "main" else cam.sub_url
        assert url is not None
        backoff = 1.0
        while True:
            failure = await probe(url)
            thread: CaptureThread | None = None
            if failure is None:
                thread = CaptureThread(cam.id, cam.open_url(stream), cam.mode, stream=stream, decode=False)
                thread.want_video, thread.on_video = self._video_wanted(cam, stream), self._forwarder(cam.id, stream)
                monitor = self.monitors.get(cam.id)
                if self.keeper is not None and stream == "main":
                    thread.recorder = self.keeper.recorder(cam.id, monitor.recording) if monitor else None
                elif self.keeper is not None and self._sub_recordable(cam):
                    thread.recorder = self.keeper.recorder(cam.id, None, "sub")
                self._video_only_threads[(cam.id, stream)] = thread
                thread.start()
                try:
                    last, last_at = 0, time.monotonic()
                    while thread.is_alive() and time.monotonic() - last_at < VIDEO_ONLY_STALL_S:
                        await asyncio.sleep(0.5)
                        if thread.frames != last:
                            last, last_at, backoff = thread.frames, time.monotonic(), 1.0
                finally:
                    thread.stop()
                    if self._video_only_threads.get((cam.id, stream)) is thread:
                        del self._video_only_threads[(cam.id, stream)]
            log.warning("camera video reader lost, reopening", extra={
                "camera": cam.id, "stream": stream, "error": failure or (thread.error if thread else None)})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def _forwarder(self, camera_id: str, stream: Stream) -> VideoForwarder:
        key = (camera_id, stream)
        if key not in self._forwarders:
            if self._outbox is None:
                self._outbox = VideoOutbox(asyncio.get_running_loop(), self.link.publish_many)
            self._forwarders[key] = VideoForwarder(self._outbox, camera_id, stream)
        return self._forwarders[key]

    def _command(self, topic: str, payload: bytes) -> None:
        """An operator accepts a camera's current view as its normal one (after it was moved on purpose)."""
        camera_id = topics.parse_camera_reference(topic)
        monitor = self.monitors.get(camera_id) if camera_id else None
        if monitor is None or monitor.tracker.last is None:
            return  # another shard's camera, or no picture yet
        monitor.tracker.set_reference(monitor.tracker.last)
        log.info("camera reference accepted",
                 extra={"camera": camera_id, "by": camera_contract.decode_reference_command(payload)})

    # -- cameras come and go (admins add them through the API) ----------------------------
    def _share(self, cameras: list[Camera]) -> list[Camera]:
        index, count = self.shard
        return sharding.mine(cameras, index, count, key=lambda c: c.id)

    def _start(self, cam: Camera) -> None:
        m = CameraMonitor(cam, on_status=self._changed, on_video=self._forwarder(cam.id, _tile_stream(cam)),
                          keyframe_max_s=self.keyframe_max_s)
        m.want_full = self._hd_wanted(cam.id)
        if self.keeper is not None:
            rec = self.keeper.recorder(cam.id, m.recording)
            m.status.recording = rec.mode
            sub = self.keeper.recorder(cam.id, None, "sub") if self._sub_recordable(cam) else None
            # the tiles' reader records its stream; the other one's own reader records it (_apply_demand)
            m.recorder = rec if _tile_stream(cam) == "main" else sub
        self.monitors[cam.id] = m
        self._apply_demand()
        tasks = [asyncio.create_task(m.run(), name=f"monitor-{cam.id}"),
                 asyncio.create_task(self._tiles(m), name=f"tiles-{cam.id}")]
        for t in tasks:
            t.add_done_callback(self._camera_task_done)
        self._cam_tasks[cam.id] = tasks

    def _camera_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("camera task failed", extra={"task": task.get_name()}, exc_info=task.exception())
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_exception(task.exception())  # type: ignore[arg-type]

    async def _stop(self, camera_id: str, *, forget: bool) -> None:
        tasks = self._cam_tasks.pop(camera_id, [])
        tasks += [self._video_only.pop((camera_id, s)) for s in STREAMS if (camera_id, s) in self._video_only]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.monitors.pop(camera_id, None)
        if forget:
            if self.keeper is not None:
                self.keeper.forget(camera_id)  # take it off the wall: empty retained messages delete the retained ones
            for channel in ("status", "tile", "tile/hd"):
                self.link.publish(topics.live_camera(camera_id, channel), b"", qos=1, retain=True)

    async def _watch_registry(self) -> None:
        assert self._reload is not None
        while True:
            await asyncio.sleep(self.reload_every_s)
            try:
                listed = await self._reload()
            except Exception as exc:  # noqa: BLE001 - keep the running cameras, try again
                log.warning("camera list not reloaded", extra={"error": str(exc)[:300]})
                continue
            if self.keeper is not None:
                await self._reload_modes()
            everyone = {c.id for c in listed}
            wanted = {c.id: c for c in self._share(listed)}
            current = {c.id: c for c in self.cameras}
            for cam_id, cam in current.items():
                if wanted.get(cam_id) != cam:
                    # only a camera gone from the registry leaves the wall; one that moved to
                    # another shard keeps its retained tiles until the new owner overwrites them
                    gone = cam_id not in everyone
                    await self._stop(cam_id, forget=gone)
                    what = "camera removed" if gone else "camera changed" if cam_id in wanted else "camera moved away"
                    log.info(what, extra={"camera": cam_id, "worker": self.worker_id})
            for cam_id, cam in wanted.items():
                if current.get(cam_id) != cam:
                    self._start(cam)
                    log.info("camera added", extra={"camera": cam_id, "worker": self.worker_id,
                                                    "stream": cam.stream_url, "mode": cam.mode})
            self.cameras = list(wanted.values())

    async def _reload_modes(self) -> None:
        assert self.keeper is not None
        try:
            await self.keeper.load_modes()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("recording modes not reloaded", extra={"error": str(exc)[:300]})
            return
        self._apply_demand()  # a camera whose tiles read its sub-stream needs its main reader to record

    async def _until_fatal(self) -> None:
        assert self._fatal is not None
        await self._fatal

    async def run(self) -> None:
        keep_frames_off_the_heap()
        # every camera has its own reader thread already; OpenCV's own thread pool on top
        # (resize, colour conversion) only added hand-offs: 1.5% of a core at 10 cameras
        cv2.setNumThreads(1)
        self._fatal = asyncio.get_running_loop().create_future()
        tasks = [asyncio.create_task(self.link.run(), name="mqtt"),
                 asyncio.create_task(self._status_heartbeat(), name="status"),
                 asyncio.create_task(self._until_fatal(), name="camera-failure")]
        if self.pool is not None:
            tasks.append(asyncio.create_task(self._history_writer(), name="history"))
        else:
            log.warning("IOC_DATABASE_URL is not set: camera status history and events are not stored")
        if self._reload is not None:
            tasks.append(asyncio.create_task(self._watch_registry(), name="registry"))
        if self.keeper is not None:
            await self._reload_modes()
            tasks.append(asyncio.create_task(self.keeper.run([c.id for c in self.cameras]), name="recording"))
        for cam in self.cameras:
            self._start(cam)
        log.info("cameras running", extra={"worker": self.worker_id, "cameras": len(self.cameras)})
        try:
            await run_together(tasks)
        finally:
            for cam_id in list(self._cam_tasks):
                await self._stop(cam_id, forget=False)
            left = await asyncio.to_thread(join_captures, 3.0)
            if left:
                log.warning("capture threads still running at exit", extra={"worker": self.worker_id, "threads": left})


VIDEO_ONLY_STALL_S = 3.0  # a video-only reader whose packets stop this long is reopened


def _tile_stream(cam: Camera) -> Stream:
    """The stream the tiles are decoded from: its video comes from the same reader."""
    return "sub" if cam.mode == "sub-full" else "main"
