"""What we rely on inside paho-mqtt and websockets, checked against the installed versions.

`ioc/core/mqtt/link.py` overrides private paho-mqtt methods (`_handle_publish`,
`_update_inflight`, `_sock_recv`) and calls `_packet_queue`, `_sock_close`; the wall hub
writes whole websocket frames of its own making to the connection's transport. Both
libraries are pinned in pyproject.toml to the versions tested; when an upgrade changes
one of these internals, the test for that override fails here, by name, instead of
readings going missing at run time.
"""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version

import paho.mqtt.client as mqtt
import pytest
import websockets
from packaging.specifiers import SpecifierSet
from paho.mqtt.enums import MQTTErrorCode
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from ioc.core.mqtt.link import _ChunkedClient
from ioc.serve.wall.hub import ws_frame

PAHO_SOURCE = inspect.getsource(mqtt.Client)


def _pin(name: str) -> SpecifierSet:
    import tomllib
    from pathlib import Path

    deps = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.split(">")[0].split("=")[0].split("<")[0].strip() == name)
    return SpecifierSet(spec[len(name):])


@pytest.mark.parametrize("name", ["paho-mqtt", "websockets"])
def test_installed_versions_are_the_pinned_ones(name: str) -> None:
    """The pin is an upper bound as well: a new major or minor release is taken on purpose."""
    pin = _pin(name)
    assert any(s.operator in ("<", "<=", "==", "~=") for s in pin), f"{name} needs an upper bound: {pin}"
    assert version(name) in pin, f"{name} {version(name)} is not the tested {pin}"


# -- paho-mqtt ------------------------------------------------------------------------
def test_paho_calls_handle_publish_without_arguments_for_each_publish() -> None:
    """link.py answers PUBLISH itself in `_handle_publish()` and reads the raw packet."""
    assert "self._handle_publish()" in PAHO_SOURCE
    assert list(inspect.signature(mqtt.Client._handle_publish).parameters) == ["self"]
    client = _ChunkedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    assert {"command", "packet"} <= set(client._in_packet)  # type: ignore[attr-defined]
    assert client._protocol == mqtt.MQTTv5  # type: ignore[attr-defined]


def test_fast_path_parses_a_real_publish_packet() -> None:
    """A QoS 1 MQTT 5 PUBLISH with properties, placed where paho puts a read packet."""
    got: list[tuple[str, bytes, int, int, bool]] = []
    client = _ChunkedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.fast_handler = lambda *a: got.append(a)
    topic = b"a/b"
    props = b"\x01\x01"  # payload format indicator = 1
    body = len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + bytes([len(props)]) + props + b"hello"
    client._in_packet["command"] = 0x30 | 0x02 | 0x01  # type: ignore[attr-defined]
    client._in_packet["packet"] = body  # type: ignore[attr-defined]
    assert client._handle_publish() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert got == [("a/b", b"hello", 7, 1, True)]


def test_paho_update_inflight_and_its_counters() -> None:
    """link.py skips `_update_inflight()` when every outgoing message is in flight."""
    assert "self._update_inflight()" in PAHO_SOURCE
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    assert isinstance(client._inflight_messages, int)  # type: ignore[attr-defined]
    assert hasattr(client._out_messages, "__len__")  # type: ignore[attr-defined]
    assert client._update_inflight() == MQTTErrorCode.MQTT_ERR_SUCCESS  # type: ignore[attr-defined]


def test_paho_reads_through_sock_recv_and_closes_through_sock_close() -> None:
    assert "self._sock_recv(" in PAHO_SOURCE
    assert list(inspect.signature(mqtt.Client._sock_recv).parameters) == ["self", "bufsize"]
    assert list(inspect.signature(mqtt.Client._sock_close).parameters) == ["self"]
    assert hasattr(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2), "_sock")


def test_paho_packet_queue_takes_raw_packets() -> None:
    """`queue_pubacks` hands paho many PUBACKs as one packet through `_packet_queue`."""
    params = list(inspect.signature(mqtt.Client._packet_queue).parameters)
    assert params[:5] == ["self", "command", "packet", "mid", "qos"]
    client = _ChunkedClient(mqtt.CallbackAPIVersion.VERSION2)
    client.queue_pubacks([1, 258])
    queued = client._out_packet[-1]  # type: ignore[attr-defined]
    assert bytes(queued["packet"]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


# -- websockets -----------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
@pytest.mark.parametrize("text", [True, False])
def test_hub_frames_are_what_websockets_would_send(size: int, text: bool) -> None:
    """The hub builds each frame once and writes it to every client's transport; it must be
    byte for byte the unmasked, unfragmented frame the library makes without extensions."""
    data = (b"x" * size) if text else bytes(range(256)) * (size // 256) + bytes(size % 256)
    ours = ws_frame(data, text)
    theirs = Frame(Opcode.TEXT if text else Opcode.BINARY, data).serialize(mask=False, extensions=[])
    assert ours == theirs


async def test_server_connection_exposes_the_transport_and_state_the_hub_uses() -> None:
    """A server without compression negotiates no extension (so our frames need none), gives
    the asyncio transport as `conn.transport`, and `conn.protocol.state` is `State.OPEN`;
    a frame written to that transport reaches the client as a message."""
    seen: dict[str, object] = {}

    async def handler(conn: ServerConnection) -> None:
        seen["extensions"] = list(conn.protocol.extensions)
        seen["state"] = conn.protocol.state
        transport = conn.transport
        seen["buffer"] = transport.get_write_buffer_size()
        transport.write(ws_frame(b"hello", True))
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as client:
            assert await asyncio.wait_for(client.recv(), 5) == "hello"
    assert seen == {"extensions": [], "state": State.OPEN, "buffer": 0}
    assert websockets.__version__ == version("websockets")
