"""One client's network connection: framing, the CONNECT handshake, and each packet's rules.

An asyncio Protocol rather than streams: bytes are framed as they arrive and every complete
packet is handled at once, with no task per client. Whatever breaks the protocol (a bad
packet, a packet larger than the limit, a PUBLISH to a wildcard, a second CONNECT, silence
past the keep-alive) ends this connection alone, with an MQTT 5 DISCONNECT saying why where
the client speaks MQTT 5, and a log line naming the client, the user and the peer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from ioc.extras.broker import codec as c
from ioc.extras.broker.broker import Broker
from ioc.extras.broker.codec import MalformedPacket
from ioc.extras.broker.session import NEVER_EXPIRES, Message, Session, Subscription
from ioc.extras.broker.topics import split_shared, valid_filter, valid_topic_name

log = logging.getLogger("ioc.broker")

CONNECT_TIMEOUT_S = 10.0
_FIRST_BYTE_FLAGS = {c.PUBREL: 0x02, c.SUBSCRIBE: 0x02, c.UNSUBSCRIBE: 0x02}


class Connection(asyncio.Protocol):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.level = 5
        self.session: Session | None = None
        self.client_id = "-"
        self.peer = "-"
        self.state = "new"  # new, authenticating, connected, closed
        self.congested = False
        self.keepalive = 0
        self.last_rx = time.monotonic()
        self.opened = self.last_rx
        self.will: Message | None = None
        self.will_delay = 0
        self._connect_expiry = 0  # the Session Expiry Interval the client connected with
        self.write_cache: dict[str, bool] = {}
        self._denied_logged: set[str] = set()
        self._out: list[bytes] = []
        self._flush_due = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        transport.set_write_buffer_limits(high=self.broker.limits.write_buffer_bytes)
        self.broker.connections.add(self)

    def pause_writing(self) -> None:
        self.congested = True
        log.warning("client not keeping up: QoS 0 messages for it are dropped, QoS 1 queued, until it catches up",
                    extra={"client": self.client_id, "peer": self.peer,
                           "buffered_bytes": self.transport.get_write_buffer_size() if self.transport else 0})

    def resume_writing(self) -> None:
        self.congested = False
        log.info("client caught up", extra={"client": self.client_id, "peer": self.peer})
        if self.session is not None and self.session.connection is self:
            self.session.pump()

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.buf += data
        if self.state != "authenticating":
            self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended("connection lost" if exc is None else f"connection lost: {exc}")

    # -- framing --------------------------------------------------------------------------
    def _process(self) -> None:
        buf = self.buf
        n = len(buf)
        pos = 0
        limit = self.broker.limits.max_packet_bytes
        try:
            if self.state == "new" and n and buf[0] != 0x10:
                # not MQTT at all (an HTTP request, a port scanner): no need to wait for more
                raise MalformedPacket("the first packet is not CONNECT", c.PROTOCOL_ERROR)
            while n - pos >= 2 and self.state in ("new", "connected"):
                length = 0
                shift = 0
                i = pos + 1
                complete = False
                while i < n:
                    b = buf[i]
                    i += 1
                    length |= (b & 0x7F) << shift
                    if not b & 0x80:
                        complete = True
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacket("remaining length longer than 4 bytes")
                if not complete:
                    break
                if length + (i - pos) > limit:
                    raise MalformedPacket(f"packet of {length} bytes is over the limit of {limit}",
                                          c.PACKET_TOO_LARGE)
                end = i + length
                if end > n:
                    break
                first = buf[pos]
                body = bytes(buf[i:end])
                pos = end
                self._handle(first, body)
        except MalformedPacket as exc:
            self.fail(exc.reason, str(exc))
            return
        if pos:
            del buf[:pos]

    def _handle(self, first: int, body: bytes) -> None:
        kind = first >> 4
        flags = first & 0x0F
        if kind != c.PUBLISH and flags != _FIRST_BYTE_FLAGS.get(kind, 0):
            raise MalformedPacket(f"packet type {kind} with flags {flags:#x}")
        if self.state == "new":
            if kind != c.CONNECT:
                raise MalformedPacket(f"packet type {kind} before CONNECT", c.PROTOCOL_ERROR)
            self._on_connect(body)
            return
        if kind == c.PUBLISH:
            self._on_publish(flags, body)
        elif kind == c.PUBACK:
            packet_id, _ = c.read_ack(body)
            assert self.session is not None
            self.session.acknowledged(packet_id)
        elif kind == c.PUBREL:
            packet_id, _ = c.read_ack(body)
            assert self.session is not None
            found = packet_id in self.session.awaiting_release
            self.session.awaiting_release.discard(packet_id)
            self.send(c.ack(c.PUBCOMP, packet_id, c.SUCCESS if found else c.PACKET_ID_NOT_FOUND, self.level))
        elif kind in (c.PUBREC, c.PUBCOMP):
            # the broker never sends QoS 2: a client acknowledging one is confused
            raise MalformedPacket(f"packet type {kind} for a QoS 2 message never sent", c.PROTOCOL_ERROR)
        elif kind == c.SUBSCRIBE:
            self._on_subscribe(body)
        elif kind == c.UNSUBSCRIBE:
            self._on_unsubscribe(body)
        elif kind == c.PINGREQ:
            self.send(c.PINGRESP_PACKET)
        elif kind == c.DISCONNECT:
            reason, props = c.read_disconnect(body, self.level)
            if reason != c.DISCONNECT_WITH_WILL:
                self.will = None
            if c.P_SESSION_EXPIRY in props and self.session is not None:
                self._new_session_expiry(int(props[c.P_SESSION_EXPIRY]))
            self.close("client disconnected")
        elif kind == c.CONNECT:
            raise MalformedPacket("second CONNECT", c.PROTOCOL_ERROR)
        else:
            raise MalformedPacket(f"packet type {kind} not supported", c.PROTOCOL_ERROR)

    # -- CONNECT ----------------------------------------------------------------------
    def _on_connect(self, body: bytes) -> None:
        try:
            req = c.read_connect(body)
        except MalformedPacket as exc:
            if exc.reason == c.UNSUPPORTED_PROTOCOL_VERSION:
                self.level = 4
                self._refuse(c.UNSUPPORTED_PROTOCOL_VERSION, str(exc), None)
                return
            raise
        self.level = req.level
        self.client_id = req.client_id or "-"
        self.keepalive = req.keepalive
        if c.P_AUTH_METHOD in req.props:
            self._refuse(c.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported", req.username)
            return
        self.state = "authenticating"
        task = asyncio.get_running_loop().create_task(self._authenticate(req))
        task.add_done_callback(_log_task_error)

    async def _authenticate(self, req: c.Connect) -> None:
        ok = await asyncio.to_thread(self.broker.access.authenticate, req.username, req.password)
        if self.state != "authenticating":
            return  # the client went away meanwhile
        if not ok:
            self._refuse(c.BAD_USERNAME_OR_PASSWORD if req.username is not None else c.NOT_AUTHORIZED,
                         "bad username or password" if req.username is not None else "anonymous clients not allowed",
                         req.username)
            return
        try:
            self._accept(req)
        except MalformedPacket as exc:
            self._refuse(exc.reason, str(exc), req.username)
            return
        if self.state == "connected":
            self._process()

    def _refuse(self, reason: int, why: str, username: str | None) -> None:
        log.warning("connection refused", extra={"client": self.client_id, "user": username, "peer": self.peer,
                                                 "why": why})
        self.send(c.connack(self.level, False, reason,
                            {c.P_REASON_STRING: why} if self.level == 5 else None))
        self.close(why, quiet=True)

    def _accept(self, req: c.Connect) -> None:
        broker = self.broker
        props: c.Properties = {}
        client_id = req.client_id
        if not client_id:
            if self.level == 4 and not req.clean_start:
                self._refuse(c.CLIENT_ID_NOT_VALID, "an empty client id needs a clean session", req.username)
                return
            client_id = "auto-" + uuid.uuid4().hex
            props[c.P_ASSIGNED_CLIENT_ID] = client_id
        self.client_id = client_id
        if req.will is not None:
            if not valid_topic_name(req.will.topic):
                raise MalformedPacket(f"will topic {req.will.topic!r} is not a topic name", c.TOPIC_NAME_INVALID)
            if not broker.may_write(req.username, client_id, req.will.topic):
                self._refuse(c.NOT_AUTHORIZED, f"may not publish the will to {req.will.topic}", req.username)
                return
            self.will = Message(req.will.topic, req.will.payload, min(req.will.qos, 1), req.will.retain,
                                c.forwarded_properties(req.will.props))
            self.will_delay = int(req.will.props.get(c.P_WILL_DELAY, 0))
        # session expiry: 3.1.1 clean-session 0 keeps it as long as the broker keeps any
        if self.level == 5:
            expiry = int(req.props.get(c.P_SESSION_EXPIRY, 0))
        else:
            expiry = 0 if req.clean_start else NEVER_EXPIRES
        cap = broker.limits.max_session_expiry_s
        if expiry > cap:
            expiry = cap
            if self.level == 5:
                props[c.P_SESSION_EXPIRY] = cap
        receive_maximum = int(req.props.get(c.P_RECEIVE_MAXIMUM, 65_535))
        if receive_maximum == 0:
            raise MalformedPacket("Receive Maximum 0", c.PROTOCOL_ERROR)
        old = broker.sessions.get(client_id)
        if old is not None and old.username != req.username:
            # another account may neither kick this client off nor wipe its queued messages
            self._refuse(c.CLIENT_ID_NOT_VALID, "client id in use by another account", req.username)
            return
        # a client already connected with this id is taken over
        if old is not None and isinstance(old.connection, Connection):
            old.connection.fail(c.SESSION_TAKEN_OVER, "another connection took the session over", log_level=logging.INFO)
        session, present = broker.open_session(client_id, req.username, req.clean_start)
        session.level = self.level
        session.expiry_s = expiry
        self._connect_expiry = expiry
        session.receive_maximum = receive_maximum
        session.max_packet_bytes = int(req.props.get(c.P_MAXIMUM_PACKET_SIZE, 0))
        self.session = session
        self.state = "connected"
        if self.level == 5:
            props[c.P_MAXIMUM_PACKET_SIZE] = broker.limits.max_packet_bytes
            props[c.P_TOPIC_ALIAS_MAXIMUM] = 0
        self.send(c.connack(self.level, present, c.SUCCESS, props))
        session.connection = self
        session.resume()
        log.info("client connected", extra={"client": client_id, "user": req.username, "peer": self.peer,
                                            "protocol": "5" if self.level == 5 else "3.1.1",
                                            "session_present": present, "queued": len(session.queue)})

    # -- PUBLISH ------------------------------------------------------------------------
    def _on_publish(self, flags: int, body: bytes) -> None:
        pub = c.read_publish(flags, body, self.level)
        if c.P_TOPIC_ALIAS in pub.props:
            raise MalformedPacket("topic alias used; Topic Alias Maximum is 0", c.TOPIC_ALIAS_INVALID)
        if not valid_topic_name(pub.topic):
            raise MalformedPacket(f"PUBLISH to {pub.topic!r}, which is not a topic name", c.TOPIC_NAME_INVALID)
        session = self.session
        assert session is not None
        if pub.qos == 2 and pub.packet_id in session.awaiting_release:
            self.send(c.ack(c.PUBREC, pub.packet_id, c.SUCCESS, self.level))  # a resend: routed already
            return
        allowed = self.write_cache.get(pub.topic)
        if allowed is None:
            if len(self.write_cache) > 10_000:
                self.write_cache.clear()
            allowed = self.write_cache[pub.topic] = self.broker.may_write(session.username, self.client_id, pub.topic)
        if not allowed:
            if pub.topic not in self._denied_logged and len(self._denied_logged) < 100:
                self._denied_logged.add(pub.topic)
                log.warning("publish denied", extra={"client": self.client_id, "user": session.username,
                                                     "topic": pub.topic})
            # MQTT 5 clients are told; 3.1.1 has no way to say it, so (as Mosquitto) a plain ack
            if pub.qos:
                self.send(c.ack(c.PUBACK if pub.qos == 1 else c.PUBREC, pub.packet_id, c.NOT_AUTHORIZED, self.level))
            return
        msg = Message(pub.topic, pub.payload, min(pub.qos, 1), pub.retain,
                      c.forwarded_properties(pub.props) if pub.props else b"")
        if pub.props and c.P_MESSAGE_EXPIRY in pub.props:
            msg.expires_at = time.time() + int(pub.props[c.P_MESSAGE_EXPIRY])
        delivered = self.broker.route(msg, self.client_id)
        # MQTT 5 publishers learn that nobody took the message (e.g. no ingest running)
        reason = c.SUCCESS if delivered else c.NO_MATCHING_SUBSCRIBERS
        if pub.qos == 1:
            self.send(c.ack(c.PUBACK, pub.packet_id, reason, self.level))
        elif pub.qos == 2:
            session.awaiting_release.add(pub.packet_id)
            self.send(c.ack(c.PUBREC, pub.packet_id, reason, self.level))

    # -- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------------------------
    def _on_subscribe(self, body: bytes) -> None:
        packet_id, requests, props = c.read_subscribe(body, self.level)
        session = self.session
        assert session is not None
        ids = props.get(c.P_SUBSCRIPTION_ID, [])
        if len(ids) > 1 or 0 in ids:
            raise MalformedPacket("bad Subscription Identifier", c.PROTOCOL_ERROR)
        sub_id = ids[0] if ids else None
        codes: list[int] = []
        fresh: list[tuple[Subscription, bool]] = []
        for req in requests:
            try:
                group, topic_filter = split_shared(req.topic_filter)
            except ValueError:
                codes.append(c.TOPIC_FILTER_INVALID)
                continue
            if not valid_filter(topic_filter):
                codes.append(c.TOPIC_FILTER_INVALID)
                continue
            if not self.broker.access.may_subscribe(session.username, self.client_id, topic_filter):
                log.warning("subscribe denied", extra={"client": self.client_id, "user": session.username,
                                                       "filter": req.topic_filter})
                codes.append(c.NOT_AUTHORIZED)
                continue
            qos = min(req.qos, 1)
            sub = Subscription(self.client_id, topic_filter, group, qos, req.no_local and group is None,
                               req.retain_as_published, req.retain_handling, sub_id)
            existed = self.broker.subscribe(session, req.topic_filter, sub)
            codes.append(qos)
            if group is None:
                fresh.append((sub, existed))
        self.send(c.suback(packet_id, codes, self.level))
        for sub, existed in fresh:
            if sub.retain_handling == 0 or (sub.retain_handling == 1 and not existed):
                self.broker.retained_for(session, sub)

    def _on_unsubscribe(self, body: bytes) -> None:
        packet_id, filters = c.read_unsubscribe(body, self.level)
        session = self.session
        assert session is not None
        codes = [c.SUCCESS if self.broker.unsubscribe(session, f) else c.NO_SUBSCRIPTION_EXISTED for f in filters]
        self.send(c.unsuback(packet_id, codes, self.level))

    # -- sending and ending ---------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue bytes for one write at the end of this turn of the loop: a socket write per
        packet (each PUBACK, each delivery) was two thirds of the broker's time."""
        self._out.append(data)
        if not self._flush_due and self._loop is not None:
            self._flush_due = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_due = False
        out = self._out
        if not out:
            return
        self._out = []
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(out[0] if len(out) == 1 else b"".join(out))

    def fail(self, reason: int, why: str, log_level: int = logging.WARNING) -> None:
        """End the connection for a protocol reason, telling an MQTT 5 client why."""
        if self.state == "closed":
            return
        log.log(log_level, "client disconnected by the broker",
                extra={"client": self.client_id, "user": self.session.username if self.session else None,
                       "peer": self.peer, "reason": f"0x{reason:02x}", "why": why})
        if self.level == 5 and self.state == "connected":
            self.send(c.disconnect(reason, why))  # before CONNECT there is no dialect to answer in
        self.close(why, quiet=True)

    def _new_session_expiry(self, seconds: int) -> None:
        """A DISCONNECT may change how long the session outlives the connection (MQTT 5,
        3.14.2.2.2), except from 0, which would keep a session the client said it does not want."""
        assert self.session is not None
        if self._connect_expiry == 0 and seconds != 0:
            raise MalformedPacket("Session Expiry Interval set in DISCONNECT after 0 in CONNECT", c.PROTOCOL_ERROR)
        self.session.expiry_s = min(seconds, self.broker.limits.max_session_expiry_s)

    def close(self, why: str, quiet: bool = False) -> None:
        self.flush()  # a CONNACK refusal or a DISCONNECT goes out before the close
        if self.transport is not None:
            self.transport.close()
        self._ended(why, quiet)

    def _ended(self, why: str, quiet: bool = False) -> None:
        if self.state == "closed":
            return
        was_connected = self.state == "connected"
        self.state = "closed"
        self.broker.connections.discard(self)
        session = self.session
        if not was_connected or session is None or session.connection is not self:
            return
        if not quiet:
            log.info("client disconnected", extra={"client": self.client_id, "user": session.username,
                                                   "peer": self.peer, "why": why})
        will, self.will = self.will, None
        self.broker.session_ended(session)
        if will is not None:
            delay = min(self.will_delay, session.expiry_s) if session.expiry_s else 0
            self.broker.schedule_will(self.client_id, will, delay)

    def check_alive(self, now: float) -> None:
        """Called every second: a client silent for 1.5 keep-alives, or one that never
        sent CONNECT, is cut off (its will is published)."""
        if self.state == "new" and now - self.opened > CONNECT_TIMEOUT_S:
            self.fail(c.MALFORMED_PACKET, "no CONNECT in time", log_level=logging.INFO)
        elif self.state == "connected" and self.keepalive and now - self.last_rx > self.keepalive * 1.5:
            self.fail(c.KEEP_ALIVE_TIMEOUT, f"nothing received for {self.keepalive * 1.5:.0f} s")

    def shutdown(self) -> None:
        """The broker stops: tell MQTT 5 clients, send no wills."""
        self.will = None
        if self.level == 5 and self.state == "connected":
            self.send(c.disconnect(c.SERVER_SHUTTING_DOWN, "broker shutting down"))
        self.close("broker shutting down", quiet=True)


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("connection task failed", exc_info=task.exception())
