"""One camera's stream: a PyAV (FFmpeg) reader in its own thread, packets forwarded, latest frame wins.

The thread demuxes the camera's compressed stream. Each H.264 access unit goes, as it
arrives and while someone watches this camera live, to `on_video` (Annex B, SPS/PPS on
keyframes: camera/h264.py), never decoded or re-encoded for that. Separately it decodes only
what the tiles and the health analysis need and keeps the newest frame with its capture
time; it never queues, so a slow consumer simply sees fewer frames. Blocking FFmpeg calls
stay off the event loop (PyAV releases the GIL in them). Facts that shape this (measured on
these machines):

- One RTSP session per stream: the packets that feed the video are the ones the tiles are
  decoded from. A camera is still probed over RTSP first (`probe`, on the event loop,
  cheap), and only a camera that answers is opened.
- Opens run in parallel (FFmpeg's open is thread-safe, and PyAV takes its options per open,
  not from the process environment as OpenCV did); a semaphore still caps how many run at
  once (`OPEN_AT_ONCE`, each probes its stream): with many cameras a reader may queue for
  seconds and the watchdog may give up on it meanwhile: a reader stopped before its turn
  does not open.
- A stalled camera makes the demuxer block until the read timeout; liveness therefore comes
  from the time of the last new frame (the watchdog), not from the reader's answer.
- The main stream in "main-keyframes" mode: every packet is read (and forwarded when
  wanted), only keyframes reach the decoder, as OpenCV's `avdiscard;nonkey` did. `frames`
  counts every access unit, so the status shows the stream's real frame rate.
- A sub-stream ("sub-full" mode) is decoded whole only until its keyframe interval is
  known: a camera sending a keyframe at least every `SUB_KEYFRAMES_MAX_GOP_S` has its
  keyframes alone decoded, as a main stream's are (a tile a second and the health analysis
  need no more; decoding ten 360p streams' every frame was a third of the camera service's
  CPU once their video was forwarded too). A longer GOP is decoded whole, so tiles keep
  coming and a still picture is not taken for a frozen one.
- One decoder thread per camera, not one per core: frame threading holds one more frame
  back (+40 ms at 25 fps) and keeps a second decoder context with its own pictures (~5 MB
  at 1080p), for no gain at the rates tiles need; cameras run in parallel anyway. The
  scaler runs in the reader's thread too.
- Every conversion returns a new array (6 MB at 1080p). glibc serves the first ones with
  mmap, then raises its mmap threshold (up to 32 MB) and serves the rest from its heaps,
  whose freed pages stay resident: ~9 MB more per 1080p camera. `keep_frames_off_the_heap`
  pins the threshold at 1 MiB for the process (the camera service calls it).
- Consumers that want each new frame as soon as it is decoded (the tiles) wait with
  `next_frame`; the thread wakes only those waiting, never the event loop per frame.
- A 1080p picture is reduced to 640x360 once, by FFmpeg's scaler straight from the decoded
  YUV (cheaper than converting the whole picture to BGR and resizing it), and only the small
  one is kept (`Frame.image`): the SD tile and the analysis both need that size. The whole
  picture in BGR rides along (`Frame.full`) only while `want_full` is set: a wall screen
  shows this camera large and asks for HD tiles. Frames are made at most every 0.1 s
  unless a consumer waits, so a 25 fps stream is not reduced 25 times a second for a 2 Hz
  reader.
- A codec the browsers cannot decode (H.265, MJPEG, ...) is still decoded for tiles and
  health; `video` is None and `video_reason` says why, for the camera's status.

With `RTSP_READER = "own"` (IOC_CAMERA_RTSP_READER) an rtsp:// camera is read by our own
RTSP/RTP reader instead (camera/rtp_reader.py): the same outputs from the same one session,
each access unit handed on at its RTP marker bit rather than when the next one starts (40 ms
sooner at 25 fps), and the recorder records those units. Files and a camera whose codec it
does not take stay here.

A `file:///path/video.mp4` source is read through the same path, as a camera would be:
every frame decoded, paced by the clock at the file's own frame rate (a file would otherwise
be read as fast as the CPU allows), and rewound at its end, so it plays as an endless loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import sys
from collections import deque
import threading
import time
from collections.abc import Callable
from typing import Literal
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import av
import av.video.reformatter
import cv2
import numpy as np

from camera.h264 import AccessUnits
from camera.recorder import Recorder
from camera.rtp_reader import read_own
from ioc.core.cameras import StreamMode
from ioc.core.contracts.video_frame import Stream, VideoHeader

log = logging.getLogger("ioc.camera")

OPEN_AT_ONCE = 8
_OPENS = threading.BoundedSemaphore(OPEN_AT_ONCE)
DECODER_THREADS = 1
# what OpenCV was given before (`rtsp_transport;tcp|analyzeduration;0|probesize;32|
# fpsprobesize;0`): the SDP already says what the stream is, so no probing of the media
RTSP_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32", "fpsprobesize": "0"}
# who reads rtsp:// cameras: "own" (camera/rtp_reader.py: an access unit goes on at its RTP
# marker bit) or "ffmpeg" (its demuxer, one frame interval later); IOC_CAMERA_RTSP_READER,
# set by `ioc cameras` from the settings (use_rtsp_reader)
SUB_KEYFRAMES_MAX_GOP_S = 1.5  # a sub-stream with keyframes this close has only them decoded
RTSP_READER: Literal["own", "ffmpeg"] = "ffmpeg" if os.environ.get("IOC_CAMERA_RTSP_READER") == "ffmpeg" else "own"
BROWSER_CODECS = ("h264",)  # what every wall browser decodes with WebCodecs

VideoSink = Callable[[VideoHeader, bytes], None]  # called in the reader thread; must not block

SMALL = (640, 360)  # the tile and analysis size; larger pictures are reduced once, in the reader
MAKE_EVERY_S = 0.1  # with nobody waiting, a new Frame at most this often (fps still counts all)


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray  # at most 640x360: what the SD tile and the health analysis use
    captured_at: float  # wall-clock time the frame came out of the decoder
    seq: int
    full: np.ndarray | None = None  # the decoded picture, kept only while a wall asks for HD


def reduce(image: np.ndarray) -> np.ndarray:
    """The picture at most 640x360, aspect kept, without aliasing.

    Halvings by pixel area first (OpenCV's 2x2 fast path), then bilinear for the rest (at
    most 2x, where bilinear does not alias): 0.9 ms for 1080p -> 640x360 against 2.8 ms for
    one INTER_AREA resize, and within half a grey level of it on average."""
    h, w = image.shape[:2]
    scale = min(SMALL[0] / w, SMALL[1] / h)
    if scale >= 1.0:
        return image
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    while image.shape[1] >= 2 * tw and image.shape[0] >= 2 * th:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if image.shape[:2] != (th, tw):
        image = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
    return image


def keep_frames_off_the_heap() -> None:
    """Large allocations (decoded frames) straight from mmap, so that freeing one returns it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_mmap_threshold = -3  # malloc.h
    mallopt(m_mmap_threshold, 1 << 20)


