"""Scaling out on one broker: two `ioc ingest` sharing the subscription, two `ioc serve`.

Nothing accepted is lost or stored twice, the two workers really split the load, and a
client of either API node sees every tile, whichever node its data came through.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx
import pytest

from ioc.core.accounts import broker_accounts, create_agency, create_user
from tests.conftest import REPO, IngestProcess, service_env
from tests.rigs.brokers import BrokerRig, make_broker_rig
from tests.rigs.mqtt_clients import Client as MqttClient
from tests.rigs.serve import ServeProcess
from tests.test_wall_hub import WallClient, camera_tile, open_client

READINGS_PER_AGENCY = 1500
# the overview layout's KPI tiles (dashboards/layouts/overview.toml)
TILES = {"k-received": ("tthc.dossiers_received", "37", 1234.0), "k-ontime": ("tthc.on_time_rate", "37", 99.21),
         "k-online": ("tthc.online_submission_rate", "37", 67.09), "k-paid": ("tthc.online_payment_rate", "37", 32.5),
         "k-eid": ("an.eid_level2_accounts", "37", 860000.0), "k-dvc": ("dvc.full_online_rate", "37", 54.2),
         "k-aqi": ("mt.aqi", "13285", 87.0)}


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, pool: asyncpg.Pool, db_url: str,
                service_passwords: dict[str, str]) -> AsyncIterator[dict[str, object]]:
    """A broker of this module's own, so no other test's ingest worker takes a share."""
    agencies = []
    async with pool.acquire() as conn:
        for _ in range(3):
            agency = f"so-{secrets.token_hex(3)}"
            password = await create_agency(conn, agency, name_vi=f"Sở {agency}", sectors=["tthc", "an", "dvc", "mt"],
                                           actor="test")
            agencies.append((agency, password))
        leader = f"lead{secrets.token_hex(3)}"
        leader_pw = await create_user(conn, leader, role="leader", actor="test")
        accounts = await broker_accounts(conn)
    rig = make_broker_rig(tmp_path_factory.mktemp("scale-broker"), accounts).start()
    yield {"rig": rig, "agencies": agencies, "leader": (leader, leader_pw)}
    rig.stop()


@pytest.fixture(scope="module")
def processes(world: dict[str, object], db_url: str, service_passwords: dict[str, str],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[IngestProcess], list[ServeProcess]]]:
    rig: BrokerRig = world["rig"]  # type: ignore[assignment]
    logs: Path = tmp_path_factory.mktemp("scale")
    ingest_env = service_env(db_url, rig.url_for("svc-ingest", service_passwords["svc-ingest"]),
                             IOC_INGEST_SHARE_GROUP="ioc-ingest", IOC_INGEST_HEARTBEAT_S="0.3")
    workers = [IngestProcess(ingest_env, logs / f"ingest-{i}.log", f"scale-ingest-{i}-{secrets.token_hex(2)}")
               for i in range(2)]
    serve_env = service_env(db_url, rig.url_for("svc-api", service_passwords["svc-api"]),
                            IOC_JWT_SECRET="scale-secret-" + "y" * 32)
    apis = [ServeProcess(serve_env, logs / f"serve-{i}.log", REPO) for i in range(2)]
    try:
        for p in workers:
            p.start()
        for a in apis:
            a.start()
        yield workers, apis
    finally:
        for p in workers:
            p.stop()
        for a in apis:
            a.stop()


async def test_two_ingest_and_two_api_nodes_lose_nothing_and_show_everything(
        world: dict[str, object], processes: tuple[list[IngestProcess], list[ServeProcess]], pool: asyncpg.Pool,
        service_passwords: dict[str, str]) -> None:
    workers, apis = processes
    rig: BrokerRig = world["rig"]  # type: ignore[assignment]
    leader, leader_pw = world["leader"]  # type: ignore[misc]
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO cameras (id, name, stream_url, mode) VALUES ('pl-01', 'Camera 1', 'rtsp://x', "
                           "'sub-full') ON CONFLICT (id) DO NOTHING")
    async with httpx.AsyncClient(base_url=apis[0].base, timeout=10) as http:
        token = (await http.post("/api/v1/auth/token", data={"username": leader, "password": leader_pw})).json()["access_token"]
    clients: list[WallClient] = []
    for api in apis:
        for _ in range(3):
            clients.append(await open_client(api.ws_url, token, "tablet"))
    for c in clients:
        await c.wait("layout")

    # three agencies publish concurrently, one reading per message, QoS 1
    base = datetime.now(timezone.utc) - timedelta(days=3)
    pubs, batches = [], []
    for n, (agency, password) in enumerate(world["agencies"]):  # type: ignore[arg-type]
        pubs.append(MqttClient(rig.host, rig.port, agency, password).wait_connected())
        batches.append((f"ioc/v1/kpi/{agency}", [
            {"kpi": "tthc.dossiers_received", "area": "13285", "value": i,
             "ts": (base + timedelta(seconds=n * 100_000 + i)).isoformat()} for i in range(READINGS_PER_AGENCY)]))
    await asyncio.gather(*(asyncio.to_thread(pub.publish_many, topic, payloads)
                           for pub, (topic, payloads) in zip(pubs, batches)))
    # then the newest value of every KPI tile, through the first agency
    # now, not earlier: another test may have stored these KPIs for these areas minutes ago,
    # and only a newer reading changes a tile
    now = datetime.now(timezone.utc)
    pubs[0].publish_many(f"ioc/v1/kpi/{world['agencies'][0][0]}", [  # type: ignore[index]
        {"kpi": kpi, "area": area, "ts": now.isoformat(), "value": value} for kpi, area, value in TILES.values()])
    cam = MqttClient(rig.host, rig.service_port, "svc-camera", service_passwords["svc-camera"]).wait_connected()
    cam.publish("ioc/v1/live/camera/pl-01/tile", camera_tile("pl-01", 424242), qos=0, retain=True)

    agency_ids = [a for a, _ in world["agencies"]]  # type: ignore[union-attr]
    expected = len(agency_ids) * READINGS_PER_AGENCY + len(TILES)
    deadline = time.monotonic() + 60
    async with pool.acquire() as conn:
        while time.monotonic() < deadline:
            stored = await conn.fetchval("SELECT count(*) FROM readings WHERE agency = ANY($1::text[])", agency_ids)
            if stored >= expected:
                break
            await asyncio.sleep(0.2)
        rejected = await conn.fetch("SELECT reason FROM dead_letters WHERE agency = ANY($1::text[])", agency_ids)
        assert not rejected and stored == expected, f"{stored} of {expected} readings stored; rejected: {rejected[:3]}"
        distinct = await conn.fetchval("SELECT count(DISTINCT (kpi, area, ts)) FROM readings WHERE agency = ANY($1::text[])",
                                       agency_ids)
        assert distinct == expected
        await asyncio.sleep(1.0)  # a heartbeat of each worker after the last batch
        rows = await conn.fetch("SELECT worker_id, readings_accepted, readings_duplicate FROM ingest_workers "
                                "WHERE worker_id = ANY($1::text[])", [w.worker_id for w in workers])
    accepted = {r["worker_id"]: r["readings_accepted"] for r in rows}
    assert sum(accepted.values()) == expected, f"each reading is written once in all: {accepted}"
    assert all(v > 0 for v in accepted.values()) and len(accepted) == 2, f"the two workers share the load: {accepted}"
    assert sum(r["readings_duplicate"] for r in rows) == 0

    # every client, on either API node, shows every tile's newest value and the picture
    for c in clients:
        for tile, (_, _, value) in TILES.items():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                got = c.of("tile", tile=tile)
                if got and got[-1]["data"]["value"] == value:
                    break
                await asyncio.sleep(0.05)
            assert got and got[-1]["data"]["value"] == value, (tile, got[-1:] if got else None)
        await c.wait("picture", camera="pl-01", seq=424242, timeout=10)
    for c in clients:
        await c.close()
    for p in [*pubs, cam]:
        p.close()
