"""A paho-mqtt client driven by the asyncio event loop, for every `ioc` service.

paho runs here without its network thread: its socket is watched with `add_reader` and
`add_writer`, so callbacks run on the loop and code may publish or acknowledge from any
coroutine without locks. The link reconnects with backoff for as long as it runs, resumes
its persistent session, and re-subscribes on every connect. Each connection has a
generation number: a message may only be acknowledged on the connection that delivered it
(after a reconnect the broker redelivers whatever was not acknowledged).

paho reads a packet with three `recv` calls (type, length, body); the subclass below reads
the socket in large chunks and serves those calls from memory, which roughly halves the
cost per message on a busy subscription.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from ioc.core.mqtt.client_ids import SERVICE_PREFIXES, reserved_for_services
from ioc.core.settings import MqttTarget

log = logging.getLogger("ioc.mqtt")

_READ_CHUNK = 256 * 1024
_PACKETS_PER_WAKE = 4000


def _safely(fn: Callable[..., Any], sock: Any, *args: Any) -> None:
    """Register or unregister a socket that may have been closed in the meantime."""
    try:
        if sock.fileno() == -1:
            if fn.__name__.startswith("add_"):
                return
        fn(sock, *args)
    except (ValueError, OSError, KeyError):
        pass


FastHandler = Callable[[str, bytes, int, int, bool], None]


def _reply_of(raw: bytes) -> tuple[str, bytes] | None:
    """The Response Topic and Correlation Data among a PUBLISH's properties, if both are there."""
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.unpack(_varint(len(raw)) + bytes(raw))
    except Exception:  # noqa: BLE001 - a property we cannot read is no request for an answer
        return None
    topic = getattr(props, "ResponseTopic", None)
    data = getattr(props, "CorrelationData", None)
    if isinstance(topic, str) and isinstance(data, (bytes, bytearray)):
        return topic, bytes(data)
    return None


_PUBLISH_QOS0 = b"\x30"  # PUBLISH, QoS 0, not a duplicate, not retained
_NO_PROPERTIES = b"\x00"  # MQTT 5: a property length of zero


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _ChunkedClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self.would_block = False
        self.fast_handler: FastHandler | None = None
        #: (response topic, correlation data) of the PUBLISH being handled, else None
        self.reply: tuple[str, bytes] | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        """Incoming QoS 0/1 PUBLISH straight to the handler: (topic, payload, mid, qos, retain).

        paho builds an MQTTMessage with a parsed Properties object, logs and takes two
        locks per message; at tens of thousands of messages a second that is most of the
        receive cost. Properties are skipped except a request's Response Topic and
        Correlation Data (`reply`, read by the ingest to answer HTTP submissions), parsed
        only when a message carries properties at all; QoS 2 and topic aliases, which our
        subscriptions never produce, take paho's own path.
        """
        handler = self.fast_handler
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if handler is None or qos == 2:
            return super()._handle_publish()  # type: ignore[misc]
        packet = self._in_packet["packet"]
        tlen = (packet[0] << 8) | packet[1]
        if tlen == 0:
            return super()._handle_publish()  # type: ignore[misc]
        topic = packet[2 : 2 + tlen].decode("utf-8", "replace")
        pos = 2 + tlen
        mid = 0
        if qos:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        self.reply = None
        if self._protocol == mqtt.MQTTv5:
            plen = 0
            shift = 0
            while True:  # the properties' length, a variable byte integer
                byte = packet[pos]
                pos += 1
                plen |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            self.reply = _reply_of(packet[pos : pos + plen]) if plen else None
            pos += plen
        handler(topic, packet[pos:], mid, qos, bool(header & 0x01))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _update_inflight(self) -> MQTTErrorCode:
        # paho scans every outgoing message at each PUBACK to find queued ones to send;
        # when every outgoing message is already in flight there is none to find
        if len(self._out_messages) <= self._inflight_messages:  # type: ignore[attr-defined]
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._update_inflight()  # type: ignore[misc]

    def queue_pubacks(self, mids: list[int]) -> None:
        """Acknowledge many QoS 1 messages in one write instead of one send() each."""
        if not mids:
            return
        buf = bytearray(4 * len(mids))
        i = 0
        for mid in mids:
            buf[i] = 0x40
            buf[i + 1] = 2
            buf[i + 2] = mid >> 8
            buf[i + 3] = mid & 0xFF
            i += 4
        self._packet_queue(0x40, bytes(buf), 0, 0)  # type: ignore[attr-defined]

    def write_now(self, packets: bytes) -> MQTTErrorCode:
        """Send ready-made packets at once, behind whatever paho still has to send (in order).
        The socket is watched for writing only if it cannot take them all now. Queued as raw
        bytes, like `queue_pubacks`: paho's bookkeeping of a QoS 0 publish (`on_publish`, its
        message info) is not used by the link."""
        self._out_packet.append({"command": 0, "mid": 0, "qos": 0, "pos": 0,  # type: ignore[attr-defined]
                                 "to_process": len(packets), "packet": packets, "info": None})
        return self.loop_write()

    def reset_buffer(self) -> None:
        self._rbuf = b""
        self._rpos = 0

    def buffered(self) -> int:
        return len(self._rbuf) - self._rpos

    def _sock_recv(self, bufsize: int) -> bytes:
        avail = len(self._rbuf) - self._rpos
        if avail <= 0:
            if self._sock is None:
                raise ConnectionError("self._sock is None")
            try:
                chunk = self._sock.recv(_READ_CHUNK)
            except ssl.SSLWantReadError as err:
                self.would_block = True
                raise BlockingIOError() from err
            except BlockingIOError:
                self.would_block = True
                raise
            if not chunk:
                return b""
            self._rbuf, self._rpos, avail = chunk, 0, len(chunk)
        n = bufsize if bufsize < avail else avail
        start = self._rpos
        self._rpos = start + n
        return self._rbuf[start : start + n]


