"""Live video through the wall hub: a real `ioc serve`, a real broker, websocket clients, and
the rig's counter clips replayed as a camera service forwards them (tests/rigs/video_replay.py).

The `overview` layout shows pl-01 full screen on screen 5 (a main-stream tile) and pl-02 to
pl-05 as quarter tiles on screen 4 (sub-stream tiles).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ioc.core.accounts import create_user
from ioc.core.contracts import topics
from ioc.core.contracts.video_frame import decode_video
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client as MqttClient
from tests.rigs.rtsp.rig import media_path
from tests.rigs.serve import ServeProcess
from tests.rigs.video_replay import Clip, VideoReplay, load_clip

GOP = 25  # the counter clips have an IDR every 25 frames


@pytest.fixture(scope="module")
async def tokens(pool: asyncpg.Pool, wall_api: ServeProcess) -> dict[str, str]:
    """role -> token: a screen token and a leader's, from the real login flow."""
    admin, leader = f"vadm{secrets.token_hex(3)}", f"vlea{secrets.token_hex(3)}"
    async with pool.acquire() as conn:
        passwords = {admin: await create_user(conn, admin, role="admin", actor="test"),
                     leader: await create_user(conn, leader, role="leader", actor="test")}
    async with httpx.AsyncClient(base_url=wall_api.base, timeout=10) as http:
        got = {}
        for name, password in passwords.items():
            r = await http.post("/api/v1/auth/token", data={"username": name, "password": password})
            got[name] = r.json()["access_token"]
        r = await http.post("/api/v1/wall/screen-tokens", json={"name": f"vscreen-{secrets.token_hex(2)}"},
                            headers={"Authorization": f"Bearer {got[admin]}"})
        r.raise_for_status()
        await http.post("/api/v1/wall/switch", json={"layout": "overview", "delay_s": 0},
                        headers={"Authorization": f"Bearer {got[admin]}"})
    return {"admin": got[admin], "leader": got[leader], "screen": r.json()["token"]}


@pytest.fixture(scope="module")
def clips() -> dict[str, Clip]:
    return {"main": load_clip(media_path("counter-1080p.mp4")), "sub": load_clip(media_path("counter-360p.mp4"))}


@pytest.fixture(scope="module")
def replays(broker: MosquittoRig, service_passwords: dict[str, str],
            clips: dict[str, Clip]) -> Iterator[dict[tuple[str, str], VideoReplay]]:
    """As the camera service: pl-01 and pl-02 send both streams; pl-03 has no sub-stream."""
    link = MqttClient(broker.host, broker.service_port, "svc-camera", service_passwords["svc-camera"]).wait_connected()
    out = {(cam, stream): VideoReplay(link.c, cam, stream, clips[stream]).start()
           for cam, stream in (("pl-01", "main"), ("pl-01", "sub"), ("pl-02", "main"), ("pl-02", "sub"),
                               ("pl-03", "main"))}
    yield out
    for r in out.values():
        r.stop()
    link.close()


