"""One camera stream's recording: its own H.264 packets remuxed into MP4 segments, never decoded.

A `Recorder` records one stream of a camera (`main`, or its `sub`-stream beside it, for small
replay tiles) and is driven by the reader thread of that stream (capture.py):
`begin` when the stream opens, `packet` for each packet as it is read, `end` before the
stream closes. Our own RTSP reader (rtp_reader.py) has no demuxed stream to give as the
output's template: it begins with `h264_template` of its first keyframe (the SPS and PPS in
front of it make the MP4's `avcC`) and the RTP clock's time base, and hands over each access
unit with `unit`. Doing the muxing in the reader's thread keeps the input stream (the output's
template) alive for exactly as long as it is used and costs no hand-off per packet; the
event loop never touches a file. What the loop needs is handed to it by callbacks:
`on_segment` with each closed segment (for the index) and `on_state` when recording starts,
changes mode or stops (for the camera's status and its "recording" fault).

Segments are fragmented MP4 (a fragment per keyframe), written as `<start>.mp4.part` and
renamed to `<start>-<end>.mp4` once closed: a kill loses at most the segment being written,
every `.mp4` plays. Each starts on a keyframe and is cut at the first keyframe after
`segment_s`; a stream that ends (the camera dropped) closes the open segment there, which
leaves a gap until it comes back. Times are capture times (the wall clock when the packet
was read); inside a file the camera's own timestamps are kept, rebased to start at zero.

The wall clock may jump (an NTP step, an operator setting the time): a segment's times are
its first packet's wall time plus the monotonic clock's progress since, so a segment's index
entry always spans exactly its media and an instant inside it lines up with its frames (the
time machine seeks by those times). A jump is followed from the next segment on: that
segment starts at the new wall time (a gap or an overlap the size of the jump, in the index,
never a segment dropped for ending before it began).

`events` mode keeps the last GOPs in memory (at least `pre_roll_s`) and writes them, then
everything, while `record_until` is in the future (the service moves it on camera events).

A write that fails (disk full, or any OSError) drops the segment being written, marks the
recorder stopped with the reason and tries again `RETRY_S` later; it is "recording" again
only once a segment closes well. `blocked` (set by the service while the quota is taken by
kept evidence) stops new segments the same way, without trying.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av

from ioc.core.contracts.video_frame import Stream
from ioc.core.recordings import part_path, segment_path

log = logging.getLogger("ioc.camera.recording")

RETRY_S = 10.0
CLOCK_STEP_S = 0.5  # the wall clock moved this much against the monotonic one: a jump
CUT_EARLY_S = 0.2
MAX_PRE_ROLL_GOPS = 64  # a camera with a very short GOP still keeps a bounded pre-roll
MOVFLAGS = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


@dataclass(frozen=True, slots=True)
class SegmentDone:
    camera: str
    start: float
    end: float
    bytes: int
    path: str  # relative to the recordings directory
    stream: Stream = "main"


def h264_template(keyframe: bytes) -> av.VideoStream:
    """A stream to template an MP4's video track on, from an Annex B keyframe that carries its
    SPS and PPS: FFmpeg's raw H.264 demuxer reads them into the stream's parameters (size,
    profile, `avcC` extradata) in a few milliseconds. The stream keeps its container alive."""
    container = av.open(io.BytesIO(keyframe), format="h264")
    streams = container.streams.video
    if not streams or not streams[0].codec_context.extradata:
        container.close()
        raise ValueError("no H.264 parameter sets in front of the keyframe")
    return streams[0]


@dataclass(frozen=True, slots=True)
class _Unit:
    data: bytes
    pts: int | None
    dts: int | None
    key: bool
    at: float  # capture time


class Recorder:
    def __init__(self, camera_id: str, root: Path, *, segment_s: float = 4.0, pre_roll_s: float = 10.0,
                 on_segment: Callable[[SegmentDone], None], on_state: Callable[[str, str | None], None],
                 monotonic: Callable[[], float] = time.monotonic, stream: Stream = "main") -> None:
        self.camera_id, self.root, self.stream = camera_id, root, stream
        self.segment_s, self.pre_roll_s = segment_s, pre_roll_s
        self.on_segment, self.on_state = on_segment, on_state  # called in the reader thread
        # written by the event loop, read by the reader thread (plain attributes: one writer each)
        self.mode = "off"
        self.record_until = 0.0
        self.blocked: str | None = None
        # the reader thread's own
        self._template: av.VideoStream | None = None
        self._time_base: Fraction | None = None  # the units' timestamps, when not the template's
        self._out: av.container.OutputContainer | None = None
        self._ostream: av.VideoStream | None = None
        self._part: Path | None = None
        self._file: BinaryIO | None = None
        self._seg_start = 0.0
        self._first_dts: int | None = None
        self._last_dts: int | None = None
        self._last_at = 0.0
        self._frames = 0
        self._gops: deque[list[_Unit]] = deque()
        self._failed: str | None = None
        self._retry_at = 0.0
        self.state: tuple[str, str | None] = ("off", None)
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._monotonic = monotonic
        self._offset: float | None = None  # wall time minus monotonic time, as the open segment keeps it
        self._shift = 0.0  # a wall clock jump seen during the open segment, taken at the next one

    # -- the reader thread -----------------------------------------------------------------
    # A reopened camera's new reader may begin while the old one is still stuck in a read
    # (it is told to stop, and returns within its timeout): the newest reader owns the
    # recorder, the old one's segment is closed when the new one begins, and the old one's
    # calls are ignored from then on.
    def begin(self, stream: av.VideoStream, time_base: Fraction | None = None) -> None:
        """`stream`: the output's template; `time_base`: of the timestamps given to `unit`
        (the template's own when None, as for demuxed packets)."""
        with self._lock:
            self._close_stream()
            self._owner = threading.get_ident()
            self._template = stream
            self._time_base = time_base

    def end(self) -> None:
        """The stream is about to close: close the open segment where the last packet was."""
        with self._lock:
            if self._owner == threading.get_ident():
                self._close_stream()
                self._owner = None

    def _close_stream(self) -> None:
        if self._out is not None:
            frame = (self._last_at - self._seg_start) / max(self._frames - 1, 1) if self._frames > 1 else 0.04
            self._finish(self._last_at + min(max(frame, 0.001), 1.0))
        self._gops.clear()
        self._template = None
        self._time_base = None

    def packet(self, packet: av.Packet, at: float) -> None:
        """A demuxed packet, read at wall time `at`."""
        with self._lock:
            if self._owner == threading.get_ident():
                self._unit(_Unit(bytes(packet), packet.pts, packet.dts, packet.is_keyframe, self._steady(at)))

    def unit(self, data: bytes, pts: int | None, key: bool, at: float) -> None:
        """An Annex B access unit (in decode order) with its presentation time, read at `at`."""
        with self._lock:
            if self._owner == threading.get_ident():
                self._unit(_Unit(data, pts, pts, key, self._steady(at)))

    def _steady(self, at: float) -> float:
        """The capture time on the recorder's own timeline: the wall clock `at`, except that
        a jump of it is taken only when no segment is open (see the module's docstring)."""
        mono = self._monotonic()
        if self._offset is None:
            self._offset = at - mono
        steady = mono + self._offset
        jump = at - steady
        if abs(jump) <= CLOCK_STEP_S:
            self._shift = 0.0
            return steady
        if self._out is None:
            self._offset += jump
            self._shift = 0.0
            return at
        if self._shift == 0.0:
            log.warning("wall clock jumped: the open segment keeps its times, the next one follows",
                        extra={"camera": self.camera_id, "stream": self.stream, "jump_s": round(jump, 3)})
        self._shift = jump
        return steady

    def _unit(self, unit: _Unit) -> None:
        mode, at = self.mode, unit.at
        if mode not in ("continuous", "events") or self._template is None:
            self._finish(at)
            self._gops.clear()
            self._report("off", None)
            return
        wanting = self._wanting(mode, at)
        if self._out is not None:
            if not (unit.key and (not wanting or self._due(at))):
                self._write(unit)
                return
            self._finish(at)
        if mode == "events":
            self._buffer(unit)
        if not wanting:
            return
        if mode == "events":
            units = [u for gop in self._gops for u in gop]
            self._gops.clear()
        else:
            units = [unit]
        for u in units:  # the pre-roll is cut into segments as if it had been written live
            if self._out is not None and u.key and self._due(u.at):
                self._finish(u.at)
            if self._out is None and not (u.key and self._open(u.at)):
                if self._failed is not None:
                    break
                continue  # a segment starts on a keyframe
            self._write(u)

    def _due(self, at: float) -> bool:
        """The open segment is long enough to be cut at this keyframe. A little early counts:
        keyframes come on the camera's clock, read with jitter, and one read 1 ms before
        `segment_s` would otherwise make the segment a whole GOP longer."""
        return at - self._seg_start >= self.segment_s - CUT_EARLY_S

    def _wanting(self, mode: str, at: float) -> bool:
        if self.blocked:
            self._finish(at)
            self._report("stopped", self.blocked)
            return False
        if self._failed is not None:
            self._report("stopped", self._failed)
            if at < self._retry_at:
                return False
        else:
            self._report(mode, None)
        return mode == "continuous" or at < self.record_until

    def _buffer(self, unit: _Unit) -> None:
        if unit.key:
            self._gops.append([unit])
            while len(self._gops) > 1 and (self._gops[1][0].at <= unit.at - self.pre_roll_s
                                           or len(self._gops) > MAX_PRE_ROLL_GOPS):
                self._gops.popleft()
        elif self._gops:
            self._gops[-1].append(unit)

    def _open(self, start: float) -> bool:
        assert self._template is not None
        if self._shift and self._offset is not None:  # the wall clock jumped during the last one
            start += self._shift
            self._offset += self._shift
            self._shift = 0.0
        rel = part_path(self.camera_id, start, self.stream)
        path = self.root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # through a Python file: FFmpeg's own file writer keeps a failed write (ENOSPC) to
            # itself and leaves a truncated file; Python's raises, and PyAV passes it on
            self._file = open(path, "wb")
            self._out = av.open(self._file, "w", format="mp4", options=MOVFLAGS)
            self._ostream = self._out.add_stream_from_template(self._template)
        except (OSError, av.FFmpegError) as exc:
            self._part = path
            self._fail(exc)
            return False
        self._part, self._seg_start = path, start
        self._first_dts = self._last_dts = None
        self._frames = 0
        return True

    def _write(self, unit: _Unit) -> None:
        assert self._out is not None and self._template is not None
        tb = self._time_base or self._template.time_base
        dts = unit.dts if unit.dts is not None else unit.pts
        if dts is None and tb:  # no timestamp from the camera: the capture time
            dts = round((unit.at - self._seg_start) / float(tb)) + (self._first_dts or 0)
        dts = dts or 0
        if self._first_dts is None:
            self._first_dts = dts
        d = dts - self._first_dts
        p = (unit.pts if unit.pts is not None else dts) - self._first_dts
        if self._last_dts is not None and d <= self._last_dts:  # a rewound file, a camera's jump
            shift = self._last_dts + 1 - d
            d, p = d + shift, p + shift
        pkt = av.Packet(unit.data)
        pkt.dts, pkt.pts, pkt.time_base = d, max(p, d), tb
        pkt.is_keyframe = unit.key
        pkt.stream = self._ostream
        try:
            self._out.mux(pkt)
        except (OSError, av.FFmpegError) as exc:
            self._fail(exc)
            return
        self._last_dts, self._last_at = d, unit.at
        self._frames += 1

    def _finish(self, end: float) -> None:
        """Close the open segment and put it in place; `end` is the capture time it ends at."""
        out, part = self._out, self._part
        if out is None or part is None:
            return
        self._out = self._ostream = None
        try:
            out.close()
            self._close_file()
            if self._frames == 0 or end <= self._seg_start:
                part.unlink(missing_ok=True)
                return
            rel = segment_path(self.camera_id, self._seg_start, end, self.stream)
            size = part.stat().st_size
            os.rename(part, self.root / rel)
        except (OSError, av.FFmpegError) as exc:
            self._fail(exc)
            return
        self._part = None
        if self._failed is not None:
            log.info("camera recording resumed", extra={"camera": self.camera_id, "stream": self.stream})
            self._failed = None
            self._report(self.mode, None)
        self.on_segment(SegmentDone(self.camera_id, self._seg_start, end, size, rel, self.stream))

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()  # the last buffered bytes: a full disk can fail here too

    def _fail(self, exc: BaseException) -> None:
        out, part = self._out, self._part
        self._out = self._ostream = None
        self._part = None
        if out is not None:
            with contextlib.suppress(Exception):
                out.close()
        with contextlib.suppress(OSError):
            self._close_file()
        if part is not None:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
        code = getattr(exc, "errno", None)
        why = "disk full" if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else \
            f"cannot write: {getattr(exc, 'strerror', None) or exc}"
        if self._failed is None:
            log.error("camera recording stopped", extra={"camera": self.camera_id, "stream": self.stream, "error": why})
        self._failed = why
        self._retry_at = time.time() + RETRY_S
        self._report("stopped", why)

    def _report(self, state: str, reason: str | None) -> None:
        if self.state != (state, reason):
            self.state = (state, reason)
            self.on_state(state, reason)
