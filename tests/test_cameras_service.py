"""`ioc cameras` end to end: real RTSP cameras in, tiles and status out on the real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import cv2
import httpx
import numpy as np
import orjson

from ioc.core.storage.cameras import uptime_per_day
from ioc.core.contracts.tile_frame import decode_tile
from ioc.core.accounts import create_user
from ioc.serve.api.app import create_app
from ioc.core.settings import load_settings
from tests.conftest import REPO
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client
from tests.rigs.rtsp.rig import RtspRig, refused_url


async def test_ioc_cameras_publishes_tiles_and_status(
    tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str], pool: asyncpg.Pool, db_url: str
) -> None:
    await asyncio.to_thread(_run_cameras, tmp_path, broker, service_passwords, db_url)
    async with pool.acquire() as conn:
        log = {r["camera"]: r for r in await conn.fetch(
            "SELECT DISTINCT ON (camera) camera, state, healthy, flags, reason FROM camera_status_log "
            "WHERE camera IN ('street', 'black', 'dead') ORDER BY camera, at DESC")}
        events = await conn.fetch("SELECT camera, kind, ended_at FROM camera_events WHERE camera IN ('black', 'dead')")
    assert log["street"]["state"] == "online" and log["street"]["healthy"]
    assert "black" in log["black"]["flags"] and log["dead"]["state"] == "offline"
    assert {(e["camera"], e["kind"]) for e in events} >= {("black", "black"), ("dead", "offline")}

    # the API shows the same, to staff only
    settings = load_settings(database_url=db_url, jwt_secret="c" * 40)
    app = create_app(settings)
    async with pool.acquire() as conn:
        pw = await create_user(conn, f"camop{os.getpid()}", role="operator", actor="test")
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            assert (await c.get("/api/v1/cameras")).status_code == 401
            token = (await c.post("/api/v1/auth/token", data={"username": f"camop{os.getpid()}", "password": pw})).json()["access_token"]
            h = {"Authorization": f"Bearer {token}"}
            cams = {x["id"]: x for x in (await c.get("/api/v1/cameras", headers=h)).json()}
            assert cams["street"]["state"] == "online" and cams["dead"]["state"] == "offline"
            assert "password" not in str(cams) and cams["street"]["mode"] == "sub-full"
            ev = (await c.get("/api/v1/cameras/dead/events", headers=h)).json()
            assert ev and ev[0]["kind"] == "offline"
            up = (await c.get("/api/v1/cameras/street/uptime?days=1", headers=h)).json()
            assert up and up[-1]["known_s"] > 0 and up[-1]["uptime"] > 0.5
            assert (await c.get("/api/v1/cameras/nope/history", headers=h)).status_code == 404


async def test_uptime_per_local_day(pool: asyncpg.Pool) -> None:
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    day = datetime(2025, 3, 10, tzinfo=tz)
    rows = [(day - timedelta(hours=2), "online"), (day + timedelta(hours=6), "offline"),
            (day + timedelta(hours=12), "online"), (day + timedelta(hours=30), "offline")]
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO camera_status_log (camera, at, state, healthy) VALUES ('upt-test', $1, $2, $2 = 'online')",
            rows)
        days = await uptime_per_day(conn, "upt-test", day, day + timedelta(days=2), "Asia/Ho_Chi_Minh")
    assert [(d["day"], d["online_s"], d["known_s"]) for d in days] == [
        (day, 18 * 3600.0, 24 * 3600.0), (day + timedelta(days=1), 6 * 3600.0, 24 * 3600.0)]


def _run_cameras(tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str], db_url: str) -> None:
    with RtspRig() as rig:
        registry = tmp_path / "cameras.toml"
        registry.write_text(
            f'[[camera]]\nid = "street"\nname = "Phố"\nmain_url = "{rig.url("street-1080p")}"\nsub_url = "{rig.url("street-360p")}"\n'
            f'[[camera]]\nid = "black"\nname = "Đen"\nmain_url = "{rig.url("black-360p")}"\ntile_stream = "main"\n'
            f'[[camera]]\nid = "wide"\nname = "Rộng"\nmain_url = "{rig.url("street-1080p")}"\ntile_stream = "main"\n'
            f'[[camera]]\nid = "dead"\nname = "Hỏng"\nmain_url = "{refused_url()}"\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update({"IOC_MQTT_URL": broker.url_for("svc-camera", service_passwords["svc-camera"]),
                    "IOC_CAMERA_REGISTRY": str(registry), "IOC_CAMERA_HD_FPS": "1", "PYTHONPATH": str(REPO),
                    "IOC_CAMERA_WORKER_ID": "cam-test", "IOC_DATABASE_URL": db_url})
        log = open(tmp_path / "cameras.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "cameras"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
        wall = Client(broker.host, broker.service_port, "svc-api", service_passwords["svc-api"]).wait_connected()
        try:
            wall.subscribe("ioc/v1/live/camera/#")
            wall.subscribe("ioc/v1/status/camera/#")

            def latest(topic: str) -> bytes | None:
                found = [m.payload for m in wall.messages if m.topic == topic]
                return found[-1] if found else None

            wall.wait_for(lambda ms: all(any(m.topic == f"ioc/v1/live/camera/{c}/tile" for m in ms)
                                         for c in ("street", "wide")), 20)
            header, jpeg = decode_tile(latest("ioc/v1/live/camera/street/tile"))  # type: ignore[arg-type]
            picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (360, 640, 3) and (header["width"], header["height"]) == (640, 360)
            assert 0 <= time.time() - float(header["captured_at"]) < 5  # type: ignore[arg-type]
            header, jpeg = decode_tile(latest("ioc/v1/live/camera/wide/tile"))  # type: ignore[arg-type]
            assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
            # HD tiles only for what a wall shows large: none yet, then "wide" once a node asks
            time.sleep(1.5)
            assert not any(m.topic.endswith("/tile/hd") for m in wall.messages)
            wall.publish("ioc/v1/wall/demand/test-node", orjson.dumps({"hd": ["wide"]}), retain=True)
            wall.wait_for(lambda ms: any(m.topic == "ioc/v1/live/camera/wide/tile/hd" for m in ms), 5)
            hd_header, jpeg = decode_tile(latest("ioc/v1/live/camera/wide/tile/hd"))  # type: ignore[arg-type]
            assert hd_header["variant"] == "hd" and (hd_header["width"], hd_header["height"]) == (1920, 1080)
            assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (1080, 1920, 3)
            wall.publish("ioc/v1/wall/demand/test-node", b"", retain=True)  # the node went away
            time.sleep(1.0)
            n_hd = sum(m.topic.endswith("/tile/hd") for m in wall.messages)
            time.sleep(2.5)
            assert sum(m.topic.endswith("/tile/hd") for m in wall.messages) == n_hd
            assert not any(m.topic == "ioc/v1/live/camera/street/tile/hd" for m in wall.messages)
            wall.publish("ioc/v1/wall/demand/test-node", b"{not json", retain=True)  # logged, ignored
            # tiles keep coming, each a new frame
            time.sleep(2.5)
            seqs = [decode_tile(m.payload)[0]["seq"] for m in wall.messages if m.topic == "ioc/v1/live/camera/street/tile"]
            assert len(seqs) >= 4 and len(set(seqs)) == len(seqs)  # and the bad demand changed nothing
            wall.publish("ioc/v1/wall/demand/test-node", b"", retain=True)  # not left for other tests

            def status(cam: str) -> dict[str, object]:
                raw = latest(f"ioc/v1/live/camera/{cam}/status")
                return orjson.loads(raw) if raw else {}

            wall.wait_for(lambda _: status("black").get("flags", {}).get("black") is True, 10)  # type: ignore[union-attr]
            assert status("black")["mode"] == "main-keyframes" and status("black")["healthy"] is False
            wall.wait_for(lambda _: status("dead").get("state") == "offline", 10)
            assert "connect" in str(status("dead")["reason"])
            assert status("street")["state"] == "online" and status("street")["healthy"] is True
            # the test streams carry a keyframe every second, both ways of decoding see it
            wall.wait_for(lambda _: status("street").get("keyframe_interval_s") is not None
                          and status("black").get("keyframe_interval_s") is not None, 10)
            assert 0.7 < status("street")["keyframe_interval_s"] < 1.3, status("street")  # type: ignore[operator]
            assert 0.7 < status("black")["keyframe_interval_s"] < 1.3, status("black")  # type: ignore[operator]
            assert not any(m.topic == "ioc/v1/live/camera/dead/tile" for m in wall.messages)
            assert orjson.loads(latest("ioc/v1/status/camera/cam-test"))["state"] == "online"  # type: ignore[arg-type]
            assert "password" not in (tmp_path / "cameras.log").read_text()
            wall.wait_for(lambda ms: any(m.topic == "ioc/v1/live/camera/dead/event" for m in ms), 5)
            ev = orjson.loads(latest("ioc/v1/live/camera/dead/event"))  # type: ignore[arg-type]
            assert (ev["kind"], ev["state"]) == ("offline", "started")
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
        # structured logs only: no library's own warnings on the service's output (issue 13:
        # OpenCV printed five at every start), each line one JSON object naming its logger
        stray = [line for line in (tmp_path / "cameras.log").read_text(errors="replace").splitlines()
                 if not (line.startswith("{") and "logger" in orjson.loads(line))]
        assert not stray, stray[:5]
        # the last will / clean stop: a retained presence message that is not "online" any more
        wall.wait_for(lambda _: orjson.loads(latest("ioc/v1/status/camera/cam-test") or b"{}").get("state") != "online", 10)
        wall.close()
