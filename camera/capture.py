"""One camera's frames: an OpenCV (FFmpeg) reader in its own thread, latest frame wins.

The thread only decodes and keeps the newest frame with its capture time; it never
queues, so a slow consumer simply sees fewer frames. Blocking OpenCV calls stay off the
event loop. Facts that shape this (measured on these machines):

- OpenCV serialises opens inside a process; a camera that hangs in open holds up every
  other open for its open timeout. So a camera is probed over RTSP first (`probe`, on
  the event loop, cheap), and only a camera that answers is opened.
- FFmpeg options come from the environment variable OPENCV_FFMPEG_CAPTURE_OPTIONS, read
  at open. Each open sets it under one lock, so cameras in different modes can share a
  process. `rtsp_transport;tcp` must be repeated there: the variable replaces defaults.
- A stalled camera makes read() block for the read timeout and then return frames that
  were held in the decoder before failing; liveness therefore comes from the time of the
  last new frame (the watchdog), not from read()'s answer.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import cv2
import numpy as np

from camera.registry import StreamMode

_OPEN_LOCK = threading.Lock()
_BASE_OPTIONS = "rtsp_transport;tcp|analyzeduration;0|probesize;32|fpsprobesize;0"


def ffmpeg_options(mode: StreamMode) -> str:
    return _BASE_OPTIONS + ("|avdiscard;nonkey" if mode == "main-keyframes" else "")


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray
    captured_at: float  # wall-clock time the frame came out of the decoder
    seq: int


async def probe(url: str, timeout: float = 3.0) -> str | None:
    """Ask the camera for RTSP OPTIONS; None when it answers, else why not.

    Any RTSP answer counts (401 included): it proves the camera is there, and the real
    open will say if the credentials are wrong.
    """
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
        self.width = 0
        self.height = 0
        self._stop_flag = threading.Event()

    def stop(self) -> None:
        """Ask the thread to end; a read blocked on a dead camera returns within its timeout."""
        self._stop_flag.set()

    def run(self) -> None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        with _OPEN_LOCK:
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = ffmpeg_options(self.mode)
            cap = cv2.VideoCapture(self._url, cv2.CAP_FFMPEG, params)
        try:
            if not cap.isOpened():
                self.error = "the stream did not open (wrong path or credentials, or no video)"
                return
            self.opened.set()
            seq = 0
            while not self._stop_flag.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    self.error = "the stream ended or stopped sending"
                    return
                seq += 1
                self.frames = seq
                self.height, self.width = image.shape[:2]
                self.latest = Frame(image, time.time(), seq)
        finally:
            cap.release()
