"""A client's session: its subscriptions and the QoS 1 messages it has not acknowledged yet.

The session outlives its network connection when the client asked for that (MQTT 5 Session
Expiry, or 3.1.1 clean-session 0), so an ingest worker that restarts finds every reading
published meanwhile waiting for it. Messages go out at most `receive_maximum` at a time
(the client's own limit), the rest wait in order; QoS 0 messages are never queued, and are
dropped rather than buffered for a client whose socket is not draining.
"""

from __future__ import annotations

import math
import time

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ioc.extras.broker.codec import OutgoingPublish, expiry_property

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("ioc.broker")

NEVER_EXPIRES = 0xFFFFFFFF


@dataclass(slots=True)
class Message:
    """One application message, as published (QoS and retain as the publisher sent them)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    props_raw: bytes = b""  # forwarded MQTT 5 properties, encoded
    out: OutgoingPublish | None = None
    expires_at: float | None = None  # epoch s, from the publisher's Message Expiry Interval

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def encoded(self, now: float = 0.0) -> OutgoingPublish:
        """The message as sent; one with an expiry carries what is left of it (MQTT 5,
        3.3.2.3.3), so it is encoded afresh each time rather than cached."""
        if self.expires_at is not None:
            left = max(1, math.ceil(self.expires_at - (now or time.time())))
            return OutgoingPublish(self.topic, self.payload, self.props_raw + expiry_property(left))
        if self.out is None:
            self.out = OutgoingPublish(self.topic, self.payload, self.props_raw)
        return self.out


@dataclass(slots=True)
class Subscription:
    client_id: str
    topic_filter: str  # without any $share/<group>/ prefix
    group: str | None
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    subscription_id: int | None = None


@dataclass(slots=True)
class Delivery:
    message: Message
    qos: int
    retain: bool
    subscription_ids: tuple[int, ...] = ()


class Transport(Protocol):
    """What a session needs of its live connection."""

    level: int
    congested: bool

    def send(self, data: bytes) -> None: ...


@dataclass
class Session:
    client_id: str
    username: str | None
    level: int = 5
    expiry_s: int = 0
    subscriptions: dict[str, Subscription] = field(default_factory=dict)  # by the filter as subscribed
    inflight: dict[int, Delivery] = field(default_factory=dict)  # packet id -> sent, not acknowledged
    queue: deque[Delivery] = field(default_factory=deque)
    awaiting_release: set[int] = field(default_factory=set)  # inbound QoS 2 ids before PUBREL
    connection: Transport | None = None
    receive_maximum: int = 65_535
    max_packet_bytes: int = 0  # 0: no limit of the client's
    max_queued: int = 1_000_000
    expiry_timer: asyncio.TimerHandle | None = None
    dropped: int = 0
    expired: int = 0  # messages that expired while they waited for this client
    _next_id: int = 0
    read_cache: dict[str, bool] = field(default_factory=dict)

    # -- sending ----------------------------------------------------------------------
    def deliver(self, d: Delivery) -> None:
        conn = self.connection
        if d.qos == 0:
            if conn is not None and not conn.congested:
                self._send(conn, d, 0)
            return
        if conn is not None and not conn.congested and not self.queue and len(self.inflight) < self.receive_maximum:
            self._send(conn, d, self._packet_id())
            return
        if len(self.queue) >= self.max_queued:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("session queue full, message dropped",
                            extra={"client": self.client_id, "queued": len(self.queue), "dropped": self.dropped})
            return
        self.queue.append(d)

    def _send(self, conn: Transport, d: Delivery, packet_id: int, dup: bool = False) -> None:
        now = time.time()
        if d.message.expired(now) and not dup:  # waited in the queue past its expiry: never sent
            self.expired += 1
            return
        data = d.message.encoded(now).encode(conn.level, d.qos, d.retain, packet_id, dup,
                                           d.subscription_ids if conn.level == 5 else ())
        if self.max_packet_bytes and len(data) > self.max_packet_bytes:
            # the client said it cannot take a packet this large: MQTT 5 says discard it
            self.inflight.pop(packet_id, None)
            return
        if packet_id:
            self.inflight[packet_id] = d
        conn.send(data)

    def _packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self.inflight:
                return self._next_id

    def acknowledged(self, packet_id: int) -> bool:
        found = self.inflight.pop(packet_id, None) is not None
        self.pump()
        return found

    def pump(self) -> None:
        """Send queued messages while the client has room for them."""
        conn = self.connection
        if conn is None:
            return
        queue = self.queue
        while queue and not conn.congested and len(self.inflight) < self.receive_maximum:
            self._send(conn, queue.popleft(), self._packet_id())

    def resume(self) -> None:
        """On reconnect: every unacknowledged message again (DUP set), then the queue."""
        conn = self.connection
        if conn is None:
            return
        for packet_id, d in list(self.inflight.items()):
            self._send(conn, d, packet_id, dup=True)
        self.pump()

    def unsent(self) -> list[Delivery]:
        """Everything still owed to the client, in order (for the snapshot)."""
        return list(self.inflight.values()) + list(self.queue)
