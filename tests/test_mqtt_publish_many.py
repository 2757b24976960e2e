"""`MqttLink.publish_many`, the camera service's path for live video: QoS 0 PUBLISH packets
built by the link and written at once, behind whatever paho still has to send.

Real parts: the broker the service tests run on (Mosquitto, or the embedded one with
IOC_TEST_BROKER=embedded) and a subscriber with a wall node's account. What must hold:
every message arrives whole, in the order it was handed over, interleaved correctly with
paho's own publishes; a batch bigger than the socket takes at once goes out in full when
the socket drains; nothing is retained.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioc.core.contracts import topics
from ioc.core.mqtt.broker_files import BrokerAccount
from ioc.core.mqtt.link import MqttLink
from ioc.core.passwords import hash_password
from ioc.core.settings import parse_mqtt_url
from tests.rigs.brokers import BrokerRig, make_broker_rig
from tests.rigs.mqtt_clients import Client

PASSWORDS = {"svc-camera": secrets.token_urlsafe(12), "svc-api": secrets.token_urlsafe(12)}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerRig]:
    accounts = [BrokerAccount("svc-camera", hash_password(PASSWORDS["svc-camera"]), "camera"),
                BrokerAccount("svc-api", hash_password(PASSWORDS["svc-api"]), "api")]
    broker = make_broker_rig(Path(tmp_path_factory.mktemp("broker")), accounts)
    broker.start()
    yield broker
    broker.stop()


def _payload(i: int, size: int) -> bytes:
    return i.to_bytes(4, "big") + secrets.token_bytes(size)


async def test_messages_arrive_whole_in_order_behind_paho_and_not_retained(rig: BrokerRig) -> None:
    wall = Client(rig.host, rig.service_port, "svc-api", PASSWORDS["svc-api"]).wait_connected()
    link = MqttLink(parse_mqtt_url(rig.url_for("svc-camera", PASSWORDS["svc-camera"])), "cameras-publish-many")
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        sock = link.client.socket()
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)  # so that a big batch cannot go in one write
        wall.subscribe("ioc/v1/live/camera/#", qos=0)
        video = [topics.live_camera(f"cam-{c}", "video/main") for c in "ab"]
        status = topics.live_camera("cam-a", "status")
        expected: list[tuple[str, bytes]] = []

        def many(batch: list[tuple[str, bytes]]) -> None:
            assert link.publish_many(batch) == len(batch)
            expected.extend(batch)

        many([(video[0], _payload(0, 0)), (video[1], _payload(1, 200)), (video[0], _payload(2, 130))])
        # written at once, not when something else makes the loop write
        await asyncio.to_thread(wall.wait_for, lambda m: len(m) >= 3, 5)
        assert link.publish(status, b"paho's own", qos=0)
        expected.append((status, b"paho's own"))
        many([(video[1], _payload(3, 100_000))])  # a 1080p keyframe's size; a 2-byte remaining length no more
        # more than the socket takes at once: the rest goes when it drains, and what is
        # published after it waits its turn
        many([(video[i % 2], _payload(10 + i, 900_000)) for i in range(12)])
        assert link.client.want_write()  # the socket took part of it: the loop writes the rest
        assert link.publish(status, b"after the big batch", qos=0)
        expected.append((status, b"after the big batch"))
        many([(video[0], _payload(99, 10))])
        assert link.publish_many([]) == 0

        got = await asyncio.to_thread(wall.wait_for, lambda m: len(m) >= len(expected), 30)
        assert [(m.topic, m.payload) for m in got] == expected
        assert not any(m.retain for m in got)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        wall.close()
    # gone from the broker with the link: nothing was kept for a subscriber that comes later
    late = Client(rig.host, rig.service_port, "svc-api", PASSWORDS["svc-api"]).wait_connected()
    try:
        late.subscribe("ioc/v1/live/camera/#", qos=0)
        await asyncio.sleep(0.5)
        assert late.messages == []
    finally:
        late.close()


async def test_nothing_is_kept_while_disconnected(rig: BrokerRig) -> None:
    link = MqttLink(parse_mqtt_url(rig.url_for("svc-camera", PASSWORDS["svc-camera"])), "cameras-publish-many-2")
    assert link.publish_many([(topics.live_camera("cam-a", "video/main"), b"x")]) == 0
    assert not link.client._out_packet  # type: ignore[attr-defined]
