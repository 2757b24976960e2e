"""Live video from a reader thread to the broker, never blocking the reader, never queueing.

A `VideoForwarder` is the `on_video` sink of the readers of one camera stream. The reader
calls it in its own thread with each access unit; it frames the unit (the IOCV contract) in
that thread and hands the bytes to the event loop, which publishes them at QoS 0, not
retained. When the loop falls `MAX_BEHIND` units behind (a busy or stalled loop), units are
dropped rather than queued, up to the next keyframe: a browser cannot decode the pictures
after a missing one, and a late frame is worth nothing on a live wall.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ioc.core.contracts import topics
from ioc.core.contracts.video_frame import Stream, VideoHeader, encode_video

log = logging.getLogger("ioc.camera")

MAX_BEHIND = 8  # units handed to the loop and not yet published (1/3 s at 25 fps)


class VideoForwarder:
    """One camera stream's units to `publish(topic, payload)`, called on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, publish: Callable[[str, bytes], object],
                 camera_id: str, stream: Stream) -> None:
        self._loop = loop
        self._publish = publish
        self.camera_id = camera_id
        self.stream = stream
        self.topic = topics.live_camera(camera_id, "video/main" if stream == "main" else "video/sub")
        self._handed = 0  # written by reader threads only
        self._sent = 0  # written by the loop only: the difference is the backlog, without a lock
        self._need_key = False
        self.dropped = 0

    def __call__(self, header: VideoHeader, access_unit: bytes) -> None:
        """Called in the reader thread: frame the unit and pass it on, or drop it."""
        if self._handed - self._sent >= MAX_BEHIND:
            if not self._need_key:
                log.warning("camera video dropped: the event loop is behind",
                            extra={"camera": self.camera_id, "stream": self.stream})
            self._need_key = True
        if self._need_key and (not header["key"] or self._handed - self._sent >= MAX_BEHIND):
            self.dropped += 1
            return
        self._need_key = False
        payload = encode_video(header, access_unit)
        self._handed += 1
        try:
            self._loop.call_soon_threadsafe(self._send, payload)
        except RuntimeError:  # the loop has closed: the service is stopping
            self._sent += 1

    def _send(self, payload: bytes) -> None:
        self._sent += 1
        self._publish(self.topic, payload)