def name_os_thread(name: str) -> None:
    """The calling thread's name as `top -H` and /proc show it (Linux keeps 15 bytes): an
    admin looking at a busy service sees which camera's reader it is."""
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return
    pr_set_name = 15  # linux/prctl.h
    prctl(pr_set_name, name.encode("utf-8", "replace")[:15], 0, 0, 0)


def file_path(url: str) -> str | None:
    """The local path of a `file:` source, None for a network camera."""
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme == "file" else None


async def probe(url: str, timeout: float = 3.0) -> str | None:
    """Ask the camera for RTSP OPTIONS; None when it answers, else why not.

    Any RTSP answer counts (401 included): it proves the camera is there, and the real
    open will say if the credentials are wrong. A file source only has to be readable.
    """
    path = file_path(url)
    if path is not None:
        return None if os.path.isfile(path) and os.access(path, os.R_OK) else f"cannot read the video file {path}"
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 554
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"cannot connect to {host}:{port}: {exc or 'timed out'}"
    try:
        clean = parts._replace(netloc=f"{host}:{port}").geturl()
        writer.write(f"OPTIONS {clean} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: ioc-camera\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line.startswith(b"RTSP/1."):
            return f"no RTSP answer from {host}:{port}"
        return None
    except (OSError, asyncio.TimeoutError):
        return f"no RTSP answer from {host}:{port} within {timeout:g} s"
    finally:
        writer.close()


class CaptureThread(threading.Thread):
    """Opens one stream, forwards its access units while wanted and keeps its newest frame,
    until told to stop or the stream fails.

    `decode=False` makes a video-only reader: packets forwarded, nothing decoded (the other
    stream of a camera whose tiles come from this one)."""

    def __init__(self, camera_id: str, url: str, mode: StreamMode, *,
                 open_timeout_s: float = 5.0, read_timeout_s: float = 5.0,
                 stream: Stream | None = None, decode: bool = True) -> None:
        super().__init__(name=f"capture-{camera_id}", daemon=True)
        self.camera_id = camera_id
        self._url = url
        self.mode = mode
        self.stream: Stream = stream or ("sub" if mode == "sub-full" else "main")
        self.decode = decode
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.latest: Frame | None = None
        self.opened = threading.Event()
        self.error: str | None = None
        self.frames = 0
        self.packet_at: float | None = None  # wall-clock time the newest packet came in
        self.keyframes: deque[float] = deque(maxlen=6)  # when the last keyframes came in
        self.width = 0
        self.height = 0
        self.video: str | None = None  # "h264" once open, if the browsers can play it
        self.video_reason: str | None = None  # why not, when they cannot
        self.decode_errors = 0  # packets that did not decode and pictures that came out damaged
        # whether only keyframes reach the decoder now (decided at each keyframe: `decodes`)
        self.keyframes_only = mode == "main-keyframes"
        self.every_frame = False  # a file: every frame decoded, paced at its frame rate
        self.want_full = False  # set from the event loop: a wall wants this camera's HD tiles
        self.want_video = False  # set from the event loop: someone watches this stream live
        self.on_video: VideoSink | None = None
        self.recorder: Recorder | None = None  # set before start: this stream is the one recorded
        self.reader = "ffmpeg"  # or "own": camera/rtp_reader.py read it (RTSP_READER)
        self.reader_note: str | None = None  # why FFmpeg reads it although our reader was asked for
        self._made_at = 0.0  # when the last Frame was made
        self._stop_flag = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Frame]]] = []
        self._waiters_lock = threading.Lock()

    async def next_frame(self, after_seq: int, timeout: float) -> Frame | None:
        """The newest frame as soon as there is one other than `after_seq`; None after `timeout`."""
        frame = self.latest
        if frame is not None and frame.seq != after_seq:
            return frame
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Frame] = loop.create_future()
        with self._waiters_lock:
            self._waiters.append((loop, fut))
        try:
            frame = self.latest  # a frame may have come between the check and the registration
            if frame is not None and frame.seq != after_seq:
                return frame
            try:
                return await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                return None
        finally:
            with self._waiters_lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, fut))

    def _wake(self, frame: Frame) -> None:
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_resolve, fut, frame)

    def decodes(self, key: bool) -> bool:
        """Whether this access unit goes to the decoder. Called for every unit in order, after
        a keyframe was counted in `keyframes`; the choice changes only at a keyframe, where a
        decoder may start (or stop skipping pictures) without a missing reference."""
        if not self.decode:
            return False
        if self.every_frame:
            return True
        if key and self.mode == "sub-full":
            gop = self.keyframe_interval_s
            self.keyframes_only = gop is not None and gop <= SUB_KEYFRAMES_MAX_GOP_S
        return key or not self.keyframes_only

    @property
    def keyframe_interval_s(self) -> float | None:
        """The median time between the last keyframes (the camera's GOP, as it arrives)."""
        k = list(self.keyframes)
        if len(k) < 3:
            return None
        gaps = sorted(b - a for a, b in zip(k, k[1:]))
        return round(gaps[len(gaps) // 2], 2)

    @property
    def keyframe_age_s(self) -> float | None:
        """Seconds since the last keyframe came in (None before the first)."""
        return time.monotonic() - self.keyframes[-1] if self.keyframes else None

    @property
    def url(self) -> str:
        return self._url

    @property
    def stopped(self) -> bool:
        return self._stop_flag.is_set()

    def stop(self) -> None:
        """Ask the thread to end; a read blocked on a dead camera returns within its timeout."""
        self._stop_flag.set()

    def run(self) -> None:
        name_os_thread(f"cap:{self.camera_id}")
        path = file_path(self._url)
        if path is None and self.own_reader_wanted():
            self.reader_note = read_own(self, _OPENS)
            if self.reader_note is None:
                return
        with _OPENS:
            if self._stop_flag.is_set():
                # given up on while it queued: opening now would only make every reader
                # queued behind it wait one more open (~0.5-1 s, to the next keyframe)
                self.error = "stopped before it opened"
                return
            try:
                # RTSP tuning would starve a file's probe: a file opens with FFmpeg's defaults
                container = av.open(path, timeout=self.read_timeout_s) if path is not None else av.open(
                    self._url, options={**RTSP_OPTIONS, "timeout": str(int(self.read_timeout_s * 1e6))},
                    timeout=(self.open_timeout_s, self.read_timeout_s))
            except (av.FFmpegError, OSError) as exc:
                self.error = f"the stream did not open (wrong path or credentials, or no video): {_why(exc)}"
                return
        try:
            streams = container.streams.video
            if not streams:
                self.error = "the stream has no video"
                return
            self._read(container, streams[0], path is not None)
        except (av.FFmpegError, OSError) as exc:
            self.error = f"the stream failed: {_why(exc)}"
            log.warning("camera stream failed", extra={"camera": self.camera_id, "stream": self.stream,
                                                      "error": self.error})
        finally:
            if self.recorder is not None:  # its segment closes cleanly before its template goes
                self.recorder.end()
            container.close()

    def own_reader_wanted(self) -> bool:
        """Our RTSP reader reads this stream: asked for, and an rtsp:// URL."""
        return RTSP_READER == "own" and urlsplit(self._url).scheme.lower() == "rtsp"

    def _read(self, container: av.container.InputContainer, video: av.VideoStream, is_file: bool) -> None:
        ctx = video.codec_context
        ctx.thread_count = DECODER_THREADS
        if ctx.name in BROWSER_CODECS:
            self.video, self.video_reason = ctx.name, None
            units: AccessUnits | None = AccessUnits(ctx.extradata)
        else:
            self.video, self.video_reason = None, f"{ctx.name}: not playable in browsers, snapshots only"
            if self.reader_note:
                self.video_reason += f" ({self.reader_note})"
            units = None
            log.info("camera video not forwarded", extra={"camera": self.camera_id, "reason": self.video_reason})
        if is_file:
            self.every_frame, self.keyframes_only = True, False
        rate = video.average_rate or video.guessed_rate
        period = 1.0 / min(max(float(rate or 25.0), 1.0), 60.0) if is_file else 0.0
        self.width, self.height = ctx.width, ctx.height
        recorder = self.recorder
        if recorder is not None and units is not None:
            recorder.begin(video)
        else:
            recorder = None  # only H.264 is recorded (what the playback and the wall play)
        self.opened.set()
        scaler = av.video.reformatter.VideoReformatter()
        due = time.monotonic()
        seq = 0
        forwarding = False  # the video sink has had this stream's last keyframe and all since
        packets = container.demux(video)
        read_since_rewind = 0
        while not self._stop_flag.is_set():
            packet = next(packets, None)
            if packet is None or packet.size == 0:
                if packet is not None:
                    continue  # the demuxer's flush packet at the end of a file
                if not is_file or read_since_rewind == 0:
                    self.error = "the stream ended or stopped sending"
                    return
                container.seek(0)  # end of the file: play it again
                ctx.flush_buffers()
                packets, read_since_rewind = container.demux(video), 0
                continue
            read_since_rewind += 1
            if period:
                due += period
                ahead = due - time.monotonic()
                if ahead > 0:
                    self._stop_flag.wait(ahead)
                elif ahead < -1.0:
                    due = time.monotonic()  # fell behind (a busy machine): do not race to catch up
            seq += 1
            self.frames = seq
            self.packet_at = time.time()
            key = packet.is_keyframe
            if key:
                self.keyframes.append(time.monotonic())
            sink = self.on_video
            if units is not None and sink is not None and self.want_video and not packet.is_corrupt:
                forwarding = self.forward(units, bytes(packet), packet.is_keyframe, time.time(), seq,
                                           forwarding, sink)
            else:
                forwarding = False  # a corrupt packet: the browser starts again at a keyframe
            if recorder is not None and not packet.is_corrupt:
                recorder.packet(packet, time.time())
            if not self.decodes(key):
                continue
            try:
                pictures = ctx.decode(packet)
            except av.FFmpegError as exc:  # a damaged packet: the next ones may decode
                self.damaged(_why(exc))
                continue
            self.pictures(pictures, scaler, seq)

    def pictures(self, pictures: list[av.VideoFrame], scaler: av.video.reformatter.VideoReformatter,
                  seq: int) -> None:
        """Keep the newest decoded picture (reduced) and wake those waiting for it."""
        for picture in pictures:
            if picture.is_corrupt:
                # FFmpeg patched it up from what it had: no tile or health verdict from that
                self.damaged("damaged picture, concealed by the decoder")
                continue
            if (picture.width, picture.height) != (self.width, self.height):
                log.info("camera picture size changed", extra={
                    "camera": self.camera_id, "stream": self.stream, "was": f"{self.width}x{self.height}",
                    "now": f"{picture.width}x{picture.height}"})
                self.width, self.height = picture.width, picture.height
            now = time.monotonic()
            if not self._waiters and now - self._made_at < MAKE_EVERY_S:
                continue
            self._made_at = now
            frame = self._frame(scaler, picture, seq)
            self.latest = frame
            if self._waiters:
                self._wake(frame)

    def damaged(self, error: str) -> None:
        """Count a packet that did not decode or a picture that came out damaged; the log says
        so at the 1st, 10th, 100th and every 1000th (a lossy link damages many)."""
        self.decode_errors += 1
        if self.decode_errors in (1, 10, 100) or self.decode_errors % 1000 == 0:
            log.warning("camera packet did not decode", extra={
                "camera": self.camera_id, "stream": self.stream, "errors": self.decode_errors, "error": error})

    def forward(self, units: AccessUnits, unit: bytes, maybe_key: bool, captured_at: float, seq: int,
                 forwarding: bool, sink: VideoSink) -> bool:
        """Hand one access unit to the video sink; False while it waits for a keyframe."""
        try:
            data, key = units.convert(unit, maybe_key)
        except ValueError as exc:
            log.warning("camera packet not forwarded", extra={"camera": self.camera_id, "error": str(exc)})
            return False
        return self.send_unit(units, data, key, captured_at, seq, forwarding, sink)

    def send_unit(self, units: AccessUnits, data: bytes, key: bool, captured_at: float, seq: int,
                  forwarding: bool, sink: VideoSink) -> bool:
        """`forward` for a unit `units.convert` already made (our RTSP reader converts every
        unit for its decoder anyway: a keyframe is not walked twice)."""
        if not (forwarding or key) or units.codec is None:
            return False
        header: VideoHeader = {"camera": self.camera_id, "stream": self.stream, "seq": seq,
                               "captured_at": captured_at, "key": key, "codec": units.codec,
                               "width": units.width or self.width, "height": units.height or self.height}
        sink(header, data)
        return True

    def _frame(self, scaler: av.video.reformatter.VideoReformatter, picture: av.VideoFrame, seq: int) -> Frame:
        """The picture reduced to at most 640x360 BGR (and whole, while HD tiles are wanted)."""
        captured_at = time.time()
        if self.want_full:
            full = picture.to_ndarray(format="bgr24")
            return Frame(reduce(full), captured_at, seq, full)
        w, h = picture.width, picture.height
        scale = min(SMALL[0] / w, SMALL[1] / h, 1.0)
        small = scaler.reformat(picture, width=max(1, round(w * scale)), height=max(1, round(h * scale)),
                                format="bgr24", threads=1).to_ndarray()
        return Frame(small, captured_at, seq)


def use_rtsp_reader(reader: Literal["own", "ffmpeg"]) -> None:
    """Who reads the rtsp:// cameras opened from now on (the setting IOC_CAMERA_RTSP_READER)."""
    global RTSP_READER
    RTSP_READER = reader


def join_captures(timeout: float) -> int:
    """Stop every capture thread and wait for them (up to `timeout` in all); returns how many
    are still running. A process that exits while a reader is inside FFmpeg can abort with
    "terminate called without an active exception"; ending them first avoids that."""
    threads = [t for t in threading.enumerate() if isinstance(t, CaptureThread)]
    for t in threads:
        t.stop()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return sum(t.is_alive() for t in threads)


def _resolve(fut: asyncio.Future[Frame], frame: Frame) -> None:
    if not fut.done():
        fut.set_result(frame)


def _why(exc: BaseException) -> str:
    """FFmpeg's error without PyAV's repetition of the URL (which may hold credentials)."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc).split(": '", 1)[0][:200]
