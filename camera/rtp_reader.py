"""A camera stream read through our own RTSP client (camera/rtsp_client.py), not FFmpeg's.

The same one session feeds both outputs, as the FFmpeg path does (camera/capture.py): each
access unit goes to the video sink the moment its last RTP packet is in (the marker bit,
camera/rtp_h264.py), its capture time being that packet's arrival; and the same units go to
a PyAV decoder (`av.CodecContext`, no demuxer) for the tiles and the health analysis:
keyframes only on a main stream in "main-keyframes" mode, every unit otherwise.

What stays on FFmpeg (the caller decides): files, non-RTSP URLs, recorded streams (the
recorder muxes PyAV packets of a demuxed stream), and a camera whose track is not H.264
(`read_own` returns why, and the capture thread opens it through FFmpeg instead: the codec
is told in the camera's status).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import av
import av.video.reformatter

from camera.h264 import START, AccessUnits
from camera.rtp_h264 import AccessUnit, Depacketizer, RtpError
from camera.rtsp_client import RtspError, RtspSession, Track, UnsupportedCodec

if TYPE_CHECKING:
    from camera.capture import CaptureThread

log = logging.getLogger("ioc.camera")

POLL_S = 0.5  # how often a quiet stream looks at its stop flag


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
        session.close()
    return None


def _read(thread: CaptureThread, session: RtspSession, track: Track) -> None:
    units = AccessUnits(b"".join(START + nal for nal in track.parameter_sets))
    thread.reader = "own"
    thread.video, thread.video_reason = "h264", None
    thread.width, thread.height = units.width, units.height
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1  # see DECODER_THREADS in camera/capture.py
    keyframes_only = thread.mode == "main-keyframes"
    depacketizer = Depacketizer(track.payload_type)
    scaler = av.video.reformatter.VideoReformatter()
    thread.opened.set()
    log.info("camera stream open", extra={"camera": thread.camera_id, "stream": thread.stream, "reader": "own",
                                          "width": units.width, "height": units.height})
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
                if not thread.decode or (keyframes_only and not key):
                    continue
                try:
                    pictures = decoder.decode(av.Packet(data))
                except av.FFmpegError as exc:
                    thread.damaged(str(exc.strerror or exc))
                    continue
                thread.pictures(pictures, scaler, seq)
            finished.clear()
