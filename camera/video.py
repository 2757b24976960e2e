"""Live video from the reader threads to the broker, never blocking a reader, never queueing.

A `VideoForwarder` is the `on_video` sink of the readers of one camera stream. The reader
calls it in its own thread with each access unit; it frames the unit (the IOCV contract) in
that thread and puts the bytes in the service's one `VideoOutbox`, which hands them to the
event loop, where they are published at QoS 0, not retained. When the loop falls
`MAX_BEHIND` units of a stream behind (a busy or stalled loop), that stream's units are
dropped rather than queued, up to the next keyframe: a browser cannot decode the pictures
after a missing one, and a late frame is worth nothing on a live wall.

Why one outbox for every stream: each hand-over to the loop is a write to its wake-up socket
and a turn of the loop (ten 1080p25 cameras: 250 units a second). Units that come while a
hand-over is already on its way ride with it, in the order they came, and go out in one
write to the broker; a unit never waits for others to come (no timer, no batch size).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from ioc.core.contracts import topics
from ioc.core.contracts.video_frame import Stream, VideoHeader, encode_video

log = logging.getLogger("ioc.camera")

MAX_BEHIND = 8  # a stream's units handed to the loop and not yet published (1/3 s at 25 fps)

PublishMany = Callable[[list[tuple[str, bytes]]], object]  # (topic, payload) pairs, in order, on the loop


class VideoOutbox:
    """Units from any reader thread to `publish_many` on `loop`: one wake-up of the loop for
    whatever is waiting when it runs, in the order the units came."""

    def __init__(self, loop: asyncio.AbstractEventLoop, publish_many: PublishMany) -> None:
        self._loop = loop
        self._publish_many = publish_many
        self._waiting: deque[tuple[VideoForwarder, bytes]] = deque()
        self._woken = False  # a hand-over is on its way: units put now ride with it
        self.wakeups = 0  # hand-overs asked of the loop (for tests and figures)

    def put(self, forwarder: VideoForwarder, payload: bytes) -> None:
        """Called in a reader thread. Lock-free: deque appends and pops are atomic, and the
        loop clears `_woken` before it takes the waiting units, so a unit put meanwhile is
        either taken by this hand-over or asks for the next."""
        self._waiting.append((forwarder, payload))
        if self._woken:
            return
        self._woken = True
        self.wakeups += 1
        try:
            self._loop.call_soon_threadsafe(self._hand_over)
        except RuntimeError:  # the loop has closed: the service is stopping
            self._woken = False
            self._discard()

    def _hand_over(self) -> None:
        self._woken = False
        batch: list[tuple[str, bytes]] = []
        waiting = self._waiting
        while waiting:
            forwarder, payload = waiting.popleft()
            forwarder.sent += 1
            batch.append((forwarder.topic, payload))
        if batch:
            self._publish_many(batch)

    def _discard(self) -> None:
        while self._waiting:
            forwarder, _ = self._waiting.popleft()
            forwarder.sent += 1


class VideoForwarder:
    """One camera stream's units into `outbox`, towards `topics.live_camera(camera, "video/<stream>")`."""

    def __init__(self, outbox: VideoOutbox, camera_id: str, stream: Stream) -> None:
        self._outbox = outbox
        self.camera_id = camera_id
        self.stream = stream
        self.topic = topics.live_camera(camera_id, "video/main" if stream == "main" else "video/sub")
        self.handed = 0  # written by reader threads only
        self.sent = 0  # written by the loop only: the difference is the backlog, without a lock
        self._need_key = False
        self.dropped = 0

    def __call__(self, header: VideoHeader, access_unit: bytes) -> None:
        """Called in the reader thread: frame the unit and pass it on, or drop it."""
        if self.handed - self.sent >= MAX_BEHIND:
            if not self._need_key:
                log.warning("camera video dropped: the event loop is behind",
                            extra={"camera": self.camera_id, "stream": self.stream})
            self._need_key = True
        if self._need_key and (not header["key"] or self.handed - self.sent >= MAX_BEHIND):
            self.dropped += 1
            return
        self._need_key = False
        self.handed += 1
        self._outbox.put(self, encode_video(header, access_unit))
