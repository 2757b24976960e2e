"""`ioc cameras` end to end: real RTSP cameras in, tiles and status out on the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import cv2
import numpy as np
import orjson

from camera.tiles import decode_tile
from tests.conftest import REPO
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client
from tests.rigs.rtsp.rig import RtspRig, refused_url


def test_ioc_cameras_publishes_tiles_and_status(
    tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str], pool: asyncpg.Pool
) -> None:
    with RtspRig() as rig:
        registry = tmp_path / "cameras.toml"
        registry.write_text(
            f'[[camera]]\nid = "street"\nname = "Phố"\nmain_url = "{rig.url("street-1080p")}"\nsub_url = "{rig.url("street-360p")}"\n'
            f'[[camera]]\nid = "black"\nname = "Đen"\nmain_url = "{rig.url("black-360p")}"\ntile_stream = "main"\n'
            f'[[camera]]\nid = "dead"\nname = "Hỏng"\nmain_url = "{refused_url()}"\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update({"IOC_MQTT_URL": broker.url_for("svc-camera", service_passwords["svc-camera"]),
                    "IOC_CAMERA_REGISTRY": str(registry), "IOC_CAMERA_HD_FPS": "1", "PYTHONPATH": str(REPO),
                    "IOC_CAMERA_WORKER_ID": "cam-test"})
        log = open(tmp_path / "cameras.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "cameras"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
        wall = Client(broker.host, broker.port, "svc-api", service_passwords["svc-api"]).wait_connected()
        try:
            wall.subscribe("ioc/v1/live/camera/#")
            wall.subscribe("ioc/v1/status/camera/#")

            def latest(topic: str) -> bytes | None:
                found = [m.payload for m in wall.messages if m.topic == topic]
                return found[-1] if found else None

            wall.wait_for(lambda ms: any(m.topic == "ioc/v1/live/camera/street/tile" for m in ms)
                          and any(m.topic == "ioc/v1/live/camera/street/tile/hd" for m in ms), 20)
            header, jpeg = decode_tile(latest("ioc/v1/live/camera/street/tile"))  # type: ignore[arg-type]
            picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (360, 640, 3) and (header["width"], header["height"]) == (640, 360)
            assert 0 <= time.time() - float(header["captured_at"]) < 5  # type: ignore[arg-type]
            hd_header, _ = decode_tile(latest("ioc/v1/live/camera/street/tile/hd"))  # type: ignore[arg-type]
            assert hd_header["variant"] == "hd"
            # tiles keep coming, each a new frame
            time.sleep(2.5)
            seqs = [decode_tile(m.payload)[0]["seq"] for m in wall.messages if m.topic == "ioc/v1/live/camera/street/tile"]
            assert len(seqs) >= 4 and len(set(seqs)) == len(seqs)

            def status(cam: str) -> dict[str, object]:
                raw = latest(f"ioc/v1/live/camera/{cam}/status")
                return orjson.loads(raw) if raw else {}

            wall.wait_for(lambda _: status("black").get("flags", {}).get("black") is True, 10)  # type: ignore[union-attr]
            assert status("black")["mode"] == "main-keyframes" and status("black")["healthy"] is False
            wall.wait_for(lambda _: status("dead").get("state") == "offline", 10)
            assert "connect" in str(status("dead")["reason"])
            assert status("street")["state"] == "online" and status("street")["healthy"] is True
            assert not any(m.topic == "ioc/v1/live/camera/dead/tile" for m in wall.messages)
            assert orjson.loads(latest("ioc/v1/status/camera/cam-test"))["state"] == "online"  # type: ignore[arg-type]
            assert "password" not in (tmp_path / "cameras.log").read_text()
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
        # the last will / clean stop: a retained presence message that is not "online" any more
        wall.wait_for(lambda _: orjson.loads(latest("ioc/v1/status/camera/cam-test") or b"{}").get("state") != "online", 10)
        wall.close()
