"""Child processes of the test rigs (brokers, RTSP and PGlite servers): none outlives the run.

Two nets: an atexit hook kills every child still tracked, and each child asks Linux to
SIGKILL it when the thread that started it dies (PR_SET_PDEATHSIG), which also covers a
test runner killed outright. The signal is tied to the starting *thread*, so it is only
armed for children started from the main thread.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LIVE: set[subprocess.Popen[Any]] = set()
_LOCK = threading.Lock()
_PR_SET_PDEATHSIG = 1


def _resolve_prctl() -> Callable[..., int] | None:
    # looked up once, in the parent: loading a library in a forked child of a threaded
    # process (paho runs threads) could deadlock
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _resolve_prctl()


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def preexec() -> Callable[[], None] | None:
    """The `preexec_fn` for Popen: armed only on the main thread (see the module doc)."""
    return _die_with_parent if threading.current_thread() is threading.main_thread() else None


def track(proc: subprocess.Popen[Any]) -> None:
    with _LOCK:
        _LIVE.add(proc)


def untrack(proc: subprocess.Popen[Any]) -> None:
    with _LOCK:
        _LIVE.discard(proc)


def _kill_leftovers() -> None:
    with _LOCK:
        procs = list(_LIVE)
        _LIVE.clear()
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


atexit.register(_kill_leftovers)


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently unused TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def end(proc: subprocess.Popen[Any], sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send ``sig``, wait, escalate to SIGKILL, and stop tracking the process."""
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    finally:
        untrack(proc)


def read_text(path: Path, offset: int = 0) -> str:
    """A child's log from `offset` on ('' before it exists), for assertions and error messages."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
