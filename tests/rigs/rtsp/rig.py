"""A real RTSP server with healthy and faulty cameras, for the camera service's tests.

``server.py`` (GstRtspServer, run by Debian's ``/usr/bin/python3``) streams the H.264 files that
``setup.sh`` made as live cameras at ``rtsp://127.0.0.1:<port>/<name>``.  This module, which the
project's own Python imports (it never imports ``gi``), starts it, waits for it, controls it
and makes sure it never outlives the tests::

    with RtspRig() as rig:                       # the standard mounts, see DEFAULT_MOUNTS
        cv2.VideoCapture(rig.url("street-360p"), cv2.CAP_FFMPEG, [...])
        rig.stall("street-360p"); rig.resume("street-360p")     # frames stop, connection kept
        rig.offline("black-360p"); rig.online("black-360p")     # hang up + 404, then back
        rig.kill(); rig.restart()                # SIGKILL mid-stream, then the same port again

    with CameraFleet(10, "street-1080p.mp4") as fleet:   # cam01 .. cam10
        fleet.urls()                             # {"cam01": "rtsp://...", ...}

    with BlackHole() as hole: hole.url()         # accepts TCP, never answers RTSP
    refused_url()                                # nothing listens: connection refused

Run ``bash tests/rigs/rtsp/setup.sh`` (as root) once per machine first; without it the rig
raises ``RigSetupError`` saying so.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.rigs import children

__all__ = [
    "MEDIA_DIR", "MEDIA_FILES", "DEFAULT_MOUNTS", "Mount", "RtspRig", "CameraFleet",
    "RigSetupError", "RigError", "check_setup", "media_path", "BlackHole", "refused_url",
]

HERE = Path(__file__).resolve().parent
SERVER = HERE / "server.py"
SETUP = HERE / "setup.sh"
SYSTEM_PYTHON = Path(os.environ.get("IOC_TEST_SYSTEM_PYTHON", "/usr/bin/python3"))
MEDIA_DIR = Path(os.environ.get("IOC_TEST_MEDIA_DIR", "/var/cache/ioc-test-media"))
MEDIA_VERSION = "3"  # must match MEDIA_VERSION in setup.sh
MEDIA_FILES = (
    "street-1080p.mp4", "street-720p.mp4", "street-360p.mp4", "black-360p.mp4",
    "frozen-360p.mp4", "blurred-360p.mp4", "counter-1080p.mp4", "counter-360p.mp4",
)



class RigSetupError(RuntimeError):
    """The machine is not prepared: packages or media missing."""


class RigError(RuntimeError):
    """The server did not start, or did not answer a command."""


# -- setup checks -----------------------------------------------------------------------

_SETUP_OK = False
_HINT = "run `sudo bash tests/rigs/rtsp/setup.sh` (from the repository root) first"


def check_setup() -> None:
    """Raise RigSetupError, saying what to do, unless setup.sh has prepared this machine."""
    global _SETUP_OK
    if _SETUP_OK:
        return
    if not SYSTEM_PYTHON.exists():
        raise RigSetupError(f"{SYSTEM_PYTHON} not found (Debian's python3): {_HINT}")
    stamp = MEDIA_DIR / "MEDIA_VERSION"
    missing = [f for f in MEDIA_FILES if not (MEDIA_DIR / f).is_file()]
    if missing or not stamp.is_file():
        raise RigSetupError(f"test media missing in {MEDIA_DIR} ({', '.join(missing) or 'MEDIA_VERSION'}): {_HINT}")
    if stamp.read_text().strip() != MEDIA_VERSION:
        raise RigSetupError(f"test media in {MEDIA_DIR} were made by another recipe version: {_HINT}")
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')\n"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None)\n"
        "m = [e for e in ('appsrc', 'qtdemux', 'rtph264pay', 'rtpbin') if not Gst.ElementFactory.find(e)]\n"
        "raise SystemExit('missing GStreamer elements: %s' % m if m else 0)\n"
    )
    res = subprocess.run([str(SYSTEM_PYTHON), "-c", probe], capture_output=True, text=True,
                         env=_server_env(), timeout=60)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
        raise RigSetupError(f"GstRtspServer is not usable from {SYSTEM_PYTHON} ({tail[0]}): {_HINT}")
    _SETUP_OK = True


def media_path(name: str | os.PathLike[str]) -> Path:
    """A media file by its name in the cache (``"street-360p.mp4"``), or a path as given."""
    p = Path(name)
    return p if p.is_absolute() or p.parent != Path(".") else MEDIA_DIR / p


def _server_env() -> dict[str, str]:
    """The environment for Debian's python: without the pyenv/venv Python variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYENV", "VIRTUAL_ENV"))}


