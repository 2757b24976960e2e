"""One camera's frames: an OpenCV (FFmpeg) reader in its own thread, latest frame wins.

The thread only decodes and keeps the newest frame with its capture time; it never
queues, so a slow consumer simply sees fewer frames. Blocking OpenCV calls stay off the
event loop. Facts that shape this (measured on these machines):

- OpenCV serialises opens inside a process unless OPENCV_FFMPEG_IS_THREAD_SAFE is set
  (camera/__init__.py sets it): then opens run in parallel and a camera hanging in its
  open holds up nobody else. A camera is still probed over RTSP first (`probe`, on the
  event loop, cheap), and only a camera that answers is opened.
- FFmpeg options come from the environment variable OPENCV_FFMPEG_CAPTURE_OPTIONS, read
  at open, one value for the whole process. `OpenGate` lets opens that need the same
  options run together and makes one that needs others wait for them, so cameras in
  different modes can share a process. `rtsp_transport;tcp` must be repeated there: the
  variable replaces defaults.
- A stalled camera makes read() block for the read timeout and then return frames that
  were held in the decoder before failing; liveness therefore comes from the time of the
  last new frame (the watchdog), not from read()'s answer.
- At most `OPEN_AT_ONCE` opens run together (each probes its stream and decodes), so with
  many cameras a reader may queue for seconds and the watchdog may give up on it
  meanwhile: a reader stopped before its turn does not open.
- One decoder thread per camera (CAP_PROP_N_THREADS=1), not OpenCV's one per core: frame
  threading holds one more frame back (+40 ms at 25 fps) and keeps a second decoder
  context with its own pictures (~5 MB at 1080p), for no gain at the rates tiles need (a
  1080p keyframe a second, or 360p); cameras run in parallel anyway.
- Every read returns a new array (6 MB at 1080p). glibc serves the first ones with mmap,
  then raises its mmap threshold (up to 32 MB) and serves the rest from its heaps, whose
  freed pages stay resident: ~9 MB more per 1080p camera. `keep_frames_off_the_heap` pins
  the threshold at 1 MiB for the process (the camera service calls it).
- Consumers that want each new frame as soon as it is decoded (the tiles) wait with
  `next_frame`; the thread wakes only those waiting, never the event loop per frame.
- A 1080p picture is reduced to 640x360 here, once, and only the small one is kept
  (`Frame.image`): the SD tile and the analysis both need that size, and keeping 6 MB
  per camera for nothing was a sixth of the service's memory at 10 cameras. The decoded
  picture rides along (`Frame.full`) only while `want_full` is set: a wall screen shows
  this camera large and asks for HD tiles. Frames are made at most every 0.1 s unless a
  consumer waits, so a 25 fps stream is not reduced 25 times a second for a 2 Hz reader.

A `file:///path/video.mp4` source is read through the same path, as a camera would be:
every frame, paced by the clock at the file's own frame rate (a file would otherwise
decode as fast as the CPU allows), and rewound at its end, so it plays as an endless loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sys
from collections import deque
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from ioc.core.cameras import StreamMode

OPEN_AT_ONCE = 8


class OpenGate:
    """Admits VideoCapture opens: together while they need the same FFmpeg options (a
    process-wide environment variable OpenCV reads during the open), one set of options at
    a time, at most `limit` at once, in order of arrival between different options."""

    def __init__(self, limit: int = OPEN_AT_ONCE) -> None:
        self._cond = threading.Condition()
        self._limit = limit
        self._active = 0
        self._options: str | None = None
        self._queue: deque[object] = deque()  # arrival order of waiting openers

    @contextlib.contextmanager
    def opening(self, options: str | None) -> Iterator[None]:
        me = object()
        with self._cond:
            self._queue.append(me)
            # the head of the queue goes when the running opens share its options and
            # there is room; the others wait behind it, so no set of options starves
            while not (self._queue[0] is me and self._active < self._limit
                       and (self._active == 0 or self._options == options)):
                self._cond.wait()
            self._queue.popleft()
            if self._active == 0:
                self._options = options
                if options is None:
                    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                else:
                    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = options
            self._active += 1
            self._cond.notify_all()  # the next in line may share these options
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()


_OPENS = OpenGate()
DECODER_THREADS = 1
_BASE_OPTIONS = "rtsp_transport;tcp|analyzeduration;0|probesize;32|fpsprobesize;0"


def ffmpeg_options(mode: StreamMode) -> str:
    return _BASE_OPTIONS + ("|avdiscard;nonkey" if mode == "main-keyframes" else "")


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
    """Opens one stream and keeps its newest frame until told to stop or the stream fails."""

    def __init__(self, camera_id: str, url: str, mode: StreamMode, *,
                 open_timeout_s: float = 5.0, read_timeout_s: float = 5.0) -> None:
        super().__init__(name=f"capture-{camera_id}", daemon=True)
        self.camera_id = camera_id
        self._url = url
        self.mode = mode
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.latest: Frame | None = None
        self.opened = threading.Event()
        self.error: str | None = None
        self.frames = 0
        self.keyframes: deque[float] = deque(maxlen=6)  # when the last keyframes came out
        self.width = 0
        self.height = 0
        self.want_full = False  # set from the event loop: a wall wants this camera's HD tiles
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

    @property
    def keyframe_interval_s(self) -> float | None:
        """The median time between the last keyframes (the camera's GOP, as it arrives)."""
        k = list(self.keyframes)
        if len(k) < 3:
            return None
        gaps = sorted(b - a for a, b in zip(k, k[1:]))
        return round(gaps[len(gaps) // 2], 2)

    def stop(self) -> None:
        """Ask the thread to end; a read blocked on a dead camera returns within its timeout."""
        self._stop_flag.set()

    def run(self) -> None:
        name_os_thread(f"cap:{self.camera_id}")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000),
                  cv2.CAP_PROP_N_THREADS, DECODER_THREADS]
        path = file_path(self._url)
        # RTSP tuning would starve a file's probe: a file opens with FFmpeg's defaults
        with _OPENS.opening(ffmpeg_options(self.mode) if path is None else None):
            if self._stop_flag.is_set():
                # given up on while it queued: opening now would only make every reader
                # queued behind it wait one more open (~0.5-1 s, to the next keyframe)
                self.error = "stopped before it opened"
                return
            cap = cv2.VideoCapture(self._url if path is None else path, cv2.CAP_FFMPEG, params)
        try:
            if not cap.isOpened():
                self.error = "the stream did not open (wrong path or credentials, or no video)"
                return
            self.opened.set()
            period = 1.0 / min(max(cap.get(cv2.CAP_PROP_FPS) or 25.0, 1.0), 60.0) if path is not None else 0.0
            due = time.monotonic()
            seq = 0
            made_at = 0.0
            while not self._stop_flag.is_set():
                ok, image = cap.read()
                if (not ok or image is None) and path is not None and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                    ok, image = cap.read()  # end of the file: play it again
                if not ok or image is None:
                    self.error = "the stream ended or stopped sending"
                    return
                if period:
                    due += period
                    ahead = due - time.monotonic()
                    if ahead > 0:
                        self._stop_flag.wait(ahead)
                    elif ahead < -1.0:
                        due = time.monotonic()  # fell behind (a busy machine): do not race to catch up
                seq += 1
                self.frames = seq
                # keyframes-only decoding shows keyframes alone; otherwise FFmpeg says which
                if self.mode == "main-keyframes" or cap.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME):
                    self.keyframes.append(time.monotonic())
                self.height, self.width = image.shape[:2]
                now = time.monotonic()
                if not self._waiters and now - made_at < MAKE_EVERY_S:
                    del image
                    continue
                made_at = now
                captured_at = time.time()
                frame = Frame(reduce(image), captured_at, seq, image if self.want_full else None)
                del image  # a 1080p picture nobody asked for is freed now, not at the next read
                self.latest = frame
                if self._waiters:
                    self._wake(frame)
        finally:
            cap.release()


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
