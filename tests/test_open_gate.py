"""The gate in front of VideoCapture opens: same FFmpeg options together, others in turn."""

from __future__ import annotations

import os
import threading
import time

from camera.capture import OpenGate


def _run(gate: OpenGate, options: str | None, hold: float, log: list[tuple[str, str, float, str | None]],
         name: str) -> threading.Thread:
    def body() -> None:
        with gate.opening(options):
            log.append((name, "in", time.monotonic(), os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")))
            time.sleep(hold)
            log.append((name, "out", time.monotonic(), None))

    t = threading.Thread(target=body)
    t.start()
    return t


def test_same_options_open_together_others_wait_in_turn() -> None:
    gate = OpenGate(limit=2)
    log: list[tuple[str, str, float, str | None]] = []
    threads = [_run(gate, "rtsp_transport;tcp", 0.3, log, "a")]
    time.sleep(0.05)
    threads.append(_run(gate, "rtsp_transport;tcp", 0.3, log, "b"))  # joins a
    time.sleep(0.05)
    threads.append(_run(gate, None, 0.1, log, "file"))  # other options: waits for a and b
    time.sleep(0.05)
    threads.append(_run(gate, "rtsp_transport;tcp", 0.1, log, "c"))  # arrived after file: waits behind it
    for t in threads:
        t.join(5)
    at = {(n, e): (ts, env) for n, e, ts, env in log}
    assert at[("b", "in")][0] < at[("a", "out")][0]  # together
    assert at[("file", "in")][0] >= max(at[("a", "out")][0], at[("b", "out")][0])
    assert at[("file", "in")][1] is None and at[("a", "in")][1] == "rtsp_transport;tcp"
    assert at[("c", "in")][0] >= at[("file", "out")][0]  # no overtaking across options
    assert at[("c", "in")][1] == "rtsp_transport;tcp"


def test_at_most_limit_at_once() -> None:
    gate = OpenGate(limit=2)
    inside = 0
    most = 0
    lock = threading.Lock()

    def body() -> None:
        nonlocal inside, most
        with gate.opening("x"):
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=body) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert most == 2
