"""The embedded broker (`ioc broker run`): the MQTT the services rely on, and bad clients.

Run as the real command on the files `ioc broker config` writes, with paho-mqtt clients
(the library the services use) and raw sockets for what paho would never send. The same
access rules as tests/test_broker_access.py hold here, and where Mosquitto 2.0 has known
limitations (foreign members of a shared group, $share subscriptions lost on restart,
clean-start sessions not saved) the embedded broker is tested to do better.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ioc.core.mqtt.broker_files import BrokerAccount, render_acl
from ioc.extras.broker import codec
from ioc.extras.broker.access import READ, WRITE, AccessFileError, load_access
from ioc.extras.broker.topics import matches, overlaps, split_shared, valid_filter
from ioc.core.passwords import hash_password, new_password
from tests.rigs.embedded_broker import EmbeddedBrokerRig
from tests.rigs.mosquitto import BrokerStartError
from tests.test_broker_access import (  # noqa: F401 - `passwords` is a fixture
    RC_NOT_AUTHORIZED,
    RC_SUCCESS,
    SHARE,
    Peer,
    make_accounts,
    passwords,
    payloads_of,
    wait_until,
)

RC_BAD_LOGIN = 0x86
RC_NO_MATCHING_SUBSCRIBERS = 0x10
RC_PACKET_TOO_LARGE = 0x95
RC_SESSION_TAKEN_OVER = 0x8E


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]) -> Iterator[EmbeddedBrokerRig]:
    with EmbeddedBrokerRig(tmp_path_factory.mktemp("embedded"), make_accounts(passwords)) as broker:
        yield broker


@pytest.fixture()
def fresh_rig(tmp_path: Path, passwords: dict[str, str]) -> Iterator[EmbeddedBrokerRig]:
    with EmbeddedBrokerRig(tmp_path / "broker", make_accounts(passwords)) as broker:
        yield broker


def durable(rig: EmbeddedBrokerRig, passwords: dict[str, str], client_id: str, *, clean_start: bool = False,
            manual_ack: bool = False, hold: object = None) -> Peer:
    return Peer(rig, "ingest", passwords["ingest"], client_id=client_id, clean_start=clean_start,  # type: ignore[arg-type]
                session_expiry=3600, manual_ack=manual_ack, hold=hold)  # type: ignore[arg-type]


# -- raw MQTT for what paho never sends ------------------------------------------------


def raw_connect(rig: EmbeddedBrokerRig, user: str, password: str, *, client_id: str = "raw", keepalive: int = 30,
                will: tuple[str, bytes] | None = None, level: int = 5) -> socket.socket:
    flags = 0xC2 | (0x04 if will else 0)
    body = codec.encode_string("MQTT") + bytes((level, flags)) + struct.pack(">H", keepalive)
    if level == 5:
        body += b"\x00"
    body += codec.encode_string(client_id)
    if will:
        body += (b"\x00" if level == 5 else b"") + codec.encode_string(will[0]) + codec.encode_binary(will[1])
    body += codec.encode_string(user) + codec.encode_binary(password.encode())
    s = socket.create_connection((rig.host, rig.port), timeout=5)
    s.sendall(codec.packet(0x10, body))
    head = s.recv(2)
    assert head[:1] == b"\x20", head
    rest = recv_exactly(s, head[1])
    assert rest[1] == 0, f"CONNACK refused: {rest!r}"
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def closed_by_broker(s: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the broker closes the socket; returns what it sent before."""
    s.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


# -- topics, codec, access (no broker process) -----------------------------------------


def test_topic_rules() -> None:
    assert matches("ioc/v1/kpi/+", "ioc/v1/kpi/tthc")
    assert not matches("ioc/v1/kpi/+", "ioc/v1/kpi/tthc/x")
    assert matches("ioc/v1/live/#", "ioc/v1/live/camera/pl-01/tile")
    assert matches("ioc/v1/live/#", "ioc/v1/live")  # '#' includes the parent level
    assert matches("+/+", "/x") and not matches("+", "/x")
    assert not matches("#", "$SYS/broker") and not matches("+/broker", "$SYS/broker")
    assert matches("$SYS/#", "$SYS/broker")
    for good in ("#", "a/+/b", "+", "a/#", "/"):
        assert valid_filter(good), good
    for bad in ("", "a#", "a/#/b", "a+/b", "a/b+"):
        assert not valid_filter(bad), bad
    assert split_shared("$share/ioc-ingest/ioc/v1/kpi/+") == ("ioc-ingest", "ioc/v1/kpi/+")
    assert split_shared("ioc/v1/kpi/+") == (None, "ioc/v1/kpi/+")
    for bad in ("$share/g", "$share//x", "$share/g+/x", "$share/g/"):
        with pytest.raises(ValueError):
            split_shared(bad)
    assert overlaps("ioc/v1/ack/tthc", "ioc/v1/ack/+") and overlaps("ioc/v1/ack/tthc", "#")
    assert not overlaps("ioc/v1/ack/tthc", "ioc/v1/kpi/+") and not overlaps("a/b", "a/b/c")
    assert overlaps("a/#", "a") and not overlaps("$SYS/#", "#")


