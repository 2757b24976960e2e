#!/usr/bin/env python3
"""ioc-healthcheck api|ingest|cameras: Docker health checks of the compose stack.

Exits 0 when the service in this container is healthy, 1 when not, saying why on one
line. It reads the same IOC_* settings as the service itself.

- api: GET /healthz on this container answers 200 with status "ok" (API and database up);
- ingest: this worker (IOC_INGEST_WORKER_ID) wrote its heartbeat row in `ingest_workers`
  recently, so its loop runs and the database takes its writes;
- cameras: the broker holds this service's presence (`ioc/v1/status/camera/<worker>`,
  retained, replaced by its last will when it drops) as "online". With `--shard i/N`
  the worker id gets an `-iofN` suffix, so a sharded service must set
  IOC_CAMERA_WORKER_ID to the full name for this check.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request

from ioc.core.contracts import topics
from ioc.core.contracts.camera import decode_presence
from ioc.core.settings import Settings, load_settings

TIMEOUT_S = 5.0


def check_api(settings: Settings) -> str | None:
    url = f"http://127.0.0.1:{settings.api_port}/healthz"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        body = json.load(response)
    return None if body.get("status") == "ok" else f"{url}: {body}"


def check_ingest(settings: Settings) -> str | None:
    import asyncpg

    async def age_s() -> float | None:
        conn = await asyncpg.connect(settings.require_database_url(), timeout=TIMEOUT_S)
        try:
            return await conn.fetchval(
                "SELECT extract(epoch FROM now() - last_seen)::float8 FROM ingest_workers WHERE worker_id = $1",
                settings.ingest_worker_id,
            )
        finally:
            await conn.close()

    age = asyncio.run(age_s())
    limit = max(30.0, 3 * settings.ingest_heartbeat_s)
    if age is None:
        return f"no heartbeat from {settings.ingest_worker_id} yet"
    return None if age <= limit else f"last heartbeat of {settings.ingest_worker_id} {age:.0f} s ago"


def check_cameras(settings: Settings) -> str | None:
    import paho.mqtt.client as mqtt

    target = settings.require_mqtt()
    topic = topics.camera_presence(settings.camera_worker_id)
    seen: dict[str, object] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{settings.camera_worker_id}-health-{os.getpid()}")
    client.username_pw_set(target.username, target.password)
    if target.tls:
        client.tls_set()
    client.on_connect = lambda c, _u, _f, rc, _p: c.subscribe(topic, qos=0) if not rc.is_failure else seen.update(error=str(rc))
    client.on_message = lambda _c, _u, msg: seen.update(presence=decode_presence(msg.payload))
    client.connect(target.host, target.port, keepalive=int(TIMEOUT_S) + 5)
    deadline = time.monotonic() + TIMEOUT_S
    while not seen and time.monotonic() < deadline:
        client.loop(timeout=0.2)
    client.disconnect()
    if "error" in seen:
        return f"broker refused the check: {seen['error']}"
    presence = seen.get("presence")
    if not isinstance(presence, dict) or presence.get("state") != "online":
        return f"{topic}: {presence or 'nothing retained'}"
    return None


CHECKS = {"api": check_api, "ingest": check_ingest, "cameras": check_cameras}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: ioc-healthcheck {'|'.join(CHECKS)}", file=sys.stderr)
        return 2
    try:
        problem = CHECKS[argv[0]](load_settings())
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", said in one line
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
