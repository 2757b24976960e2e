"""A watchdog per camera: probe, open, watch the frames, judge, reconnect with backoff.

Runs on the event loop; the capture itself is a thread (capture.py) and the picture
analysis runs in a worker thread. Liveness is the age of the newest frame: a camera whose
frames stop for `offline_after_s` is offline, whatever the reader says; the old
reader is told to stop and a fresh one opened after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from camera.capture import CaptureThread, Frame, VideoSink, probe
from camera.recorder import Recorder
from camera.health import Debouncer, HealthTracker, Thresholds, analyse
from ioc.core.cameras import Camera
from ioc.core.contracts.camera import CameraStatus

log = logging.getLogger("ioc.camera")


class CameraMonitor:
    def __init__(
        self,
        camera: Camera,
        *,
        thresholds: Thresholds | None = None,
        offline_after_s: float = 3.0,
        sample_every_s: float = 0.5,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
        on_status: Callable[[CameraStatus], None] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        on_video: VideoSink | None = None,
        keyframe_max_s: float = 30.0,
    ) -> None:
        self.camera = camera
        self.tracker = HealthTracker(thresholds or Thresholds())
        self.debounce = Debouncer()
        self.offline_after_s = offline_after_s
        self.sample_every_s = sample_every_s
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_backoff_s = max_backoff_s
        self.on_status = on_status
        self.on_frame = on_frame
        self.on_video = on_video
        self.recorder: Recorder | None = None  # records the stream this monitor reads (set by the service)
        self.keyframe_max_s = keyframe_max_s
        self._keyframes_late = False
        self.status = CameraStatus(camera.id, mode=camera.mode)
        self.capture: CaptureThread | None = None
        self._want_full = False
        self._want_video = False
        self._signature: tuple[object, ...] = ()

    @property
    def want_full(self) -> bool:
        """Keep full-size pictures for HD tiles (a wall shows this camera large)."""
        return self._want_full

    @want_full.setter
    def want_full(self, value: bool) -> None:
        self._want_full = value
        if self.capture is not None:
            self.capture.want_full = value

    @property
    def want_video(self) -> bool:
        """Forward the tile stream's access units to `on_video` (someone watches it live)."""
        return self._want_video

    @want_video.setter
    def want_video(self, value: bool) -> None:
        self._want_video = value
        if self.capture is not None:
            self.capture.want_video = value

    def _publish(self, **changes: object) -> None:
        for k, v in changes.items():
            setattr(self.status, k, v)
        s = self.status
        signature = (s.state, s.reason if s.state == "offline" else None, tuple(sorted(s.flags.items())),
                     s.video, s.video_reason, s.recording, s.recording_reason)
        if signature != self._signature:
            self._signature = signature
            s.since = time.time()
            log.info("camera status", extra={"camera": s.camera_id, "state": s.state, "reason": s.reason,
                                             "flags": [k for k, v in s.flags.items() if v]})
            if self.on_status is not None:
                self.on_status(s)

    def recording(self, state: str, reason: str | None) -> None:
        """Recording started, changed mode or stopped (told by the service, on the loop)."""
        self._publish(recording=state, recording_reason=reason)

    def _offline(self, reason: str) -> None:
        self.debounce.reset()
        self._publish(state="offline", reason=reason, fps=0.0, flags={})

    async def run(self) -> None:
        backoff = 1.0
        while True:
            failure = await probe(self.camera.stream_url, timeout=min(3.0, self.open_timeout_s))
            if failure:
                self._offline(failure)
            else:
                thread = CaptureThread(self.camera.id, self.camera.open_url(), self.camera.mode,
                                       open_timeout_s=self.open_timeout_s, read_timeout_s=self.read_timeout_s)
                thread.want_full = self._want_full
                thread.want_video = self._want_video
                thread.on_video = self.on_video
                thread.recorder = self.recorder
                thread.start()
                self.capture = thread
                try:
                    had_frames = await self._watch(thread)
                finally:
                    thread.stop()
                    self.capture = None
                if had_frames:
                    backoff = 1.0
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def _video_reason(self, thread: CaptureThread) -> str | None:
        """The reader's (a codec browsers cannot play), or keyframes that stopped coming: the
        screens already playing go on, but one that joins has nothing to start from."""
        age = thread.keyframe_age_s
        late = thread.video is not None and age is not None and age > self.keyframe_max_s
        if late != self._keyframes_late:
            self._keyframes_late = late
            extra = {"camera": self.camera.id, "limit_s": self.keyframe_max_s}
            if late:
                log.warning("camera sends no keyframes: screens that join cannot start its video", extra=extra)
            else:
                log.info("camera keyframes back", extra=extra)
        if late:
            return f"no keyframe for over {self.keyframe_max_s:g} s: screens that join wait for the next one"
        return thread.video_reason

    async def _watch(self, thread: CaptureThread) -> bool:
        started = time.time()
        last_seq = 0
        last_frame_at: float | None = None
        window: list[tuple[float, int]] = []
        while True:
            await asyncio.sleep(self.sample_every_s)
            now = time.time()
            frame = thread.latest
            if frame is not None and frame.seq != last_seq:
                last_seq = frame.seq
                last_frame_at = frame.captured_at
                stats = await asyncio.to_thread(analyse, frame.image)
                self.tracker.update(stats, frame.captured_at)
                if self.on_frame is not None:
                    self.on_frame(frame)
            window.append((now, thread.frames))
            window = window[-10:]
            fps = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) if len(window) > 1 else 0.0
            if last_frame_at is None:
                # no picture yet: allow for the open itself before calling it offline
                if not thread.is_alive():
                    self._offline(thread.error or "the stream did not open")
                    return False
                if now - started > self.open_timeout_s + self.offline_after_s:
                    self._offline(f"no picture {now - started:.0f} s after connecting")
                    return False
                continue
            age = now - last_frame_at
            if thread.keyframes_only and thread.packet_at is not None:
                # only keyframes are decoded: the packets between them prove the camera is
                # there (a GOP longer than offline_after_s is not an outage; its tile ages)
                age = min(age, now - thread.packet_at)
            if age > self.offline_after_s:
                self._offline(f"no new frame for {age:.1f} s")
                return True
            if not thread.is_alive():
                self._offline(thread.error or "the reader stopped")
                return True
            self._publish(state="online", reason=None, fps=fps, keyframe_interval_s=thread.keyframe_interval_s,
                          width=thread.width, height=thread.height,
                          video=thread.video, video_reason=self._video_reason(thread), damaged=thread.decode_errors,
                          last_frame_at=last_frame_at, motion=self.tracker.motion,
                          flags=self.debounce.update(self.tracker.states(last_frame_at), now))
