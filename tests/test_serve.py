"""`ioc serve` as deployed: a real uvicorn process on a port, real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import asyncpg
import httpx

from ioc.core.accounts import create_user
from tests.conftest import REPO
from tests.rigs.mosquitto import free_port


async def test_ioc_serve_answers_over_http(db_url: str, pool: asyncpg.Pool, tmp_path, storage_mode: str) -> None:  # type: ignore[no-untyped-def]
    async with pool.acquire() as conn:
        password = await create_user(conn, f"adm{os.getpid()}", role="admin", actor="test")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": db_url, "IOC_JWT_SECRET": "s" * 40, "PYTHONPATH": str(REPO)})
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    r = await client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                    assert time.monotonic() < deadline, "ioc serve did not answer in 20 s"
                    time.sleep(0.1)
            assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok", "storage_mode": storage_mode}
            assert (await client.get("/api/v1/kpis")).status_code == 401
            r = await client.post("/api/v1/auth/token", data={"username": f"adm{os.getpid()}", "password": password})
            token = r.json()["access_token"]
            me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["role"] == "admin"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    # the missing secret is named at start
    env.pop("IOC_JWT_SECRET")
    out = subprocess.run([sys.executable, "-m", "ioc.cli", "serve"], env=env, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "IOC_JWT_SECRET is not set" in out.stderr
