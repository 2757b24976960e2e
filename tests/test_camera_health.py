"""Camera registry, picture health and the per-camera watchdog against a real RTSP server.

The RTSP rig (tests/rigs/rtsp) streams real H.264 at 25 fps: street footage, black,
frozen after 3 s, blurred, a camera that stalls with its connection open, a server that
is killed, a port that refuses and one that never answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from camera.health import HealthTracker, analyse
from camera.monitor import CameraMonitor, CameraStatus
from ioc.core.cameras import Camera, RegistryError, load_registry
from ioc.core.sharding import mine
from tests.rigs.rtsp.rig import BlackHole, RtspRig, refused_url

REPO = Path(__file__).resolve().parents[1]


# -- registry -----------------------------------------------------------------------------

def test_the_shipped_phu_ly_registry_loads() -> None:
    cams = load_registry(REPO / "camera/examples/phu-ly.toml")
    assert len(cams) == 10 and len({c.id for c in cams}) == 10
    assert all(c.name and c.lat and c.lon for c in cams)
    by_id = {c.id: c for c in cams}
    assert by_id["pl-01"].mode == "sub-full" and by_id["pl-07"].mode == "main-keyframes"
    assert sorted(c.id for i in range(3) for c in mine(cams, i, 3, key=lambda c: c.id)) == sorted(by_id)


def test_credentials_stay_out_of_what_is_shown(tmp_path: Path) -> None:
    cam = Camera(id="c1", name="x", main_url="rtsp://10.0.0.1/live", username="ioc", password="p@ss:w/rd")
    assert cam.stream_url == "rtsp://10.0.0.1/live"
    assert cam.open_url() == "rtsp://ioc:p%40ss%3Aw%2Frd@10.0.0.1/live"
    assert "p@ss" not in repr(cam) and "p@ss" not in cam.model_dump_json()
    bad = tmp_path / "bad.toml"
    bad.write_text('[[camera]]\nid = "c1"\nname = "x"\nmain_url = "rtsp://u:p@10.0.0.1/live"\n', encoding="utf-8")
    with pytest.raises(RegistryError, match="c1.*main_url.*credentials"):
        load_registry(bad)
    dup = tmp_path / "dup.toml"
    dup.write_text('[[camera]]\nid = "c1"\nname = "x"\nmain_url = "rtsp://h/a"\n' * 2, encoding="utf-8")
    with pytest.raises(RegistryError, match="duplicate camera ids: c1"):
        load_registry(dup)


# -- picture health on synthetic frames -----------------------------------------------------

def _texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (36, 64, 3), dtype=np.uint8)
    return cv2.resize(small, (640, 360), interpolation=cv2.INTER_NEAREST)


def test_health_states_from_pictures() -> None:
    t = HealthTracker()
    scene = _texture(1)
    for i in range(10):  # a moving picture: a small shifting patch
        frame = scene.copy()
        frame[100:160, 20 * i:20 * i + 60] = 255
        t.update(analyse(frame), i * 0.5)
    assert t.states(4.5) == {"black": False, "uniform": False, "frozen": False, "blurred": False, "scene_changed": False}
    assert t.motion > 0
    for i in range(10, 18):  # the same picture for 4 s: frozen after 3 s without change
        t.update(analyse(frame), i * 0.5)
    assert t.states(8.5)["frozen"]
    t.update(analyse(cv2.GaussianBlur(frame, (0, 0), 10)), 9.0)
    assert t.states(9.0)["blurred"] and not t.states(9.0)["frozen"]
    t.update(analyse(_texture(2)), 9.5)  # turned to another view
    assert t.states(9.5)["scene_changed"]
    t.update(analyse(np.zeros((360, 640, 3), np.uint8)), 10.0)
    assert t.states(10.0)["black"] and not t.states(10.0)["frozen"]
    t.update(analyse(np.full((360, 640, 3), 180, np.uint8)), 10.5)
    s = t.states(10.5)
    assert s["uniform"] and not s["black"]


# -- the watchdog against the real RTSP server ---------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.t0 = time.time()
        self.history: dict[str, list[tuple[float, dict[str, object]]]] = {}

    def __call__(self, status: CameraStatus) -> None:
        self.history.setdefault(status.camera_id, []).append((time.time() - self.t0, status.as_dict()))

    def first(self, cam: str, pred, after: float = -1.0) -> float | None:  # type: ignore[no-untyped-def]
        for t, s in self.history.get(cam, []):
            if t > after and pred(s):
                return t
        return None

    async def wait_after(self, cam: str, after: float, pred, timeout: float) -> float:  # type: ignore[no-untyped-def]
        return await self.wait(cam, lambda s: pred(s), timeout, after=after)

    async def wait(self, cam: str, pred, timeout: float, after: float = -1.0) -> float:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.first(cam, pred, after)
            if t is not None:
                return t
            await asyncio.sleep(0.05)
        raise AssertionError(f"{cam}: condition not met in {timeout} s; history {self.history.get(cam)}")


@pytest.fixture(scope="module")
def rig() -> Iterator[RtspRig]:
    with RtspRig() as r:
        yield r


def monitor(cam_id: str, url: str, rec: Recorder) -> CameraMonitor:
    return CameraMonitor(Camera(id=cam_id, name=cam_id, main_url=url, sub_url=url), on_status=rec,
                         open_timeout_s=3.0, read_timeout_s=3.0, max_backoff_s=2.0)


async def test_each_picture_fault_is_detected_within_its_bound(rig: RtspRig) -> None:
    rec = Recorder()
    cams = {"street": "street-360p", "black": "black-360p", "frozen": "frozen-360p", "blurred": "blurred-360p"}
    tasks = [asyncio.create_task(monitor(c, rig.url(m), rec).run()) for c, m in cams.items()]
    try:
        online = await rec.wait("street", lambda s: s["state"] == "online", 8)
        await asyncio.sleep(4)
        assert rec.first("street", lambda s: s["state"] != "online" or not s["healthy"]
                         if s["state"] != "starting" else False) is None, rec.history["street"]
        # black: flagged at the first analysed frame; within 5 s of the picture
        t_black_on = await rec.wait("black", lambda s: s["state"] == "online", 8)
        t_black = await rec.wait("black", lambda s: s["flags"].get("black"), 5)
        assert t_black - t_black_on < 5
        # frozen: the stream freezes 3 s after connecting; flagged within 5 s of that
        t_frozen_on = await rec.wait("frozen", lambda s: s["state"] == "online", 8)
        t_frozen = await rec.wait("frozen", lambda s: s["flags"].get("frozen"), 10)
        assert t_frozen - t_frozen_on < 3 + 5
        assert rec.first("frozen", lambda s: s["flags"].get("black")) is None
        await rec.wait("blurred", lambda s: s["flags"].get("blurred"), 5)
        assert online < 8
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_stalled_or_killed_camera_goes_offline_within_5_s_and_comes_back(rig: RtspRig) -> None:
    rec = Recorder()
    tasks = [asyncio.create_task(monitor("stall", rig.url("stall"), rec).run()),
             asyncio.create_task(monitor("street", rig.url("street-720p"), rec).run())]
    try:
        t_on = await rec.wait("stall", lambda s: s["state"] == "online", 8)
        t_off = await rec.wait_after("stall", t_on, lambda s: s["state"] == "offline", 15)
        hist = rec.history["stall"]
        last_frame = max(s["last_frame_at"] for t, s in hist if t <= t_off and s.get("last_frame_at"))  # type: ignore[type-var]
        assert (rec.t0 + t_off) - float(last_frame) < 5, f"offline must follow the last frame within 5 s: {hist}"
        await rec.wait("street", lambda s: s["state"] == "online", 8)
        killed_at = time.time() - rec.t0
        rig.kill()
        t_dead = await rec.wait("street", lambda s: s["state"] == "offline", 6)
        assert t_dead - killed_at < 5
        rig.restart()
        await rec.wait_after("street", t_dead, lambda s: s["state"] == "online", 15)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_dead_cameras_never_delay_the_others(rig: RtspRig) -> None:
    with BlackHole() as hole:
        alone = Recorder()
        task = asyncio.create_task(monitor("ok", rig.url("street-360p"), alone).run())
        t_alone = await alone.wait("ok", lambda s: s["state"] == "online", 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        rec = Recorder()
        tasks = [asyncio.create_task(monitor(f"hole{i}", hole.url(f"cam{i}"), rec).run()) for i in range(3)]
        tasks += [asyncio.create_task(monitor("refused", refused_url(), rec).run())]
        await asyncio.sleep(0.2)  # the dead ones are already trying
        tasks.append(asyncio.create_task(monitor("ok", rig.url("street-360p"), rec).run()))
        try:
            t_ok = await rec.wait("ok", lambda s: s["state"] == "online", 10) - 0.2
            assert t_ok < t_alone + 1.0, (t_ok, t_alone)
            await rec.wait("refused", lambda s: s["state"] == "offline" and "connect" in str(s["reason"]), 5)
            for i in range(3):
                await rec.wait(f"hole{i}", lambda s: s["state"] == "offline", 6)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def test_states_are_debounced_on_the_way_in_and_out() -> None:
    from camera.health import Debouncer

    d = Debouncer()
    clear = {"black": False, "frozen": False}
    assert d.update({"black": True, "frozen": False}, 0.0)["black"] is False  # one dark frame: nothing yet
    assert d.update(clear, 0.5)["black"] is False  # and gone: still nothing
    assert d.update({"black": True, "frozen": False}, 1.0)["black"] is False
    assert d.update({"black": True, "frozen": False}, 2.0)["black"] is True  # held a second: shown
    assert d.update({"black": False, "frozen": True}, 2.5) == {"black": True, "frozen": True}  # frozen at once
    assert d.update(clear, 3.0)["black"] is True  # flickering back does not end it at once
    assert d.update({"black": True, "frozen": True}, 3.5)["black"] is True
    assert d.update(clear, 4.0)["black"] is True
    assert d.update(clear, 6.1) == {"black": False, "frozen": False}  # gone for 2 s: ended
    d.update({"black": True, "frozen": False}, 7.0)
    d.reset()
    assert d.update({"black": True, "frozen": False}, 7.5)["black"] is False