@dataclass(frozen=True)
class Subscription:
    topic: str
    qos: int = 1
    # 2: never send retained messages on (re)subscribing; services that store what they
    # receive must not see old retained messages again at every reconnect
    retain_handling: int = 0


# (topic, payload, mid, qos, retain, generation)
MessageHandler = Callable[[str, bytes, int, int, bool, int], None]


class MqttLink:
    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        *,
        subscriptions: list[Subscription] = (),  # type: ignore[assignment]
        on_message: MessageHandler | None = None,
        persistent: bool = False,
        session_expiry_s: int = 0,
        receive_maximum: int | None = None,
        manual_ack: bool = False,
        keepalive: int = 30,
        will: tuple[str, bytes, int, bool] | None = None,
        birth: tuple[str, bytes, int, bool] | None = None,
        max_inflight_out: int = 1000,
    ) -> None:
        self.target = target
        self.client_id = client_id
        if not reserved_for_services(client_id):
            # on Mosquitto an agency's client id is its name, and agency names are kept out
            # of the services' prefixes only: an agency named like this could take it over
            log.warning("mqtt client id outside the services' namespace",
                        extra={"client": client_id, "expected_prefixes": list(SERVICE_PREFIXES)})
        self.subscriptions = list(subscriptions)
        self.stale_topics: list[str] = []
        self._on_message = on_message
        self._manual_ack = manual_ack
        self._paused = False
        self._persistent = persistent
        self._keepalive = keepalive
        self._birth = birth
        self._will = will
        self.generation = 0
        self.connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._misc_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_error: str | None = None

        c = _ChunkedClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        if target.username:
            c.username_pw_set(target.username, target.password)
        if target.tls:
            c.tls_set()
        if will:
            c.will_set(will[0], will[1], will[2], will[3])
        c.max_inflight_messages_set(max_inflight_out)
        c.max_queued_messages_set(0)
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.fast_handler = self._handle_fast
        c.on_socket_open = self._socket_open
        c.on_socket_close = self._socket_close
        c.on_socket_register_write = self._register_write
        c.on_socket_unregister_write = self._unregister_write
        self.client = c
        props = Properties(PacketTypes.CONNECT)
        if session_expiry_s:
            props.SessionExpiryInterval = session_expiry_s
        if receive_maximum:
            props.ReceiveMaximum = receive_maximum
        self._connect_props = props

    # -- socket plumbing -----------------------------------------------------------
    # paho calls these from the loop thread, except during connect(), which runs in an
    # executor thread (it resolves names and blocks on TCP connect).
    def _on_loop(self, fn: Callable[..., Any], sock: Any, *args: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            _safely(fn, sock, *args)
        else:
            self._loop.call_soon_threadsafe(_safely, fn, sock, *args)

    def _socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self.client.reset_buffer()
        self._paused = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        self._on_loop(self._loop.add_reader, sock, self._readable)

    def _socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._on_loop(self._loop.remove_reader, sock)
        self._on_loop(self._loop.remove_writer, sock)

    def _register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._on_loop(self._loop.add_writer, sock, self._writable)

    def _unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._on_loop(self._loop.remove_writer, sock)

    def _readable(self) -> None:
        c = self.client
        c.would_block = False
        for _ in range(_PACKETS_PER_WAKE):
            if self._paused:
                return
            rc = c.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._connection_lost(f"read failed: {mqtt.error_string(rc)}")
                return
            if c.would_block or c.socket() is None:
                return
        if c.buffered() and self._loop is not None and not self._paused:
            # more packets are already in memory: the socket will not wake us for them
            self._loop.call_soon(self._readable)

    def _writable(self) -> None:
        rc = self.client.loop_write()
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._connection_lost(f"write failed: {mqtt.error_string(rc)}")

    def _connection_lost(self, why: str) -> None:
        self.last_error = why
        self.connected.clear()
        self._lost.set()

    # -- paho callbacks --------------------------------------------------------------
    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("mqtt connect refused", extra={"client": self.client_id, "reason": str(reason)})
            self._lost.set()
            return
        self.generation += 1
        if self.stale_topics:
            client.unsubscribe(self.stale_topics)
        self._send_subscribe(self.subscriptions)
        if self._birth:
            client.publish(*self._birth)
        log.info(
            "mqtt connected",
            extra={"client": self.client_id, "session_present": bool(flags.session_present), "generation": self.generation},
        )
        self.connected.set()

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if not self._stopping:
            log.warning("mqtt disconnected", extra={"client": self.client_id, "reason": str(reason)})
        self._connection_lost(f"disconnected: {reason}")

    @property
    def reply(self) -> tuple[str, bytes] | None:
        """(Response Topic, Correlation Data) of the message now in `on_message`, if it asked
        for an answer (MQTT 5 request/response); valid only during that call."""
        return self.client.reply

    def _handle_fast(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool) -> None:
        if self._on_message is not None:
            self._on_message(topic, payload, mid, qos, retain, self.generation)
        elif qos and self._manual_ack is False:
            self.client.ack(mid, qos)

    def _send_subscribe(self, subs: list[Subscription]) -> None:
        if subs:
            self.client.subscribe([
                (s.topic, mqtt.SubscribeOptions(qos=s.qos, retainHandling=s.retain_handling)) for s in subs
            ])

    # -- public API ------------------------------------------------------------------
    def set_subscriptions(self, subs: list[Subscription], stale_topics: list[str]) -> None:
        """Change what the session subscribes to, now and at every reconnect."""
        new = [s for s in subs if s not in self.subscriptions]
        gone = [t for t in stale_topics if t not in self.stale_topics]
        self.subscriptions = list(subs)
        self.stale_topics = list(stale_topics)
        if self.connected.is_set():
            if gone:
                self.client.unsubscribe(gone)
            self._send_subscribe(new)

    def ack(self, mid: int, qos: int, generation: int) -> bool:
        """Acknowledge on the delivering connection only; False if that one is gone."""
        if generation != self.generation or not self.connected.is_set():
            return False
        self.client.ack(mid, qos)
        return True

    def ack_many(self, mids: list[int], generation: int) -> bool:
        """Acknowledge QoS 1 messages, in order, on the connection that delivered them."""
        if generation != self.generation or not self.connected.is_set():
            return False
        self.client.queue_pubacks(mids)
        return True

    def pause_reading(self) -> None:
        """Stop reading the socket: TCP pushes back on the broker (flow control of our own,
        since Mosquitto 2.0 does not hold to our Receive Maximum once acks come in batches)."""
        sock = self.client.socket()
        if not self._paused and sock is not None and self._loop is not None:
            self._paused = True
            _safely(self._loop.remove_reader, sock)

    def resume_reading(self) -> None:
        sock = self.client.socket()
        if self._paused and self._loop is not None:
            self._paused = False
            if sock is not None:
                _safely(self._loop.add_reader, sock, self._readable)
                if self.client.buffered():
                    self._loop.call_soon(self._readable)

    @property
    def paused(self) -> bool:
        return self._paused

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                correlation: bytes | None = None) -> bool:
        """QoS 0 is dropped while disconnected; QoS 1 is kept by paho and sent on reconnect.
        `correlation`: an answer to a request, which carries the request's Correlation Data."""
        if qos == 0 and not self.connected.is_set():
            return False
        props = None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        return info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)

    def publish_many(self, messages: list[tuple[str, bytes]]) -> int:
        """(topic, payload) pairs at QoS 0, not retained, in order, in one write now; how many
        went (none while disconnected: QoS 0 is not kept). Only on the loop's thread.

        For a steady stream of messages (the camera service's live video: 250 access units a
        second for ten cameras): paho's `publish` makes a message-info object with its own
        condition per message and has the loop watch the socket for writing and then stop,
        two more system calls and another turn of the loop for each message."""
        if not messages or not self.connected.is_set():
            return 0
        v5 = self.client._protocol == mqtt.MQTTv5  # type: ignore[attr-defined]
        parts: list[bytes] = []
        for topic, payload in messages:
            name = topic.encode()
            parts += (_PUBLISH_QOS0, _varint(2 + len(name) + v5 + len(payload)), len(name).to_bytes(2, "big"), name)
            if v5:
                parts.append(_NO_PROPERTIES)
            parts.append(payload)
        rc = self.client.write_now(b"".join(parts))
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._connection_lost(f"write failed: {mqtt.error_string(rc)}")
            return 0
        return len(messages)

    def request(self, topic: str, payload: bytes, reply_to: str, correlation: bytes) -> mqtt.MQTTMessageInfo:
        """Publish at QoS 1 asking for an answer on `reply_to` (MQTT 5 Response Topic and
        Correlation Data); the returned info says when the broker has acknowledged it."""
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_to
        props.CorrelationData = correlation
        return self.client.publish(topic, payload, qos=1, properties=props)

    async def run(self) -> None:
        """Connect, and reconnect with backoff whenever the link drops, until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._misc_task = asyncio.create_task(self._misc())
        delay = 0.5
        try:
            while True:
                self._lost.clear()
                generation_before = self.generation
                try:
                    await self._loop.run_in_executor(None, self._connect_blocking)
                except (OSError, ssl.SSLError) as exc:
                    self.last_error = f"cannot reach the broker at {self.target.host}:{self.target.port}: {exc}"
                    log.warning("mqtt connect failed", extra={"client": self.client_id, "error": str(exc), "retry_s": delay})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                await self._lost.wait()
                self.connected.clear()
                self.client._sock_close()  # type: ignore[attr-defined]
                if self.generation > generation_before:
                    delay = 0.5  # it was up: retry soon, then back off again
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        finally:
            self._stopping = True
            if self._misc_task:
                self._misc_task.cancel()
            try:
                if self._will is not None and self.connected.is_set():
                    # a clean stop sends no last will: say it ourselves
                    self.client.publish(*self._will)
                self.client.disconnect()
                self.client.loop_write()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
            self.client._sock_close()  # type: ignore[attr-defined]
            self.connected.clear()

    def _connect_blocking(self) -> None:
        clean = not self._persistent
        self.client.connect(
            self.target.host,
            self.target.port,
            keepalive=self._keepalive,
            clean_start=clean,
            properties=self._connect_props,
        )

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.client.socket() is not None:
                rc = self.client.loop_misc()
                if rc == mqtt.MQTT_ERR_NO_CONN or (rc != mqtt.MQTT_ERR_SUCCESS):
                    self._connection_lost(f"keepalive: {mqtt.error_string(rc)}")
