"""The demo's child processes: started in their own session, stopped in order, never left behind.

Each child gets its own session, so a Ctrl-C in the terminal reaches only `ioc demo`, which
then stops the services before the broker and the broker before the database. Each child
also asks Linux to SIGKILL it if `ioc demo` itself dies (PR_SET_PDEATHSIG, armed after any
change of user, which would clear it), so nothing outlives a killed demo.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # resolved now, in the parent: a symbol lookup in a forked child of a threaded process can deadlock
    _PRCTL: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child, after any change of user: SIGKILL me when `ioc demo` dies (PR_SET_PDEATHSIG = 1)."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGKILL), 0, 0, 0)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    log_offset: int = 0  # where this run's part of the log starts

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, limit: int = 3000) -> str:
        """The end of what this run of the child logged."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(self.log_offset, f.seek(0, os.SEEK_END) - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Children:
    """The running children, in start order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Child] = []

    def start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
              user: pwd.struct_passwd | None = None, cwd: Path | None = None,
              stop_signal: int = signal.SIGTERM) -> Child:
        """Start `argv` with stdout and stderr appended to `<log_dir>/<name>.log`."""
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            offset = log.tell()
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name} ---\n".encode())
            log.flush()
            kwargs: dict[str, Any] = {}
            if user is not None and os.geteuid() == 0:
                kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                # PDEATHSIG is tied to the starting thread: only arm it from the main one
                preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
                **kwargs,
            )
        child = Child(name, proc, log_path, stop_signal, offset)
        self.started.append(child)
        return child

    def first_dead(self) -> Child | None:
        return next((c for c in self.started if not c.alive), None)

    def stop(self, names: list[str] | None = None, timeout: float = 8.0) -> None:
        """Signal the named children (default: all) at once, wait, then SIGKILL the rest."""
        group = [c for c in self.started if names is None or c.name in names]
        for c in group:
            if c.alive:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.send_signal(c.stop_signal)
        deadline = time.monotonic() + timeout
        for c in group:
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.kill()
                c.proc.wait(5)
        self.started = [c for c in self.started if c not in group]