# -- process hygiene (as tests/rigs/mosquitto.py does) -----------------------------------

# -- the rig ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Mount:
    """One camera: ``rtsp://host:port/<name>`` streams ``file`` (a name in MEDIA_DIR or a path).

    ``timeline="shared"``: a live camera, every client sees the same frame at the same time;
    ``"per-client"``: each client starts at the file's first frame (for faults whose course
    must be known, e.g. frozen = 3 s of motion, then still).  ``stall_after``: each client's
    frames stop that many seconds after its stream started; the connection stays open.
    ``offset`` (shared timeline): the mount shows file frame ``(tick + offset) % frames``, so
    several mounts of one file can have their keyframes at different moments.
    ``aggregate``: the payloader packs a picture's small NAL units into STAP-A packets.
    ``auth="user:password"``: the mount asks for Digest authentication (401 without it); in
    a rig with such a mount, every mount asks for it (GstRTSPAuth's rule), any user's will do.
    ``auth_scheme="basic"``: Basic instead (for every auth mount of the rig).
    """

    name: str
    file: str
    timeline: str = "shared"
    stall_after: float | None = None
    offset: int = 0
    aggregate: bool = False
    auth: str | None = None
    auth_scheme: str = "digest"  # or "basic" (then for the whole rig)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "file": str(media_path(self.file)), "timeline": self.timeline,
                "stall_after": self.stall_after, "offset": self.offset, "aggregate": self.aggregate,
                "auth": self.auth, "auth_scheme": self.auth_scheme}


DEFAULT_STALL_AFTER = 3.0
DEFAULT_MOUNTS: tuple[Mount, ...] = (
    Mount("street-1080p", "street-1080p.mp4"),
    Mount("street-720p", "street-720p.mp4"),
    Mount("street-360p", "street-360p.mp4"),
    Mount("black-360p", "black-360p.mp4"),
    Mount("frozen-360p", "frozen-360p.mp4", timeline="per-client"),
    Mount("blurred-360p", "blurred-360p.mp4"),
    Mount("counter-1080p", "counter-1080p.mp4"),
    Mount("counter-360p", "counter-360p.mp4"),
    # the counter shows exactly which frames got through before the stall
    Mount("stall", "counter-360p.mp4", stall_after=DEFAULT_STALL_AFTER),
)

MountsArg = Iterable[Mount | tuple[str, str]] | Mapping[str, str] | None


def _mounts(mounts: MountsArg) -> list[Mount]:
    if mounts is None:
        return list(DEFAULT_MOUNTS)
    if isinstance(mounts, Mapping):
        return [Mount(n, f) for n, f in mounts.items()]
    return [m if isinstance(m, Mount) else Mount(*m) for m in mounts]