def test_codec_round_trip_and_malformed() -> None:
    for n in (0, 127, 128, 16_383, 16_384, 268_435_455):
        assert codec.decode_varint(codec.encode_varint(n), 0) == (n, len(codec.encode_varint(n)))
    props = {codec.P_SESSION_EXPIRY: 3600, codec.P_RECEIVE_MAXIMUM: 10,
             codec.P_USER_PROPERTY: [("tỉnh", "Hà Nam"), ("k", "v")], codec.P_CORRELATION_DATA: b"\x00\x01"}
    r = codec.Reader(codec.encode_properties(props))
    assert r.properties() == props and r.left() == 0
    for bad in (b"\x05\x11\x00", b"\x02\x7f\x00", b"\x04\x21\x00\x01\x21"):  # short, unknown id, duplicate
        with pytest.raises(codec.MalformedPacket):
            codec.Reader(bad).properties()
    with pytest.raises(codec.MalformedPacket):
        codec.Reader(codec.encode_binary(b"\xff\xfe")).string()  # not UTF-8
    with pytest.raises(codec.MalformedPacket):
        codec.read_publish(0x06, codec.encode_string("a/b") + b"\x00", 5)  # QoS 3
    out = codec.OutgoingPublish("a/b", b"payload", b"").encode(5, 1, True, 7, dup=True, subscription_ids=(3,))
    assert out[0] == 0x30 | 0x08 | 0x02 | 0x01
    pub = codec.read_publish(out[0] & 0x0F, out[2:], 5)
    assert (pub.topic, pub.payload, pub.qos, pub.retain, pub.dup, pub.packet_id) == ("a/b", b"payload", 1, True, True, 7)
    assert pub.props == {codec.P_SUBSCRIPTION_ID: [3]}


def test_access_rules_from_the_generated_files(tmp_path: Path) -> None:
    accounts = [BrokerAccount("tthc", hash_password("pw-tthc", 1000), "agency"),
                BrokerAccount("svc-ingest", hash_password("pw-ingest", 1000), "ingest")]
    (tmp_path / "passwd").write_text("".join(f"{a.username}:{a.password_hash}\n" for a in accounts))
    (tmp_path / "acl").write_text(render_acl(accounts) + "pattern read ioc/v1/echo/%u\nuser svc-ingest\ntopic deny ioc/v1/kpi/blocked\n")
    rules = load_access(tmp_path / "passwd", tmp_path / "acl")
    assert rules.authenticate("tthc", b"pw-tthc")
    assert not rules.authenticate("tthc", b"pw-ingest") and not rules.authenticate(None, None)
    assert not rules.authenticate("nobody", b"pw-tthc") and not rules.authenticate("tthc", b"\xff")
    assert rules.allowed("tthc", "c", "ioc/v1/kpi/tthc", WRITE)
    assert not rules.allowed("tthc", "c", "ioc/v1/kpi/yte", WRITE)
    assert not rules.allowed("tthc", "c", "ioc/v1/kpi/tthc", READ)
    assert rules.allowed("tthc", "c", "ioc/v1/echo/tthc", READ)  # pattern with %u
    assert not rules.allowed("tthc", "c", "ioc/v1/echo/yte", READ)
    assert rules.allowed("svc-ingest", "c", "ioc/v1/kpi/yte", READ)
    assert not rules.allowed("svc-ingest", "c", "ioc/v1/kpi/blocked", READ)  # deny wins
    assert rules.may_subscribe("tthc", "c", "ioc/v1/ack/+")
    assert not rules.may_subscribe("tthc", "c", "ioc/v1/kpi/+")
    (tmp_path / "acl").write_text("user tthc\nfrobnicate everything\n")
    with pytest.raises(AccessFileError, match="acl:2"):
        load_access(tmp_path / "passwd", tmp_path / "acl")


# -- logins and rights -------------------------------------------------------------------


