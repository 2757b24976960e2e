"""`ioc demo` for real: its own PostgreSQL and Mosquitto, the services, agencies and cameras.

The demo runs as a child process exactly as a user starts it (no IOC_DATABASE_URL, no
IOC_MQTT_URL), on free ports and in a temporary data directory; the test reads the printed
addresses and logins, uses the REST API as the console would, stops the demo with SIGINT
(Ctrl-C) and checks that nothing it started is left.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.rigs.children import free_port, preexec, read_text, track, untrack


def _env(api_port: int, wall_port: int, mqtt_port: int, broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_WALL_PORT": str(wall_port), "IOC_DEMO_MQTT_PORT": str(mqtt_port), "PYTHONPATH": str(REPO),
                "IOC_DEMO_BROKER": broker})
    return env


class Demo:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.api_port, self.wall_port, self.mqtt_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.offset = 0
        self.broker = "auto"  # Mosquitto where installed, else the embedded broker

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ioc.cli", "demo", "--data-dir", str(self.data_dir), "--port", str(self.api_port),
                 "--cameras", "2", *extra],
                env=_env(self.api_port, self.wall_port, self.mqtt_port, self.broker), cwd=REPO, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=preexec())
        track(self.proc)
        return self.proc

    def output(self) -> str:
        return read_text(self.log_path, self.offset)

    def wait_running(self, timeout: float) -> float:
        """Seconds until the demo printed its addresses; fails with its output otherwise."""
        assert self.proc is not None
        t0 = time.monotonic()
        while "IOC demo is running" not in self.output():
            if self.proc.poll() is not None:
                pytest.fail(f"ioc demo exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            if time.monotonic() - t0 > timeout:
                pytest.fail(f"ioc demo did not start within {timeout} s:\n{self.output()[-4000:]}\n"
                            + _logs(self.data_dir))
            time.sleep(0.2)
        time.sleep(0.3)  # the rest of the banner
        return time.monotonic() - t0

    def password(self, user: str) -> str:
        m = re.search(rf"^\s+{user}\s+(\S+)\s*$", self.output(), re.MULTILINE)
        assert m, self.output()
        return m.group(1)

    def interrupt(self, timeout: float = 20.0) -> tuple[int, float, set[int]]:
        """Ctrl-C; return the exit code, the seconds it took, and its processes still alive after."""
        assert self.proc is not None
        family = _descendants(self.proc.pid)
        assert family, "the demo started no processes"
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        finally:
            untrack(self.proc)
        took = time.monotonic() - t0
        time.sleep(0.5)
        return code, took, {p for p in family if _alive(p)}

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            family = _descendants(self.proc.pid)
            self.proc.kill()
            self.proc.wait(5)
            for pid in family:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _logs(data_dir: Path) -> str:
    out = []
    for p in sorted((data_dir / "logs").glob("*.log")):
        out.append(f"--- {p.name} ---\n{p.read_text(errors='replace')[-1500:]}")
    return "\n".join(out)


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    # as root, PostgreSQL runs as an unprivileged user who must reach the data: pytest's
    # temporary directories are closed to others, so the data goes in a directory of its own
    base = Path(tempfile.mkdtemp(prefix="ioc-demo-test-"))
    base.chmod(0o755)
    d = Demo(base / "data", tmp_path / "demo.out")
    try:
        yield d
    finally:
        d.kill()
        shutil.rmtree(base, ignore_errors=True)


def _get(c: httpx.Client, path: str, token: str, **params: object) -> object:
    r = c.get(path, headers={"Authorization": f"Bearer {token}"}, params=params)  # type: ignore[arg-type]
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return r.json()


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_runs_everything_and_stops_on_ctrl_c(demo: Demo, broker: str) -> None:
    if broker == "mosquitto" and shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("Mosquitto is not installed")
    demo.broker = broker
    demo.start()
    first_start = demo.wait_running(90)
    out = demo.output()
    print(f"first start: {first_start:.1f} s")
    assert first_start < 60, out
    assert ("Mosquitto on port" if broker == "mosquitto" else "embedded MQTT 5 broker") in out, out
    base = f"http://127.0.0.1:{demo.api_port}"
    assert f"{base}/wall/console.html" in out and f"{base}/wall/tablet.html" in out
    for n in range(1, 10):
        assert f"{base}/wall/screen.html?screen={n}" in out
    admin = demo.password("admin")
    assert demo.password("operator") != admin

    with httpx.Client(base_url=base, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/api/v1/latest").status_code == 401
        login = c.post("/api/v1/auth/token", data={"username": "admin", "password": admin})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]

        # the simulated agencies' readings come in through MQTT, the ingest and PostgreSQL
        wanted = {"tthc.dossiers_received", "tthc.on_time_rate", "an.eid_level2_accounts", "mt.aqi",
                  "yte.outpatient_visits", "gd.students_enrolled", "gt.avg_speed", "cds.dti_rank"}
        deadline = time.monotonic() + 45
        while True:
            latest = {r["kpi"]: r for r in _get(c, "/api/v1/latest", token, area="37")}  # type: ignore[union-attr]
            if wanted <= latest.keys() or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert wanted <= latest.keys(), f"missing {wanted - latest.keys()}\n{_logs(demo.data_dir)}"
        assert len({r["agency"] for r in latest.values()}) >= 6
        assert 97 <= latest["tthc.on_time_rate"]["value"] <= 100
        assert 100_000 < latest["an.eid_level2_accounts"]["value"] < 880_000
        assert 0 < latest["mt.aqi"]["value"] < 500
        # a month of history, bucketed by day on the server
        start = (datetime.now(timezone.utc) - timedelta(days=29)).isoformat()
        series = _get(c, "/api/v1/series", token, kpi="tthc.dossiers_received", area="37", bucket="1d", start=start)
        assert len(series["points"]) >= 25, series  # type: ignore[index]
        # nothing the agencies sent was refused
        assert _get(c, "/api/v1/dead-letters", token) == []

        # the generated videos play as cameras through the camera service
        deadline = time.monotonic() + 30
        while True:
            cams = _get(c, "/api/v1/cameras", token)
            online = [x for x in cams if x["state"] == "online" and x["healthy"]]  # type: ignore[index,union-attr]
            if len(online) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(online) == 2, f"{cams}\n{_logs(demo.data_dir)}"
        assert all(x["stream_url"].startswith("file:///") for x in cams)  # type: ignore[index,union-attr]

    code, took, left = demo.interrupt()
    print(f"stop: {took:.1f} s")
    assert code == 0, demo.output()[-3000:]
    assert took < 15, took
    assert not left, f"processes left behind: {left}"
    assert "ioc demo: stopped" in demo.output()

    # a second run reuses the database and the passwords
    demo.start()
    again = demo.wait_running(60)
    print(f"restart: {again:.1f} s")
    assert demo.password("admin") == admin
    assert "created a PostgreSQL" not in demo.output()
    code, _, left = demo.interrupt()
    assert code == 0 and not left


@pytest.mark.parametrize("which", ["api", "mqtt"])
def test_a_taken_port_is_named_with_the_setting_to_change(demo: Demo, which: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        if which == "api":
            demo.api_port = port
        else:
            demo.mqtt_port = port
        proc = demo.start()
        try:
            code = proc.wait(30)
        finally:
            untrack(proc)
    out = demo.output()
    assert code != 0
    assert f"port {port}" in out and "taken" in out, out
    assert ("IOC_API_PORT" if which == "api" else "IOC_DEMO_MQTT_PORT") in out, out
    assert str(os.getpid()) in out  # who holds it: this test
    assert not (demo.data_dir / "postgres").exists()  # refused before starting anything


async def test_a_video_file_plays_as_an_endless_camera_at_its_own_rate(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from camera.capture import CaptureThread, probe
    from ioc.core.cameras import Camera

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 180))
    for i in range(10):  # one second
        frame = np.full((180, 320, 3), 40, np.uint8)
        cv2.circle(frame, (30 + 26 * i, 90), 20, (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    cam = Camera(id="file-cam", name="a file", main_url=clip.as_uri())
    assert cam.open_url() == clip.as_uri()
    assert await probe(cam.stream_url) is None
    assert "cannot read" in (await probe((tmp_path / "missing.mp4").as_uri()) or "")
    with pytest.raises(ValueError):
        Camera(id="bad-cam", name="relative", main_url="file://videos/x.mp4")

    thread = CaptureThread(cam.id, cam.open_url(), cam.mode)
    thread.start()
    try:
        assert await asyncio.to_thread(thread.opened.wait, 10)
        t0, f0 = time.monotonic(), thread.frames
        await asyncio.sleep(2.5)
        rate = (thread.frames - f0) / (time.monotonic() - t0)
    finally:
        thread.stop()
        thread.join(5)
    assert thread.error is None
    assert thread.frames > 20  # past the end of the one-second file: it loops
    assert 7 <= rate <= 13, rate  # paced at the file's 10 fps, not decoded as fast as possible


def test_a_data_dir_the_service_user_cannot_enter_is_named_before_initdb() -> None:
    """As root, the demo's PostgreSQL runs as an unprivileged user: a --data-dir under a
    directory closed to it gets a message naming that directory and what to do, not initdb's
    'could not open file ... initdb.pw: Permission denied'."""
    if os.geteuid() != 0:
        pytest.skip("only root hands the database to another user")
    base = Path(tempfile.mkdtemp(prefix="ioc-demo-closed-"))  # pytest's own tmp root is closed already
    base.chmod(0o755)
    closed = base / "private"
    closed.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    try:
        done = subprocess.run([sys.executable, "-m", "ioc.cli", "demo", "--data-dir", str(closed / "demo"),
                               "--port", str(free_port())], env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert done.returncode != 0
    assert f"cannot enter {closed}" in done.stderr and "--data-dir" in done.stderr, done.stderr[-2000:]
    assert "initdb" not in done.stderr
