"""A camera stream read through our own RTSP client (camera/rtsp_client.py), not FFmpeg's.

The same one session feeds both outputs, as the FFmpeg path does (camera/capture.py): each
access unit goes to the video sink the moment its last RTP packet is in (the marker bit,
camera/rtp_h264.py), its capture time being that packet's arrival; and the same units go to
a PyAV decoder (`av.CodecContext`, no demuxer) for the tiles and the health analysis:
the units `CaptureThread.decodes` chooses (keyframes only on a main stream, and on a
sub-stream whose keyframes come often enough).

A recorded stream is recorded from the same units (camera/recorder.py): the recorder begins
on the first keyframe with a template made from it, again whenever the camera's SPS changes
(a new size: a new segment with the new parameters), and takes each unit with its RTP time,
unwrapped across the 32-bit clock's turn (every 13.3 hours at 90 kHz).

What stays on FFmpeg (the caller decides): files, non-RTSP URLs, and a camera whose track is
not H.264 (`read_own` returns why, and the capture thread opens it through FFmpeg instead:
the codec is told in the camera's status).
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import av.video.reformatter

from camera.h264 import START, AccessUnits
from camera.recorder import Recorder, h264_template
from camera.rtp_h264 import AccessUnit, Depacketizer, RtpError
from camera.rtsp_client import RtspError, RtspSession, Track, UnsupportedCodec

if TYPE_CHECKING:
    from camera.capture import CaptureThread

log = logging.getLogger("ioc.camera")

POLL_S = 0.5  # how often a quiet stream looks at its stop flag
RTP_TIME_BASE = Fraction(1, 90000)  # H.264's RTP clock (RFC 6184)


class RtpClock:
    """RTP timestamps (32 bits, wrapping) as one rising count, for the recorder."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._turns = 0

    def __call__(self, ts: int) -> int:
        if self._last is not None and ts < self._last and self._last - ts > 1 << 31:
            self._turns += 1  # wrapped forwards (a B-frame's earlier time is a small step back)
        elif self._last is not None and ts > self._last and ts - self._last > 1 << 31:
            self._turns -= 1  # a late unit from before the wrap
        self._last = ts
        return ts + (self._turns << 32)


class _Recording:
    """The recorder's side of one own-read stream: its template follows the camera's SPS."""

    def __init__(self, recorder: Recorder, thread: CaptureThread) -> None:
        self.recorder = recorder
        self.thread = thread
        self.sps: bytes | None = None  # the SPS the recorder's template was made from
        self.clock = RtpClock()
        self.gap = False  # packets were lost: nothing is written until the next keyframe

    def unit(self, units: AccessUnits, data: bytes, key: bool, rtp_ts: int, at: float) -> None:
        pts = self.clock(rtp_ts)
        if self.gap and not key:
            return  # a picture after a lost one would play damaged until the next keyframe
        self.gap = False
        if key and units.sps is not None and units.sps != self.sps:
            try:
                self.recorder.begin(h264_template(data), RTP_TIME_BASE)
            except (ValueError, av.FFmpegError) as exc:
                log.warning("camera recording: no template from the keyframe",
                            extra={"camera": self.thread.camera_id, "error": str(exc)[:200]})
                return
            self.sps = units.sps
        if self.sps is not None:
            self.recorder.unit(data, pts, key, at)


def read_own(thread: CaptureThread, opens: threading.BoundedSemaphore) -> str | None:
    """Read `thread`'s camera until stopped or failed (`thread.error` says why). Returns,
    without having read anything, why FFmpeg must read it instead (a codec we do not
    depacketise); None otherwise."""
    session = RtspSession(thread.url, timeout_s=thread.open_timeout_s)
    with opens:
        if thread.stopped:
            thread.error = "stopped before it opened"
            return None
        try:
            track = session.open()
        except UnsupportedCodec as exc:
            session.close()
            why = f"own RTSP reader: {exc}; read through FFmpeg"
            log.info("camera read through FFmpeg", extra={"camera": thread.camera_id, "stream": thread.stream,
                                                          "reason": why})
            return why
        except RtspError as exc:
            session.close()
            thread.error = f"the stream did not open: {exc}"
            return None
    try:
        _read(thread, session, track)
    except RtspError as exc:
        thread.error = f"the stream failed: {exc}"
        log.warning("camera stream failed", extra={"camera": thread.camera_id, "stream": thread.stream,
                                                  "error": thread.error})
    finally:
        if thread.recorder is not None:  # the open segment closes where the last unit was
            thread.recorder.end()
        session.close()
    return None


def _read(thread: CaptureThread, session: RtspSession, track: Track) -> None:
    units = AccessUnits(b"".join(START + nal for nal in track.parameter_sets))
    thread.reader = "own"
    thread.video, thread.video_reason = "h264", None
    thread.width, thread.height = units.width, units.height
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1  # see DECODER_THREADS in camera/capture.py
    depacketizer = Depacketizer(track.payload_type)
    scaler = av.video.reformatter.VideoReformatter()
    thread.opened.set()
    log.info("camera stream open", extra={"camera": thread.camera_id, "stream": thread.stream, "reader": "own",
                                          "width": units.width, "height": units.height})
    recording = _Recording(thread.recorder, thread) if thread.recorder is not None else None
    seq = 0
    forwarding = False
    heard = time.monotonic()
    finished: list[AccessUnit] = []
    while not thread.stopped:
        got = session.read_packets(min(POLL_S, thread.read_timeout_s))
        if got is None:
            if time.monotonic() - heard > thread.read_timeout_s:
                raise RtspError(f"no video for {thread.read_timeout_s:g} s (the stream ended or stopped sending)")
            continue
        heard = time.monotonic()
        packets, arrived = got
        for packet in packets:
            lost = depacketizer.lost
            try:
                depacketizer.feed(packet, arrived, finished)
            except RtpError as exc:
                thread.damaged(str(exc))
                continue
            if depacketizer.lost != lost:
                thread.damaged(f"{depacketizer.lost - lost} RTP packets lost: video waits for the next keyframe")
                forwarding = False
                if recording is not None:
                    recording.gap = True
            for unit in finished:
                seq += 1
                thread.frames = seq
                thread.packet_at = unit.arrived
                if unit.key:
                    thread.keyframes.append(time.monotonic())
                try:
                    data, key = units.convert(unit.data, unit.key)
                except ValueError as exc:
                    thread.damaged(str(exc))
                    continue
                sink = thread.on_video
                if sink is not None and thread.want_video:
                    forwarding = thread.send_unit(units, data, key, unit.arrived, seq, forwarding, sink)
                else:
                    forwarding = False
                if recording is not None:
                    recording.unit(units, data, key, unit.timestamp, unit.arrived)
                if not thread.decodes(key):
                    continue
                try:
                    pictures = decoder.decode(av.Packet(data))
                except av.FFmpegError as exc:
                    thread.damaged(str(exc.strerror or exc))
                    continue
                thread.pictures(pictures, scaler, seq)
            finished.clear()
