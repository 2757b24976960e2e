"""No agency can take a service's MQTT session over, so no acknowledged reading is lost.

A broker hands a client id to whoever presents it last. On the generated Mosquitto
configuration of before, an agency that connected with the ingest worker's client id
kicked the ingest off and, with a clean start, wiped its session: the readings other
agencies published meanwhile got a PUBACK ("no matching subscribers") and were never
stored. The generated configuration now forces an agency's client id to its user name on
the agencies' listener, and lets the services choose theirs only on a listener of their
own; the embedded broker refuses a client id held by another account (0x85). This test
runs on whichever broker IOC_TEST_BROKER names, with the files `ioc broker config` writes,
and counts every reading: published, acknowledged, stored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from ioc.core.accounts import broker_accounts, create_agency, create_user
from ioc.core.mqtt.link import MqttLink
from ioc.core.settings import parse_mqtt_url
from tests.conftest import Stack
from tests.test_ingest_resilience import readings
from tests.test_ingest_spool import CountingPublisher, stored

INGEST_ID = "ingest-takeover"
CAMERA_ID = "cameras-takeover"
HUB_ID = "ioc-api-takeover-1"
ATTACK_S = 8.0


class ServiceLink:
    """A service's long-lived connection on its listener, counting every (re)connect and drop."""

    def __init__(self, host: str, port: int, username: str, password: str, client_id: str) -> None:
        self.connects = 0
        self.drops: list[str] = []
        self._up = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.connect(host, port, keepalive=30)
        self.c.loop_start()
        if not self._up.wait(10):
            raise TimeoutError(f"{client_id} not connected")

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            self.connects += 1
            self._up.set()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self.drops.append(str(reason))

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Attacker:
    """An agency connecting again and again with a service's client id, clean start, in a thread."""

    def __init__(self, host: str, port: int, username: str, password: str, client_ids: list[str]) -> None:
        self.args = (host, port, username, password)
        self.client_ids = client_ids
        self.tries = 0
        self.accepted = 0  # CONNACK success: on Mosquitto under another id, the agency's own
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="takeover", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        host, port, username, password = self.args
        while not self._stop.is_set():
            for client_id in self.client_ids:
                self._once(host, port, username, password, client_id)

    def _once(self, host: str, port: int, username: str, password: str, client_id: str) -> None:
        done = threading.Event()
        outcome: list[bool] = []

        def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
            outcome.append(not reason.is_failure)
            done.set()

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                        reconnect_on_failure=False)
        c.username_pw_set(username, password)
        c.on_connect = on_connect
        c.on_disconnect = lambda *a: done.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self.tries += 1
        try:
            c.connect(host, port, keepalive=30, clean_start=True, properties=props)
        except OSError:
            return
        c.loop_start()
        done.wait(5)
        if outcome and outcome[0]:
            self.accepted += 1
            time.sleep(0.2)  # hold the session a moment, as a misbehaving gateway would
        else:
            self.refused += 1
            time.sleep(0.02)
        c.disconnect()
        c.loop_stop()


async def test_an_agency_cannot_take_over_a_services_session(stack: Stack) -> None:
    async with stack.pool.acquire() as conn:
        attacker_pw = await create_agency(conn, "kecuop", name_vi="Kẻ cướp phiên", sectors=["mt"], actor="test")
        camera_pw = await create_user(conn, "svc-camera", role="camera", actor="test")
        api_pw = await create_user(conn, "svc-api", role="api", actor="test")
        accounts = await broker_accounts(conn)
    rig = stack.rig
    await asyncio.to_thread(rig.reload_accounts, accounts)

    worker = await asyncio.to_thread(stack.ingest(INGEST_ID).start)
    camera = await asyncio.to_thread(ServiceLink, rig.host, rig.port_for("svc-camera"), "svc-camera", camera_pw,
                                     CAMERA_ID)
    hub = await asyncio.to_thread(ServiceLink, rig.host, rig.port_for("svc-api"), "svc-api", api_pw, HUB_ID)
    pub = await asyncio.to_thread(CountingPublisher, stack)
    topic = f"ioc/v1/kpi/{stack.agency}"
    # the ingest's subscription is in place: these arrive before the attack
    assert await asyncio.to_thread(pub.publish, topic, readings(0, 100)) == 100

    # the agency tries every listener it can reach with each service's client id
    reachable = sorted({rig.port, rig.port_for("svc-ingest")})
    attackers = [Attacker(rig.host, port, "kecuop", attacker_pw, [INGEST_ID, CAMERA_ID, HUB_ID])
                 for port in reachable]
    for a in attackers:
        a.start()
    published, acked = 100, 100
    try:
        started = time.monotonic()
        while time.monotonic() - started < ATTACK_S:
            batch = readings(published, 500)
            acked += await asyncio.to_thread(pub.publish, topic, batch)
            published += len(batch)
    finally:
        for a in attackers:
            await asyncio.to_thread(a.stop)
    tries = sum(a.tries for a in attackers)
    assert tries >= 10, f"the attack hardly ran ({tries} tries): nothing proved"
    assert acked == published, "the broker refused readings: nothing to prove"

    deadline = time.monotonic() + 60
    n, distinct = await stored(stack)
    while n < acked and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        n, distinct = await stored(stack)
    await asyncio.sleep(1.0)  # anything more would be a duplicate
    n, distinct = await stored(stack)
    print(f"takeover tries {tries} (accepted under the agency's own id {sum(a.accepted for a in attackers)}, "
          f"refused {sum(a.refused for a in attackers)}); published {published}, acknowledged {acked}, "
          f"stored {n}, lost {acked - n}")
    drops = {"camera": (camera.connects, list(camera.drops)), "hub": (hub.connects, list(hub.drops))}
    pub.close()
    camera.close()
    hub.close()
    assert n == distinct
    assert n == acked, f"{acked - n} acknowledged readings lost while an agency used the ingest's client id"
    # every service kept its one connection throughout
    log = worker.log_text()
    assert log.count('"mqtt connected"') == 1 and '"mqtt disconnected"' not in log, log[-3000:]
    assert drops == {"camera": (1, []), "hub": (1, [])}, f"(connects, drops) of the service links: {drops}"
    assert worker.proc is not None and worker.proc.poll() is None


@pytest.mark.parametrize("name", ["ingest-0", "ingest", "cameras-1", "camera", "ioc-api-host-1"])
async def test_an_agency_cannot_be_named_like_a_service_client(pool: asyncpg.Pool, name: str) -> None:
    """On Mosquitto an agency's client id is its name: one named like a service's client id
    would take that service's session over on its own listener."""
    from ioc.core.accounts import AccountError

    async with pool.acquire() as conn:
        with pytest.raises(AccountError, match="reserved"):
            await create_agency(conn, name, name_vi="x", sectors=["mt"], actor="test")


def test_a_service_client_id_outside_the_namespace_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """A worker id agencies could also have (IOC_INGEST_WORKER_ID=w1) is said at start."""
    target = parse_mqtt_url("mqtt://u:p@127.0.0.1:1")
    caplog.set_level(logging.WARNING, logger="ioc.mqtt")
    MqttLink(target, "ingest-0")
    MqttLink(target, "cameras-x")
    MqttLink(target, "ioc-api-host-1")
    assert "outside the services' namespace" not in caplog.text
    MqttLink(target, "w1")
    flagged = [r for r in caplog.records if "outside the services' namespace" in r.getMessage()]
    assert [getattr(r, "client", None) for r in flagged] == ["w1"]