def test_logins(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    with Peer(rig, "tthc", passwords["tthc"]) as ok:  # type: ignore[arg-type]
        props = ok.connack_properties
        assert props is not None and props.MaximumPacketSize == 2 * 1024 * 1024
    with Peer(rig, "yte", passwords["yte"]), Peer(rig, "yte", passwords["yte"], protocol=mqtt.MQTTv311):  # type: ignore[arg-type]
        pass  # a long Vietnamese password, in both dialects
    for user, pw, protocol, expected in (
            ("tthc", passwords["tthc"] + "x", mqtt.MQTTv5, RC_BAD_LOGIN),
            ("nobody", passwords["tthc"], mqtt.MQTTv5, RC_BAD_LOGIN),
            ("tthc", passwords["yte"], mqtt.MQTTv5, RC_BAD_LOGIN),
            (None, None, mqtt.MQTTv5, RC_NOT_AUTHORIZED),
            ("tthc", "x", mqtt.MQTTv311, RC_BAD_LOGIN)):  # 3.1.1 CONNACK 4, which paho maps to 0x86
        peer = Peer(rig, user, pw, protocol=protocol)  # type: ignore[arg-type]
        rc = peer.connect()
        peer.wait_for(lambda p=peer: bool(p.disconnects), "close after refusal")  # type: ignore[misc]
        peer.client.loop_stop()
        assert rc.value == expected, (user, protocol, rc)
    rig.wait_for_log('"why":"bad username or password"')


def test_agency_publishes_only_under_its_own_name(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    with Peer(rig, "ingest", passwords["ingest"]) as ingest, \
            Peer(rig, "tthc", passwords["tthc"]) as tthc, \
            Peer(rig, "tthc", passwords["tthc"], protocol=mqtt.MQTTv311) as tthc_v311:  # type: ignore[arg-type]
        ingest.subscribe(SHARE)
        assert tthc.publish("ioc/v1/kpi/yte", b"forged").value == RC_NOT_AUTHORIZED
        assert tthc.publish("ioc/v1/ack/tthc", b"forged ack").value == RC_NOT_AUTHORIZED
        assert tthc_v311.publish("ioc/v1/kpi/yte", b"forged-v311").value == RC_SUCCESS  # 3.1.1 cannot be told
        assert tthc.publish("ioc/v1/kpi/tthc", b"sentinel", qos=2).value == RC_SUCCESS
        assert payloads_of(ingest.wait_payload(b"sentinel")) == [b"sentinel"]
        time.sleep(0.2)
        assert payloads_of(ingest.messages) == [b"sentinel"]  # QoS 2 in, exactly once out
        assert ingest.publish("ioc/v1/status/ingest/x", b"nobody listens").value == RC_NO_MATCHING_SUBSCRIBERS
    rig.wait_for_log('"topic":"ioc/v1/kpi/yte"')


def test_agency_reads_only_its_own_acks_and_cannot_join_the_ingest_group(
        rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    with Peer(rig, "tthc", passwords["tthc"]) as tthc, Peer(rig, "yte", passwords["yte"]) as yte, \
            Peer(rig, "ingest", passwords["ingest"]) as ingest:  # type: ignore[arg-type]
        codes = [tthc.subscribe(t)[0].value for t in
                 ("ioc/v1/ack/yte", "ioc/v1/kpi/#", "#", SHARE, "ioc/v1/ack/+", "$share/ioc-ingest")]
        # refused where no rule of the agency could ever let a message through; '#' and
        # 'ioc/v1/ack/+' are granted and filtered per message on delivery
        assert codes == [RC_NOT_AUTHORIZED, RC_NOT_AUTHORIZED, 1, RC_NOT_AUTHORIZED, 1, 0x8F]
        ingest.subscribe(SHARE)
        sent = [f"r{i}".encode() for i in range(20)]
        assert {c.value for c in yte.publish_many("ioc/v1/kpi/yte", sent)} == {RC_SUCCESS}
        assert payloads_of(ingest.wait_messages(20)) == sent  # no turn lost to an intruder
        assert ingest.publish("ioc/v1/ack/yte", b"yte-ack").value == RC_NO_MATCHING_SUBSCRIBERS  # tthc may not read it
        assert ingest.publish("ioc/v1/ack/tthc", b"tthc-ack").value == RC_SUCCESS
        received = tthc.wait_payload(b"tthc-ack")
        assert {(m.topic, m.payload) for m in received} == {("ioc/v1/ack/tthc", b"tthc-ack")}


def test_two_ingest_workers_split_the_stream(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    with Peer(rig, "ingest", passwords["ingest"]) as w1, Peer(rig, "ingest", passwords["ingest"]) as w2, \
            Peer(rig, "tthc", passwords["tthc"]) as tthc:  # type: ignore[arg-type]
        w1.subscribe(SHARE)
        w2.subscribe(SHARE)
        sent = [f"m{i}".encode() for i in range(1000)]
        assert {c.value for c in tthc.publish_many("ioc/v1/kpi/tthc", sent)} == {RC_SUCCESS}
        wait_until(lambda: len(w1.messages) + len(w2.messages) >= 1000, "1000 messages in total")
        time.sleep(0.2)
        got1, got2 = payloads_of(w1.messages), payloads_of(w2.messages)
        assert sorted(got1 + got2) == sorted(sent) and not set(got1) & set(got2)
        assert abs(len(got1) - len(got2)) <= 2  # round robin


def test_retained_messages_and_retain_handling(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    with Peer(rig, "camera", passwords["camera"]) as cam, Peer(rig, "api", passwords["api"]) as api:  # type: ignore[arg-type]
        cam.publish("ioc/v1/live/camera/t-01/status", b'{"state":"ok"}')
        # in order on one connection: the QoS 1 one's PUBACK means both are stored
        cam.client.publish("ioc/v1/live/camera/t-01/tile", b"jpeg-1", qos=0, retain=True)
        cam.client.publish("ioc/v1/live/camera/t-02/tile", b"jpeg-2", qos=1, retain=True).wait_for_publish(5)
        api.subscribe("ioc/v1/live/camera/+/tile")
        got = api.wait_messages(2)
        assert sorted((m.topic, m.payload, m.retain) for m in got) == [
            ("ioc/v1/live/camera/t-01/tile", b"jpeg-1", True), ("ioc/v1/live/camera/t-02/tile", b"jpeg-2", True)]
        # retain handling 2 (what the ingest uses): nothing old on subscribing
        late = Peer(rig, "api", passwords["api"])  # type: ignore[arg-type]
        late.connect()
        _, mid = late.client.subscribe("ioc/v1/live/camera/#", options=mqtt.SubscribeOptions(qos=1, retainHandling=2))
        late.wait_for(lambda: mid in late._subacks, "SUBACK")
        # an empty retained message clears the topic; the live one is delivered (retain flag off)
        cam.client.publish("ioc/v1/live/camera/t-02/tile", b"", qos=1, retain=True).wait_for_publish(5)
        cam.publish("ioc/v1/live/camera/t-01/event", b"sentinel")
        got = late.wait_payload(b"sentinel")
        late.close()
        assert [(m.topic, m.payload) for m in got] == [("ioc/v1/live/camera/t-02/tile", b""),
                                                        ("ioc/v1/live/camera/t-01/event", b"sentinel")]
        with Peer(rig, "api", passwords["api"]) as again:  # type: ignore[arg-type]
            again.subscribe("ioc/v1/live/camera/+/tile")
            time.sleep(0.3)
            assert [(m.topic, m.payload) for m in again.messages] == [("ioc/v1/live/camera/t-01/tile", b"jpeg-1")]


# -- sessions --------------------------------------------------------------------------


def test_persistent_session_keeps_messages_and_share_across_restart(
        fresh_rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    """Mosquitto 2.0 drops $share subscriptions and clean-start sessions on restart
    (tests/test_broker_access.py); the embedded broker keeps both."""
    with durable(fresh_rig, passwords, "ingest-1", clean_start=True) as ingest:
        ingest.subscribe(SHARE)
    with Peer(fresh_rig, "tthc", passwords["tthc"]) as tthc:  # type: ignore[arg-type]
        sent = [str(i).encode() for i in range(5000)]
        assert {c.value for c in tthc.publish_many("ioc/v1/kpi/tthc", sent)} == {RC_SUCCESS}
    fresh_rig.stop()
    fresh_rig.start()
    unacked = {str(i).encode() for i in range(4990, 5000)}
    with Peer(fresh_rig, "tthc", passwords["tthc"]) as tthc:  # type: ignore[arg-type]
        # no subscriber connected, but the restored shared subscription takes it
        assert tthc.publish("ioc/v1/kpi/tthc", b"after-restart").value == RC_SUCCESS
    with durable(fresh_rig, passwords, "ingest-1", manual_ack=True,
                 hold=lambda m: m.payload in unacked) as ingest:
        assert ingest.session_present is True
        received = ingest.wait_messages(5001, timeout=20)
        assert payloads_of(received) == sent + [b"after-restart"]  # in order, none twice
    with durable(fresh_rig, passwords, "ingest-1", manual_ack=True) as ingest:
        redelivered = ingest.wait_messages(10)
        time.sleep(0.2)
        assert sorted(payloads_of(ingest.messages)) == sorted(unacked)
        assert all(m.dup for m in redelivered)
        for m in redelivered:
            ingest.ack(m)


def test_autosave_keeps_what_arrived_before_a_crash(tmp_path: Path, passwords: dict[str, str]) -> None:
    """PUBACK means "in memory": a SIGKILL loses what came after the last autosave, and
    nothing before it."""
    with EmbeddedBrokerRig(tmp_path / "b", make_accounts(passwords), autosave_s=0.5) as rig:
        with durable(rig, passwords, "ingest-crash") as ingest:
            ingest.subscribe("ioc/v1/kpi/+")
        with Peer(rig, "tthc", passwords["tthc"]) as tthc:  # type: ignore[arg-type]
            assert {c.value for c in tthc.publish_many("ioc/v1/kpi/tthc", ["a", "b"])} == {RC_SUCCESS}
        snap = rig.directory / "data" / "broker.snapshot.json"
        wait_until(lambda: snap.exists() and b'"ingest-crash"' in snap.read_bytes() and snap.read_bytes().count(b'"t":') >= 2,
                   "an autosave holding the session and both messages", timeout=10)
        rig.kill()
        rig.start()
        with durable(rig, passwords, "ingest-crash") as ingest:
            assert ingest.session_present is True
            assert payloads_of(ingest.wait_messages(2)) == [b"a", b"b"]
        # a snapshot it cannot read is put aside with a warning; the broker still starts
        rig.stop()
        snap.write_bytes(b'{"format": 1, "retained": [{"t": "x"')
        rig.start()
        rig.wait_for_log('"msg":"broker snapshot unreadable; starting empty"')
        assert list(snap.parent.glob("broker.snapshot.json.unreadable-*"))


def test_receive_maximum_paces_the_subscriber(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    held: list[mqtt.MQTTMessage] = []
    slow = Peer(rig, "ingest", passwords["ingest"], client_id="slow-ingest", manual_ack=True,  # type: ignore[arg-type]
                hold=lambda m: True)
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = 10
    slow.client.connect(rig.host, rig.port, keepalive=30, properties=props)
    slow.client.loop_start()
    slow.wait_for(lambda: slow.connack is not None, "CONNACK")
    try:
        slow.subscribe("ioc/v1/kpi/+")
        with Peer(rig, "yte", passwords["yte"]) as yte:  # type: ignore[arg-type]
            yte.publish_many("ioc/v1/kpi/yte", [str(i) for i in range(100)])
        held = slow.wait_messages(10)
        time.sleep(0.3)
        assert len(slow.messages) == 10  # never more in flight than the client allows
        for m in held:
            slow.ack(m)
        slow.wait_messages(20)
        time.sleep(0.3)
        assert payloads_of(slow.messages) == [str(i).encode() for i in range(20)]
    finally:
        slow.close()


def test_will_on_a_dropped_connection_and_not_on_a_clean_one(rig: EmbeddedBrokerRig,
                                                             passwords: dict[str, str]) -> None:
    with Peer(rig, "api", passwords["api"]) as api:  # type: ignore[arg-type]
        api.subscribe("ioc/v1/status/camera/#")
        s = raw_connect(rig, "camera", passwords["camera"], client_id="cam-will",
                        will=("ioc/v1/status/camera/cam-will", b"offline"))
        s.sendall(b"\xe0\x00")  # DISCONNECT: no will
        closed_by_broker(s)
        s = raw_connect(rig, "camera", passwords["camera"], client_id="cam-will",
                        will=("ioc/v1/status/camera/cam-will", b"gone"), level=4)
        s.close()  # the connection drops
        assert payloads_of(api.wait_messages(1)) == [b"gone"]
        # silent past 1.5 keep-alives: cut off, and the will goes out
        s = raw_connect(rig, "camera", passwords["camera"], client_id="cam-quiet", keepalive=1,
                        will=("ioc/v1/status/camera/cam-quiet", b"timed out"))
        started = time.monotonic()
        sent_before_close = closed_by_broker(s, timeout=6)
        assert 1.4 < time.monotonic() - started < 4.0
        assert sent_before_close[:1] == b"\xe0" and sent_before_close[2] == 0x8D  # DISCONNECT keep-alive timeout
        assert payloads_of(api.wait_messages(2)) == [b"gone", b"timed out"]


def test_second_connection_takes_the_session_over(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    first = Peer(rig, "ingest", passwords["ingest"], client_id="twin")  # type: ignore[arg-type]
    first.connect()
    with Peer(rig, "ingest", passwords["ingest"], client_id="twin"):  # type: ignore[arg-type]
        first.wait_for(lambda: bool(first.disconnects), "the first connection to be dropped")
        assert first.disconnects[0].value == RC_SESSION_TAKEN_OVER
    first.client.loop_stop()


def test_another_account_cannot_take_a_client_id(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    """An agency connecting with the ingest's client id would otherwise kick it off, or
    (with a clean start) wipe the readings queued for it."""
    with durable(rig, passwords, "ingest-victim") as ingest:
        ingest.subscribe("ioc/v1/kpi/+")
    with Peer(rig, "yte", passwords["yte"]) as yte:  # type: ignore[arg-type]
        assert yte.publish("ioc/v1/kpi/yte", b"queued").value == RC_SUCCESS
    thief = Peer(rig, "tthc", passwords["tthc"], client_id="ingest-victim")  # type: ignore[arg-type]
    assert thief.connect().value == 0x85  # client identifier not valid
    thief.client.loop_stop()
    with durable(rig, passwords, "ingest-victim") as ingest:
        assert ingest.session_present is True
        assert payloads_of(ingest.wait_messages(1)) == [b"queued"]
        ingest.client.unsubscribe("ioc/v1/kpi/+")


# -- bad clients hurt nobody else -------------------------------------------------------


def test_bad_clients_are_cut_off_and_others_carry_on(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    with Peer(rig, "ingest", passwords["ingest"]) as ingest, Peer(rig, "tthc", passwords["tthc"]) as tthc:  # type: ignore[arg-type]
        ingest.subscribe(SHARE)
        # garbage instead of CONNECT
        s = socket.create_connection((rig.host, rig.port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_broker(s) == b""
        # a remaining length of five bytes
        s = raw_connect(rig, "tthc", passwords["tthc"], client_id="bad-1")
        s.sendall(b"\x30\xff\xff\xff\xff\x7f")
        assert closed_by_broker(s)[2] == codec.MALFORMED_PACKET
        # a PUBLISH to a wildcard topic
        s = raw_connect(rig, "tthc", passwords["tthc"], client_id="bad-2")
        s.sendall(codec.packet(0x32, codec.encode_string("ioc/v1/kpi/#") + b"\x00\x01\x00x"))
        assert closed_by_broker(s)[2] == codec.TOPIC_NAME_INVALID
        # half a packet, then silence: nothing is routed
        s = raw_connect(rig, "tthc", passwords["tthc"], client_id="bad-3")
        s.sendall(codec.packet(0x32, codec.encode_string("ioc/v1/kpi/tthc") + b"\x00\x01\x00" + b"y" * 100)[:50])
        s.close()
        # larger than the broker's packet limit: 0x95, no PUBACK
        big = Peer(rig, "tthc", passwords["tthc"])  # type: ignore[arg-type]
        big.connect()
        info = big.client.publish("ioc/v1/kpi/tthc", b"x" * (2 * 1024 * 1024), qos=1)
        big.wait_for(lambda: bool(big.disconnects), "the broker to drop the publisher")
        big.client.loop_stop()
        assert big.disconnects[0].value in (RC_PACKET_TOO_LARGE, 0x80) and not big.got_puback(info.mid)
        # a subscriber that never reads its socket does not hold anyone up
        reader = raw_connect(rig, "api", passwords["api"], client_id="never-reads")
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sub = codec.packet(0x82, struct.pack(">H", 1) + b"\x00" + codec.encode_string("ioc/v1/live/#") + b"\x00")
        reader.sendall(sub)
        with Peer(rig, "api", passwords["api"]) as fast, Peer(rig, "camera", passwords["camera"]) as cam:  # type: ignore[arg-type]
            fast.subscribe("ioc/v1/live/camera/+/tile", qos=0)
            tile = b"\xff\xd8" + b"j" * 60_000
            started = time.monotonic()
            for i in range(300):  # 18 MB, far past what the stalled socket can buffer
                cam.client.publish("ioc/v1/live/camera/x/tile", tile + str(i).encode(), qos=0)
                if i % 20 == 19:
                    time.sleep(0.05)  # a camera's pace, not a flood the reading subscriber cannot drain
            wait_until(lambda: len(fast.messages) >= 300, "300 tiles to the reading subscriber", timeout=20)
            assert time.monotonic() - started < 15
        reader.close()
        assert tthc.publish("ioc/v1/kpi/tthc", b"still fine").value == RC_SUCCESS
        assert payloads_of(ingest.wait_payload(b"still fine")) == [b"still fine"]
    log = rig.log_text()
    assert '"client":"bad-2"' in log and "not a topic name" in log
    assert '"msg":"client not keeping up' in log and '"client":"never-reads"' in log


def test_reload_accounts_and_a_port_in_use(fresh_rig: EmbeddedBrokerRig, passwords: dict[str, str],
                                         tmp_path: Path) -> None:
    new_pw = new_password()
    yte = Peer(fresh_rig, "yte", passwords["yte"])  # type: ignore[arg-type]
    assert yte.connect().value == RC_SUCCESS
    accounts = [a for a in make_accounts(passwords) if a.username != "yte"]
    accounts.append(BrokerAccount("gtvt", hash_password(new_pw), "agency"))
    before = fresh_rig.pid
    fresh_rig.reload_accounts(accounts)
    assert fresh_rig.pid == before
    yte.wait_for(lambda: bool(yte.disconnects), "the removed agency to be disconnected")
    yte.client.loop_stop()
    with Peer(fresh_rig, "gtvt", new_pw) as gtvt, Peer(fresh_rig, "ingest", passwords["ingest"]) as ingest:  # type: ignore[arg-type]
        ingest.subscribe(SHARE)
        assert gtvt.publish("ioc/v1/kpi/gtvt", b"hello").value == RC_SUCCESS
        assert payloads_of(ingest.wait_messages(1)) == [b"hello"]
    # a port in use: the command says so and exits
    squatter = EmbeddedBrokerRig(tmp_path / "squatter", accounts, port=fresh_rig.port, start_timeout=5)
    with pytest.raises(BrokerStartError, match="cannot listen on 127.0.0.1:.*in use"):
        squatter.start()


def test_many_publishers_at_once(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    """Eight agencies' scripts publishing together: every reading arrives exactly once."""
    with Peer(rig, "ingest", passwords["ingest"]) as ingest:  # type: ignore[arg-type]
        ingest.subscribe("ioc/v1/kpi/+")
        errors: list[str] = []

        def publisher(n: int) -> None:
            try:
                with Peer(rig, "tthc", passwords["tthc"]) as p:  # type: ignore[arg-type]
                    codes = p.publish_many("ioc/v1/kpi/tthc", [f"{n}-{i}" for i in range(500)])
                    if {c.value for c in codes} != {RC_SUCCESS}:
                        errors.append(f"publisher {n}: {codes[:3]}")
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(f"publisher {n}: {exc}")

        threads = [threading.Thread(target=publisher, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        got = payloads_of(ingest.wait_messages(4000, timeout=20))
        assert sorted(got) == sorted(f"{n}-{i}".encode() for n in range(8) for i in range(500))
        for n in range(8):  # each publisher's order is kept
            mine = [int(p.split(b"-")[1]) for p in got if p.startswith(f"{n}-".encode())]
            assert mine == list(range(500))


def test_mutated_packets_never_break_the_broker(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    """Valid packets with bytes flipped, cut or inserted, each on its own connection: every
    one is handled as an MQTT error (or happens to be valid), none as a crash, and the broker
    goes on serving."""
    import random

    def sub(filters: list[str], opts: int = 1) -> bytes:
        return codec.packet(0x82, struct.pack(">H", 7) + b"\x00" + b"".join(codec.encode_string(f) + bytes((opts,)) for f in filters))

    corpus = [
        codec.packet(0x32, codec.encode_string("ioc/v1/kpi/tthc") + b"\x00\x05" + codec.encode_properties(
            {codec.P_USER_PROPERTY: [("a", "b")], codec.P_CONTENT_TYPE: "application/json"}) + b'{"kpi":"x","value":1}'),
        codec.packet(0x34, codec.encode_string("ioc/v1/kpi/tthc") + b"\x00\x06\x00" + b"q2"),
        codec.packet(0x62, b"\x00\x06"),
        sub(["ioc/v1/ack/tthc", "$share/g/ioc/v1/ack/+", "#"], 0x2D),
        codec.packet(0xA2, struct.pack(">H", 8) + b"\x00" + codec.encode_string("ioc/v1/ack/tthc")),
        codec.packet(0x40, b"\x00\x01\x00\x00"),
        b"\xc0\x00",
        codec.packet(0xE0, b"\x04\x05\x11\x00\x00\x00\x10"),
    ]
    rnd = random.Random(20261204)
    for n in range(400):
        data = bytearray(rnd.choice(corpus))
        for _ in range(rnd.randint(1, 4)):
            op = rnd.random()
            pos = rnd.randrange(len(data))
            if op < 0.5:
                data[pos] = rnd.randrange(256)
            elif op < 0.75:
                del data[pos:pos + rnd.randint(1, 4)]
            else:
                data[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 4)))
            if not data:
                data = bytearray(b"\x30")
        s = raw_connect(rig, "tthc", passwords["tthc"], client_id=f"fuzz-{n}")
        try:
            s.sendall(bytes(data))
        except ConnectionError:
            pass
        finally:
            s.close()
    time.sleep(1.0)  # the last ones handled
    assert rig.running
    log = rig.log_text()
    assert "Traceback" not in log and "Fatal error" not in log and '"level":"error"' not in log, log[-3000:]
    with Peer(rig, "ingest", passwords["ingest"]) as ingest, Peer(rig, "tthc", passwords["tthc"]) as tthc:  # type: ignore[arg-type]
        ingest.subscribe("ioc/v1/kpi/+")
        assert tthc.publish("ioc/v1/kpi/tthc", b"after the fuzz").value == RC_SUCCESS
        assert b"after the fuzz" in payloads_of(ingest.wait_payload(b"after the fuzz"))


def _publish_expiring(peer: Peer, topic: str, payload: bytes, expiry_s: int, retain: bool = False) -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = expiry_s
    info = peer.client.publish(topic, payload, qos=1, retain=retain, properties=props)
    info.wait_for_publish(10)


def test_message_expiry_drops_what_waited_too_long_and_counts_down_the_rest(
        rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    """MQTT 5 Message Expiry: a queued message whose interval ran out is not delivered; one
    still valid arrives with what is left of its interval; an expired retained message is gone."""
    cid = f"expiry-{time.monotonic_ns()}"
    with durable(rig, passwords, cid) as ingest:
        ingest.subscribe("ioc/v1/kpi/+")
    with Peer(rig, "tthc", passwords["tthc"]) as tthc:  # type: ignore[arg-type]
        _publish_expiring(tthc, "ioc/v1/kpi/tthc", b"short", 1)
        _publish_expiring(tthc, "ioc/v1/kpi/tthc", b"long", 120)
        _publish_expiring(tthc, "ioc/v1/kpi/tthc", b"retained-short", 1, retain=True)
    time.sleep(2.2)
    with durable(rig, passwords, cid) as ingest:
        got = ingest.wait_payload(b"long")
        assert b"short" not in payloads_of(got)
        left = next(m for m in got if m.payload == b"long").properties.MessageExpiryInterval
        assert 100 <= left <= 119, left  # counted down while it waited, not forwarded as sent
    with Peer(rig, "ingest", passwords["ingest"]) as late:  # type: ignore[arg-type]
        late.subscribe("ioc/v1/kpi/tthc")
        time.sleep(0.5)
        assert b"retained-short" not in payloads_of(late.messages)


def test_session_expiry_set_in_disconnect_is_kept(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    """A client that connected with a long Session Expiry may shorten it to 0 in DISCONNECT:
    its session is gone at once (was kept for the CONNECT's hour)."""
    cid = f"dis-expiry-{time.monotonic_ns()}"
    with durable(rig, passwords, cid) as ingest:
        ingest.subscribe("ioc/v1/kpi/+")
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0
        ingest.client.disconnect(properties=props)
        wait_until(lambda: bool(ingest.disconnects), "the DISCONNECT written")
    again = durable(rig, passwords, cid)
    try:
        assert again.connect().value == RC_SUCCESS
        assert again.session_present is False
    finally:
        again.close()


def test_subscriptions_at_qos_2_are_granted_qos_1(rig: EmbeddedBrokerRig, passwords: dict[str, str]) -> None:
    """The broker delivers at QoS 0 or 1 (README): a QoS 2 subscription is granted QoS 1 in
    its SUBACK, as MQTT allows, so the client knows before any message comes."""
    with Peer(rig, "ingest", passwords["ingest"]) as ingest:  # type: ignore[arg-type]
        assert [c.value for c in ingest.subscribe("ioc/v1/kpi/+", qos=2)] == [1]
