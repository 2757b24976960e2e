"""Admins add, change and remove cameras through the API; a running `ioc cameras` follows."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import orjson

from ioc.core.accounts import create_user
from tests.conftest import REPO
from tests.rigs.children import end, preexec, track
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client
from tests.rigs.rtsp.rig import RtspRig
from tests.rigs.serve import ServeProcess

SECRET = "cam-pass-" + secrets.token_hex(4)


async def test_cameras_added_through_the_api_go_live_and_leave(
        tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str], pool: asyncpg.Pool, db_url: str,
        wall_api: ServeProcess) -> None:
    async with pool.acquire() as conn:
        names = {role: f"ca{role[:3]}{secrets.token_hex(2)}" for role in ("admin", "operator")}
        pws = {role: await create_user(conn, n, role=role, actor="test") for role, n in names.items()}
    async with httpx.AsyncClient(base_url=wall_api.base, timeout=10) as http:
        tokens = {r: (await http.post("/api/v1/auth/token", data={"username": names[r], "password": pws[r]})).json()
                  ["access_token"] for r in names}
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        with RtspRig() as rig:
            cam_id = f"api-{secrets.token_hex(2)}"
            body = {"id": cam_id, "name": "Cổng UBND tỉnh", "lat": 20.54, "lon": 105.91, "area": "347",
                    "main_url": rig.url("street-1080p"), "sub_url": rig.url("street-360p"),
                    "username": "viewer", "password": SECRET, "tags": ["thu-nghiem"]}
            # refusals first: role, bad data, credentials in the URL
            r = await http.post("/api/v1/cameras", json=body, headers={"Authorization": f"Bearer {tokens['operator']}"})
            assert r.status_code == 403
            r = await http.post("/api/v1/cameras", json={**body, "main_url": "http://x/"}, headers=admin)
            assert r.status_code == 422 and "main_url" in r.json()["detail"][0]["msg"]
            r = await http.post("/api/v1/cameras", json={**body, "main_url": "rtsp://u:p@10.0.0.1/x"}, headers=admin)
            assert r.status_code == 422
            r = await http.post("/api/v1/cameras", json=body, headers=admin)
            assert r.status_code == 201, r.text
            assert SECRET not in r.text and r.json()["has_credentials"] and r.json()["mode"] == "sub-full"
            assert (await http.post("/api/v1/cameras", json=body, headers=admin)).status_code == 409

            # a running camera service picks it up without a restart
            env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
            env.update({"IOC_MQTT_URL": broker.url_for("svc-camera", service_passwords["svc-camera"]),
                        "IOC_DATABASE_URL": db_url, "IOC_CAMERA_RELOAD_S": "1", "PYTHONPATH": str(REPO),
                        "IOC_CAMERA_WORKER_ID": f"cam-admin-{secrets.token_hex(2)}", "IOC_LOG_FORMAT": "json"})
            log_path = tmp_path / "cameras.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "cameras"], env=env, cwd=REPO, stdout=log,
                                        stderr=subprocess.STDOUT, preexec_fn=preexec())
            track(proc)
            wall = Client(broker.host, broker.service_port, "svc-api", service_passwords["svc-api"]).wait_connected()
            try:
                wall.subscribe(f"ioc/v1/live/camera/{cam_id}/#")

                def status() -> dict[str, object]:
                    found = [m.payload for m in wall.messages if m.topic == f"ioc/v1/live/camera/{cam_id}/status"]
                    return orjson.loads(found[-1]) if found and found[-1] else {}

                wall.wait_for(lambda _: status().get("state") == "online", 30)
                assert status()["mode"] == "sub-full"
                listed = {c["id"]: c for c in (await http.get("/api/v1/cameras", headers=admin)).json()}
                assert listed[cam_id]["source"] == "api" and SECRET not in str(listed)
                # an operator accepts the current view as the reference for scene changes
                r = await http.post(f"/api/v1/cameras/{cam_id}/reference",
                                    headers={"Authorization": f"Bearer {tokens['operator']}"})
                assert r.status_code == 202
                deadline = time.monotonic() + 5
                while '"camera reference accepted"' not in log_path.read_text() and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert '"camera reference accepted"' in log_path.read_text()
                # a change restarts it on the new stream
                r = await http.put(f"/api/v1/cameras/{cam_id}", json={**body, "sub_url": None, "tile_stream": "main"},
                                   headers=admin)
                assert r.status_code == 200 and r.json()["mode"] == "main-keyframes"
                wall.wait_for(lambda _: status().get("mode") == "main-keyframes" and status().get("state") == "online", 30)
                # removed: the service stops it and its retained status leaves the wall
                assert (await http.delete(f"/api/v1/cameras/{cam_id}", headers=admin)).status_code == 204
                wall.wait_for(lambda ms: any(m.topic == f"ioc/v1/live/camera/{cam_id}/status" and m.payload == b""
                                             for m in ms), 10)
                assert (await http.delete(f"/api/v1/cameras/{cam_id}", headers=admin)).status_code == 404
                assert proc.poll() is None
            finally:
                end(proc)
                wall.close()
            text = log_path.read_text()
            assert '"camera added"' in text and '"camera removed"' in text and SECRET not in text
    async with pool.acquire() as conn:
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log WHERE subject = $1 ORDER BY id", cam_id)]
        assert actions == ["camera.added", "camera.reference_accepted", "camera.changed", "camera.removed"]
        # cameras of the registry file are changed in the file, not here
        await conn.execute("INSERT INTO cameras (id, name, stream_url, mode) VALUES ('file-cam', 'F', 'rtsp://x', "
                           "'sub-full') ON CONFLICT (id) DO NOTHING")
    async with httpx.AsyncClient(base_url=wall_api.base, timeout=10) as http:
        r = await http.delete("/api/v1/cameras/file-cam", headers=admin)
        assert r.status_code == 409 and "registry file" in r.json()["detail"]
    assert SECRET not in wall_api.log_text()