class VideoClient:
    """A websocket client that records every video frame's header with its arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.pictures: list[dict[str, Any]] = []
        self.texts: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if isinstance(raw, str):
                    self.texts.append(orjson.loads(raw))
                elif raw[:4] == b"IOCV":
                    head, unit = decode_video(raw)
                    assert unit[:4] == b"\x00\x00\x00\x01", "access units are Annex B"
                    self.frames.append((time.time(), dict(head)))
                else:
                    self.pictures.append({"at": time.time()})
        except ConnectionClosed:
            pass

    def of(self, camera: str, stream: str | None = None) -> list[dict[str, Any]]:
        return [h for _, h in self.frames if h["camera"] == camera and stream in (None, h["stream"])]

    async def until(self, pred: Any, timeout: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                got = sorted({(h["camera"], h["stream"]) for _, h in self.frames})
                raise AssertionError(f"{what} not within {timeout} s; video of {got}")
            await asyncio.sleep(0.02)

    async def say(self, **msg: Any) -> None:
        await self.ws.send(orjson.dumps(msg).decode())

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def join(url: str, token: str, role: str, screen: int | None = None, *, rcvbuf: int | None = None,
               video: bool | None = None) -> VideoClient:
    sock = None
    if rcvbuf is not None:  # a small receive window: a stalled reader fills the hub's buffer fast
        host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect((host, int(port)))
    ws = await connect(url, compression=None, max_size=16 * 1024 * 1024, sock=sock)
    hello: dict[str, Any] = {"type": "hello", "token": token, "role": role}
    if screen is not None:
        hello["screen"] = screen
    if video is not None:
        hello["video"] = video
    await ws.send(orjson.dumps(hello).decode())
    return VideoClient(ws)


def consecutive(seqs: list[int]) -> bool:
    return all(b == a + 1 for a, b in zip(seqs, seqs[1:]))


async def metric(wall_api: ServeProcess, token: str, name: str) -> float:
    async with httpx.AsyncClient(base_url=wall_api.base) as http:
        text = (await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_streams_by_tile_size_in_order_and_a_picture_at_once(
        wall_api: ServeProcess, tokens: dict[str, str], replays: dict[tuple[str, str], VideoReplay]) -> None:
    url = wall_api.ws_url
    await asyncio.sleep(0.5)  # every stream has started: none is taken for the other
    s5 = await join(url, tokens["screen"], "screen", 5)
    s4 = await join(url, tokens["screen"], "screen", 4)
    tablet = await join(url, tokens["leader"], "tablet")
    try:
        await s5.until(lambda: len(s5.of("pl-01")) > 3 * GOP, what="screen 5's video")
        # the full-screen tile plays the main stream, nothing else; a keyframe first, then in order
        assert {(h["camera"], h["stream"]) for _, h in s5.frames} == {("pl-01", "main")}
        frames = s5.of("pl-01")
        assert frames[0]["key"] and frames[0]["codec"].startswith("avc1.") and frames[0]["width"] == 1920
        assert consecutive([h["seq"] for h in frames]), [h["seq"] for h in frames]
        # quarter tiles: the sub-stream; pl-03 has none, so its main stream instead
        await s4.until(lambda: len(s4.of("pl-02")) > GOP and len(s4.of("pl-03")) > GOP, what="screen 4's video")
        assert {(h["camera"], h["stream"]) for _, h in s4.frames} == {("pl-02", "sub"), ("pl-03", "main")}
        assert s4.of("pl-02")[0]["key"] and s4.of("pl-03")[0]["key"]
        # a tablet: sub-streams
        await tablet.until(lambda: len(tablet.of("pl-01")) > GOP, what="the tablet's video")
        assert {h["stream"] for _, h in tablet.frames if h["camera"] in ("pl-01", "pl-02")} == {"sub"}

        # a screen that connects in the middle of a group of pictures gets it from its keyframe at once
        main = replays[("pl-01", "main")]
        await s5.until(lambda: GOP // 4 <= (main.last - 1) % GOP <= GOP // 3, what="mid-GOP")
        joined_at = time.time()
        late = await join(url, tokens["screen"], "screen", 5)
        await late.until(lambda: bool(late.of("pl-01")), timeout=5, what="a picture")
        first_at, first = next((t, h) for t, h in late.frames if h["camera"] == "pl-01")
        live = max(seq for seq in range(first["seq"], main.last + 1) if main.sent[seq][1] <= first_at)
        assert first["key"] and (first["seq"] - 1) % GOP == 0 and live - first["seq"] < GOP, (first, live)
        assert main.sent[first["seq"]][1] < joined_at, "not the current GOP: a keyframe sent after joining"
        await late.until(lambda: late.of("pl-01")[-1]["seq"] > live, timeout=5, what="live frames")
        got = late.of("pl-01")
        assert consecutive([h["seq"] for h in got])
        at_once = [t for t, h in late.frames if h["camera"] == "pl-01" and h["seq"] <= live]
        assert at_once[-1] - first_at < 1.0, f"the GOP took {at_once[-1] - first_at:.2f} s"
        await late.close()

        # pictures only, then video again (from a keyframe)
        await tablet.say(type="video", on=False)
        await asyncio.sleep(0.3)
        n = len(tablet.frames)
        await asyncio.sleep(1.0)
        assert len(tablet.frames) == n
        await tablet.say(type="video", on=True, camera=None)
        await tablet.until(lambda: len(tablet.frames) > n, what="video again")
        again = [h for _, h in tablet.frames[n:] if h["camera"] == "pl-01"]
        assert again and again[0]["key"]
        # one camera off: the others play on
        await tablet.say(type="video", on=False, camera="pl-01")
        await asyncio.sleep(0.3)
        n1, n2 = len(tablet.of("pl-01")), len(tablet.of("pl-02"))
        await asyncio.sleep(1.0)
        assert len(tablet.of("pl-01")) == n1 and len(tablet.of("pl-02")) > n2

        # malformed video is dropped, logged once per camera, and breaks nothing
        topic = topics.live_camera("pl-01", "video/main")
        for bad in (b"garbage", b"IOCV\x00\x05{bad}", b"IOCW\x00\x02{}xx"):
            replays[("pl-01", "main")].client.publish(topic, bad, qos=0)
        n = len(s5.of("pl-01"))
        await s5.until(lambda: len(s5.of("pl-01")) > n + GOP, what="video after garbage")
        assert consecutive([h["seq"] for h in s5.of("pl-01")])
        assert wall_api.log_text().count('"camera video ignored"') == 1
    finally:
        for c in (s5, s4, tablet):
            await c.close()


async def test_clients_that_want_pictures_only_get_no_video(
        wall_api: ServeProcess, tokens: dict[str, str], replays: dict[tuple[str, str], VideoReplay]) -> None:
    light = await join(wall_api.ws_url, tokens["leader"], "tablet", video=False)
    full = await join(wall_api.ws_url, tokens["leader"], "tablet")
    try:
        await full.until(lambda: len(full.of("pl-01")) > GOP, what="the other tablet's video")
        assert not light.frames and any(m["type"] == "layout" for m in light.texts)
    finally:
        await light.close()
        await full.close()


async def test_a_stalled_client_resumes_at_a_keyframe_and_slows_nobody(
        wall_api: ServeProcess, tokens: dict[str, str], replays: dict[tuple[str, str], VideoReplay]) -> None:
    url = wall_api.ws_url
    fast = await join(url, tokens["screen"], "screen", 5)
    stalled = await join(url, tokens["screen"], "screen", 5, rcvbuf=4096)
    try:
        await stalled.until(lambda: len(stalled.of("pl-01")) > GOP, what="the stalled client's video")
        skipped_before = await metric(wall_api, tokens["admin"], "ioc_wall_video_skipped_total")
        stalled.ws.transport.pause_reading()  # like a tablet on a dead 4G link
        deadline = time.monotonic() + 30
        while await metric(wall_api, tokens["admin"], "ioc_wall_video_skipped_total") < skipped_before + 2 * GOP:
            assert time.monotonic() < deadline, "the hub never skipped the stalled client's frames"
            await asyncio.sleep(0.5)
        # memory bounded: what waits for the stalled socket stays near its limit (512 KB)
        waiting = await metric(wall_api, tokens["admin"], "ioc_wall_send_buffer_bytes")
        assert waiting < 2 * 1024 * 1024, waiting
        await asyncio.sleep(2.0)
        resumed_at = replays[("pl-01", "main")].last
        stalled.ws.transport.resume_reading()
        await stalled.until(lambda: stalled.of("pl-01")[-1]["seq"] > resumed_at + GOP, timeout=15, what="live again")
        seqs = [h["seq"] for h in stalled.of("pl-01")]
        gaps = [i for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1]
        assert gaps, "the stalled client got every frame: a queue"
        for i in gaps:  # every jump lands on a keyframe, and no frame comes twice or backwards
            assert stalled.of("pl-01")[i]["key"] and seqs[i] > seqs[i - 1], (seqs[i - 1], seqs[i])
        # the fast one saw everything, in order, on time
        frames = [(t, h) for t, h in fast.frames if h["camera"] == "pl-01"]
        assert consecutive([h["seq"] for _, h in frames])
        lat = sorted(t - h["captured_at"] for t, h in frames[GOP:])
        assert lat[int(len(lat) * 0.95)] < 0.5, f"the fast client waited behind the stalled one: {lat[-5:]}"
    finally:
        await fast.close()
        await stalled.close()


async def test_demand_lists_the_streams_clients_play_and_withdraws_them(
        wall_api: ServeProcess, tokens: dict[str, str], broker: MosquittoRig,
        service_passwords: dict[str, str]) -> None:
    assert wall_api.proc is not None
    node = topics.wall_demand(f"ioc-api-{socket.gethostname()}-{wall_api.proc.pid}")
    watcher = MqttClient(broker.host, broker.service_port, "svc-camera", service_passwords["svc-camera"]).wait_connected()
    watcher.subscribe(node)

    def video() -> dict[str, set[str]]:
        mine = [m.payload for m in watcher.messages if m.topic == node]
        doc = orjson.loads(mine[-1]) if mine and mine[-1] else {}
        return {k: set(v) for k, v in (doc.get("video") or {"main": [], "sub": []}).items()}

    s5 = await join(wall_api.ws_url, tokens["screen"], "screen", 5)
    s4 = await join(wall_api.ws_url, tokens["screen"], "screen", 4)
    try:
        watcher.wait_for(lambda _: video() == {"main": {"pl-01"}, "sub": {"pl-02", "pl-03", "pl-04", "pl-05"}}, 5)
        await s5.close()
        watcher.wait_for(lambda _: video() == {"main": set(), "sub": {"pl-02", "pl-03", "pl-04", "pl-05"}}, 5)
        await s4.say(type="video", on=False, camera="pl-04")
        watcher.wait_for(lambda _: video()["sub"] == {"pl-02", "pl-03", "pl-05"}, 5)
        await s4.close()
        watcher.wait_for(lambda _: video() == {"main": set(), "sub": set()}, 5)
    finally:
        await s5.close()
        await s4.close()
        watcher.close()


async def test_a_layout_switch_plays_the_new_cameras_at_once_and_the_old_ones_until_it(
        wall_api: ServeProcess, tokens: dict[str, str], replays: dict[tuple[str, str], VideoReplay]) -> None:
    auth = {"Authorization": f"Bearer {tokens['admin']}"}
    s1 = await join(wall_api.ws_url, tokens["screen"], "screen", 1)  # overview: no camera there
    try:
        async with httpx.AsyncClient(base_url=wall_api.base, headers=auth, timeout=10) as http:
            await asyncio.sleep(1.0)
            assert not s1.frames
            main = replays[("pl-01", "main")]
            await s1.until(lambda: GOP // 4 <= (main.last - 1) % GOP <= GOP // 3, what="mid-GOP")
            asked_at = time.time()
            r = await http.post("/api/v1/wall/switch", json={"layout": "phu-ly-cameras", "delay_s": 0})
            assert r.status_code == 200, r.text
            # cam-01 fills screen 1: pl-01's main stream, from the GOP the hub kept
            await s1.until(lambda: bool(s1.of("pl-01")), timeout=5, what="the new layout's video")
            first = s1.of("pl-01")[0]
            assert first["key"] and first["stream"] == "main" and main.sent[first["seq"]][1] < asked_at
            # an announced switch away: screen 1 plays on until the switch's time, then stops
            r = await http.post("/api/v1/wall/switch", json={"layout": "overview", "delay_s": 2.0})
            at = r.json()["at"]
            asked_at = time.time()
            await asyncio.sleep(max(0.0, at - time.time()) + 2.0)  # the hub looks once a second
            arrivals = [t for t, h in s1.frames if h["camera"] == "pl-01"]
            assert [t for t in arrivals if asked_at + 0.5 < t < at - 0.2], "the old layout's video stopped early"
            n = len(s1.frames)
            await asyncio.sleep(1.0)
            assert len(s1.frames) == n, "the old layout's video goes on after the switch"
    finally:
        await s1.close()
        async with httpx.AsyncClient(base_url=wall_api.base, headers=auth, timeout=10) as http:
            await http.post("/api/v1/wall/switch", json={"layout": "overview", "delay_s": 0})


async def test_malformed_video_wishes_are_refused(wall_api: ServeProcess, tokens: dict[str, str]) -> None:
    bad_hello = await join(wall_api.ws_url, tokens["leader"], "tablet", video="yes")  # type: ignore[arg-type]
    await asyncio.wait_for(bad_hello.task, 5)
    assert bad_hello.ws.close_code == 4400 and "video" in bad_hello.texts[-1]["reason"]
    for wish in ({"on": "no"}, {"on": False, "camera": 7}, {"on": False, "camera": ""}):
        c = await join(wall_api.ws_url, tokens["leader"], "tablet")
        await c.until(lambda: any(m["type"] == "layout" for m in c.texts), what="the layout")
        await c.say(type="video", **wish)
        await asyncio.wait_for(c.task, 5)
        assert c.ws.close_code == 4400, wish
    # one camera off at a time is for the cameras a page shows, not an unbounded list
    c = await join(wall_api.ws_url, tokens["leader"], "tablet")
    for i in range(257):
        await c.say(type="video", on=False, camera=f"x-{i}")
    await asyncio.wait_for(c.task, 5)
    assert c.ws.close_code == 4400 and "more than 256" in c.texts[-1]["reason"]