class RtspRig:
    """One ``server.py`` process with its mounts, on a port it keeps across restarts.

    ``mounts``: Mount objects, ``(name, file)`` pairs or ``{name: file}``; default
    DEFAULT_MOUNTS (street-1080p/720p/360p, black-360p, frozen-360p, blurred-360p,
    counter-1080p/360p, and ``stall``: counter-360p that stalls ``stall_after`` s into
    each client's stream).  The server's stderr goes to ``log_path``.
    """

    def __init__(
        self,
        mounts: MountsArg = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 20.0,
        stall_after: float | None = None,
    ) -> None:
        mlist = _mounts(mounts)
        if stall_after is not None:
            mlist = [Mount(m.name, m.file, m.timeline, stall_after, m.offset) if m.stall_after is not None else m
                     for m in mlist]
        names = [m.name for m in mlist]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate mount names in {names}")
        self.mounts: dict[str, Mount] = {m.name: m for m in mlist}
        self.host = host
        self.port: int | None = port
        self.start_timeout = start_timeout
        self._own_dir = log_dir is None
        self.directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="rtsp-rig-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path = self.directory / "rtsp-server.log"
        self.config_path = self.directory / "rtsp-server.json"
        self.ready: dict[str, Any] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready_evt = threading.Event()
        self._cmd_lock = threading.Lock()
        self._log_offset = 0

    # -- lifecycle
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self.running else None

    def start(self) -> RtspRig:
        """Start the server (on the port of the previous run, if any) and wait until it listens."""
        self._spawn()
        self._wait_ready()
        return self

    def _spawn(self) -> None:
        check_setup()
        if self.running:
            raise RigError("the RTSP server is already running")
        for m in self.mounts.values():
            if not media_path(m.file).is_file():
                raise RigSetupError(f"mount {m.name}: no file {media_path(m.file)}: {_HINT}")
        cfg = {"host": self.host, "port": self.port or 0, "mounts": [m.spec() for m in self.mounts.values()]}
        self.config_path.write_text(json.dumps(cfg, indent=1))
        self._ready_evt.clear()
        self._replies = queue.Queue()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a", encoding="utf-8") as log:
            proc = subprocess.Popen(
                [str(SYSTEM_PYTHON), "-u", str(SERVER), "--config", str(self.config_path), "--control-stdin"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
                env=_server_env(), cwd=self.directory,
                # SIGKILL it if the thread that started it dies; besides, the server stops when
                # its stdin (our pipe) closes, and atexit kills what is left
                preexec_fn=children.preexec(),
            )
        children.track(proc)
        self._proc = proc
        threading.Thread(target=self._read_stdout, args=(proc,), name="rtsp-rig-stdout", daemon=True).start()

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.start_timeout
        while not self._ready_evt.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                what = f"exited with {proc.returncode}" if proc.poll() is not None else \
                    f"was not ready within {self.start_timeout} s"
                self._end(signal.SIGKILL, 5)
                raise RigError(f"the RTSP server {what}\n{self._log_tail(self._log_offset)}")
        self.port = int(self.ready["port"])

    def stop(self, timeout: float = 10.0) -> None:
        """A clean stop (SIGTERM), SIGKILL if it does not go within ``timeout``."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL mid-stream: every client's TCP connection drops at once."""
        self._end(signal.SIGKILL, 5.0)

    def restart(self) -> RtspRig:
        """Kill (if running) and start again on the same port, with the same mounts."""
        if self.running:
            self.kill()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RtspRig:
        if not self.running:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    # -- addresses
    def url(self, name: str) -> str:
        if name not in self.mounts:
            raise KeyError(f"no mount {name!r}; mounts: {sorted(self.mounts)}")
        if self.port is None:
            raise RigError("the rig has not been started")
        return f"rtsp://{self.host}:{self.port}/{name}"

    def urls(self) -> dict[str, str]:
        return {n: self.url(n) for n in self.mounts}

    # -- faults and state
    def stall(self, name: str) -> dict[str, Any]:
        """Stop sending frames on ``name`` to every client; connections stay open."""
        return self.command(f"stall {name}")

    def resume(self, name: str) -> dict[str, Any]:
        return self.command(f"resume {name}")

    def offline(self, name: str) -> dict[str, Any]:
        """The camera goes away: its clients are hung up on, new ones get RTSP 404."""
        return self.command(f"offline {name}")

    def online(self, name: str) -> dict[str, Any]:
        return self.command(f"online {name}")

    def status(self) -> dict[str, Any]:
        """Per mount: clients, live_clients, frames (file length), fps, t0, tick, stalled..."""
        return self.command("status")

    def sent_time(self, name: str, index: int, at: float | None = None) -> float:
        """When (time.monotonic(), comparable across processes on Linux) the server last sent
        file frame ``index`` of a shared-timeline mount, as of ``at`` (default now).

        With the counter clips, ``time.monotonic() - rig.sent_time(name, decode_counter(frame))``
        is the end-to-end latency of a frame just read.
        """
        info = self.ready["mounts"][name]
        if info["timeline"] != "shared":
            raise ValueError(f"mount {name} has a per-client timeline")
        fps, n, t0 = float(info["fps"]), int(info["frames"]), float(info["t0"])
        offset = int(info.get("offset", 0))
        now = time.monotonic() if at is None else at
        tick = int((now - t0) * fps)
        tick -= (tick + offset - index) % n  # the latest tick that showed this index
        if tick < 0:
            raise ValueError(f"{name}: frame {index} has not been sent since the server started")
        return t0 + tick / fps

    def command(self, line: str, timeout: float = 15.0) -> dict[str, Any]:
        """Send one control line to the server and return its JSON reply."""
        with self._cmd_lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or proc.stdin is None:
                raise RigError("the RTSP server is not running")
            proc.stdin.write(line.strip() + "\n")
            proc.stdin.flush()
            try:
                reply = self._replies.get(timeout=timeout)
            except queue.Empty:
                raise RigError(f"no reply to {line!r} within {timeout} s\n{self._log_tail()}") from None
        if not reply.get("ok"):
            raise RigError(f"{line!r}: {reply.get('error', reply)}")
        return reply

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # -- internals
    def _read_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, _, payload = line.partition(" ")
            if kind == "READY":
                self.ready = json.loads(payload)
                self._ready_evt.set()
            elif kind == "REPLY":
                self._replies.put(json.loads(payload))

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            children.end(proc, sig, timeout)
        finally:
            for f in (proc.stdin, proc.stdout):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass
            self._proc = None

    def _log_tail(self, offset: int = 0, limit: int = 4000) -> str:
        return "--- rtsp server log ---\n" + self.log_text()[offset:][-limit:]


class CameraFleet:
    """``count`` cameras named cam01..camNN, all streaming ``file``, over ``servers`` processes.

    With ``servers=1`` (the default) one server carries every camera (the file is loaded once);
    with ``servers=count`` each camera has its own process, so ``kill(name)`` takes down that
    camera alone.  ``stall``/``resume``/``offline``/``online`` always act on one camera.
    """

    def __init__(
        self,
        count: int,
        file: str = "street-360p.mp4",
        *,
        servers: int = 1,
        prefix: str = "cam",
        timeline: str = "shared",
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if count < 1 or not 1 <= servers <= count:
            raise ValueError("need count >= 1 and 1 <= servers <= count")
        width = max(2, len(str(count)))
        self.names = [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]
        self.rigs: list[RtspRig] = []
        self._rig_of: dict[str, RtspRig] = {}
        for s in range(servers):
            names = self.names[s::servers]
            rig = RtspRig([Mount(n, file, timeline) for n in names],
                          log_dir=Path(log_dir) / f"server{s}" if log_dir is not None else None)
            self.rigs.append(rig)
            self._rig_of.update({n: rig for n in names})

    def start(self) -> CameraFleet:
        """Start every server (all spawned first, then waited for) and wait for all."""
        try:
            for rig in self.rigs:
                rig._spawn()
            for rig in self.rigs:
                rig._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for rig in self.rigs:
            rig.close()

    def __enter__(self) -> CameraFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def rig_of(self, name: str) -> RtspRig:
        return self._rig_of[name]

    def url(self, name: str) -> str:
        return self._rig_of[name].url(name)

    def urls(self) -> dict[str, str]:
        return {n: self.url(n) for n in self.names}

    def kill(self, name: str) -> None:
        """SIGKILL the server carrying ``name`` (and any camera sharing its process)."""
        self._rig_of[name].kill()

    def restart(self, name: str) -> None:
        self._rig_of[name].restart()

    def stall(self, name: str) -> None:
        self._rig_of[name].stall(name)

    def resume(self, name: str) -> None:
        self._rig_of[name].resume(name)

    def offline(self, name: str) -> None:
        self._rig_of[name].offline(name)

    def online(self, name: str) -> None:
        self._rig_of[name].online(name)

    def pids(self) -> list[int]:
        return [r.pid for r in self.rigs if r.pid is not None]


# -- faults that need no server -----------------------------------------------------------

class BlackHole:
    """A "camera" whose RTSP daemon hangs: it accepts TCP connections and never answers.

    A client's open then waits for its open timeout (and, in OpenCV, holds back every other
    capture's open meanwhile: see tests/test_rtsp_rig.py).  ``url(name)`` points at it.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="rtsp-blackhole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self._conns.append(conn)  # held open, never read from or written to

    @property
    def connections(self) -> int:
        return len(self._conns)

    def url(self, name: str = "camera") -> str:
        return f"rtsp://{self.host}:{self.port}/{name}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in [*self._conns, self._sock]:
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refused_url(host: str = "127.0.0.1", name: str = "camera") -> str:
    """A URL on a port where nothing listens: connection refused at once (a camera that is off)."""
    return f"rtsp://{host}:{children.free_port(host)}/{name}"
