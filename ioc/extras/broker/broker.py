"""The broker's shared state: sessions, the subscription index, retained messages, routing.

Everything runs on one asyncio loop, so no locks: a connection hands a decoded PUBLISH to
`route`, which finds the subscribers (a per-topic cache of matching filters, emptied when
the set of filters changes), checks each one's read access, picks one member per shared
group (only members allowed to read the topic, connected ones first), and hands each a
`Delivery`. A PUBLISH is acknowledged after `route` returns: the message is then in every
subscriber's session, in memory (and in the snapshot on the next save).
"""

from __future__ import annotations

import asyncio
import time
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioc.extras.broker.access import READ, WRITE, AccessRules
from ioc.extras.broker.session import NEVER_EXPIRES, Delivery, Message, Session, Subscription
from ioc.extras.broker.topics import matches

if TYPE_CHECKING:
    from ioc.extras.broker.connection import Connection

log = logging.getLogger("ioc.broker")

_ROUTE_CACHE_LIMIT = 50_000


@dataclass
class Limits:
    max_packet_bytes: int = 2 * 1024 * 1024
    max_queued_messages: int = 1_000_000
    max_session_expiry_s: int = 7 * 24 * 3600  # also what a 3.1.1 persistent session gets
    write_buffer_bytes: int = 4 * 1024 * 1024  # past this a client is "congested": QoS 0 dropped


@dataclass(slots=True)
class _Target:
    qos: int
    retain: bool
    ids: list[int]


def _add_target(targets: dict[str, _Target], cid: str, sub: Subscription, retain: bool) -> None:
    t = targets.get(cid)
    if t is None:
        targets[cid] = _Target(sub.qos, retain, [sub.subscription_id] if sub.subscription_id else [])
        return
    t.qos = max(t.qos, sub.qos)
    t.retain = t.retain or retain
    if sub.subscription_id:
        t.ids.append(sub.subscription_id)


class Broker:
    def __init__(self, access: AccessRules, limits: Limits | None = None) -> None:
        self.access = access
        self.limits = limits or Limits()
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.plain: dict[str, dict[str, Subscription]] = {}  # filter -> client id -> subscription
        self.shared: dict[tuple[str, str], dict[str, Subscription]] = {}  # (group, filter) -> ...
        self._turn: dict[tuple[str, str], int] = {}
        self.retained: dict[str, Message] = {}
        self._routes: dict[str, tuple[list[str], list[tuple[str, str]]]] = {}
        self._delayed_wills: dict[str, asyncio.TimerHandle] = {}
        self.changed = False  # anything the snapshot keeps changed since the last save
        self.published = 0

    # -- sessions ------------------------------------------------------------------------
    def open_session(self, client_id: str, username: str | None, clean_start: bool) -> tuple[Session, bool]:
        """The client's session, and whether it existed (CONNACK "session present")."""
        self.cancel_delayed_will(client_id)
        old = self.sessions.get(client_id)
        if old is not None and old.expiry_timer is not None:
            old.expiry_timer.cancel()
            old.expiry_timer = None
        if old is not None and not clean_start and old.username == username:
            return old, True
        if old is not None:
            self.drop_session(old)
        session = Session(client_id, username, max_queued=self.limits.max_queued_messages)
        self.sessions[client_id] = session
        return session, False

    def drop_session(self, session: Session) -> None:
        for key in list(session.subscriptions):
            self.unsubscribe(session, key)
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if session.expiry_timer is not None:
            session.expiry_timer.cancel()
        if session.expiry_s:
            self.changed = True

    def session_ended(self, session: Session) -> None:
        """The connection is gone: keep the session for its expiry, or drop it now."""
        session.connection = None
        if session.expiry_s == 0:
            self.drop_session(session)
            return
        self.changed = True
        if session.expiry_s != NEVER_EXPIRES:
            loop = asyncio.get_running_loop()
            session.expiry_timer = loop.call_later(session.expiry_s, self._expire, session)

    def _expire(self, session: Session) -> None:
        if session.connection is None and self.sessions.get(session.client_id) is session:
            lost = len(session.queue) + len(session.inflight)
            # messages the broker accepted, now gone: say so loudly
            log.log(logging.WARNING if lost else logging.INFO, "session expired",
                    extra={"client": session.client_id, "user": session.username, "messages_dropped": lost})
            self.drop_session(session)

    # -- subscriptions ------------------------------------------------------------------
    def subscribe(self, session: Session, key: str, sub: Subscription) -> bool:
        """Add or replace; True if the client already had this subscription."""
        existed = key in session.subscriptions
        if existed:
            self._unindex(session.subscriptions[key])
        session.subscriptions[key] = sub
        if sub.group is None:
            bucket = self.plain.get(sub.topic_filter)
            if bucket is None:
                bucket = self.plain[sub.topic_filter] = {}
                self._routes.clear()
        else:
            gkey = (sub.group, sub.topic_filter)
            bucket = self.shared.get(gkey)
            if bucket is None:
                bucket = self.shared[gkey] = {}
                self._routes.clear()
        bucket[session.client_id] = sub
        if session.expiry_s:
            self.changed = True
        return existed

    def unsubscribe(self, session: Session, key: str) -> bool:
        sub = session.subscriptions.pop(key, None)
        if sub is None:
            return False
        self._unindex(sub)
        if session.expiry_s:
            self.changed = True
        return True

    def _unindex(self, sub: Subscription) -> None:
        if sub.group is None:
            bucket = self.plain.get(sub.topic_filter)
            if bucket is not None:
                bucket.pop(sub.client_id, None)
                if not bucket:
                    del self.plain[sub.topic_filter]
                    self._routes.clear()
        else:
            gkey = (sub.group, sub.topic_filter)
            bucket = self.shared.get(gkey)
            if bucket is not None:
                bucket.pop(sub.client_id, None)
                if not bucket:
                    del self.shared[gkey]
                    self._turn.pop(gkey, None)
                    self._routes.clear()

    def retained_for(self, session: Session, sub: Subscription) -> None:
        """Send the retained messages under a new subscription."""
        f = sub.topic_filter
        if "+" in f or "#" in f:
            found = [m for t, m in self.retained.items() if matches(f, t)]
        else:
            m = self.retained.get(f)
            found = [m] if m is not None else []
        ids = (sub.subscription_id,) if sub.subscription_id else ()
        now = time.time()
        for m in [m for m in found if m.expired(now)]:  # retained past its expiry: gone (MQTT 5, 3.3.2.3.3)
            if self.retained.get(m.topic) is m:
                del self.retained[m.topic]
                self.changed = True
        for m in found:
            if m.expired(now):
                continue
            if self.may_read(session, m.topic):
                session.deliver(Delivery(m, min(m.qos, sub.qos), True, ids))

    # -- access -------------------------------------------------------------------------
    def may_read(self, session: Session, topic: str) -> bool:
        cache = session.read_cache
        ok = cache.get(topic)
        if ok is None:
            if len(cache) > 10_000:
                cache.clear()
            ok = cache[topic] = self.access.allowed(session.username, session.client_id, topic, READ)
        return ok

    def may_write(self, username: str | None, client_id: str, topic: str) -> bool:
        return self.access.allowed(username, client_id, topic, WRITE)

    def reload_access(self, access: AccessRules) -> list[Connection]:
        """Use new accounts; returns the connections whose login no longer exists."""
        self.access = access
        for s in self.sessions.values():
            s.read_cache.clear()
        gone = []
        for conn in self.connections:
            conn.write_cache.clear()
            user = conn.session.username if conn.session is not None else None
            if user is not None and user not in access.passwords:
                gone.append(conn)
        return gone

    # -- routing ------------------------------------------------------------------------
    def _matching(self, topic: str) -> tuple[list[str], list[tuple[str, str]]]:
        found = self._routes.get(topic)
        if found is None:
            plain = [f for f in self.plain if matches(f, topic)]
            shared = [k for k in self.shared if matches(k[1], topic)]
            if len(self._routes) >= _ROUTE_CACHE_LIMIT:
                self._routes.clear()
            found = self._routes[topic] = (plain, shared)
        return found

    def route(self, msg: Message, publisher: str | None) -> int:
        """Hand the message to every subscriber; returns to how many."""
        self.published += 1
        topic = msg.topic
        if msg.retain:
            if msg.payload:
                self.retained[topic] = msg
            else:
                self.retained.pop(topic, None)
            self.changed = True
        plain, shared = self._matching(topic)
        if not plain and not shared:
            return 0
        # one copy per client: the highest QoS of its matching subscriptions
        targets: dict[str, _Target] = {}
        for f in plain:
            for cid, sub in self.plain[f].items():
                if sub.no_local and cid == publisher:
                    continue
                _add_target(targets, cid, sub, msg.retain and sub.retain_as_published)
        for gkey in shared:
            member = self._pick_member(gkey, topic)
            if member is not None:
                _add_target(targets, member.client_id, member, False)
        sessions = self.sessions
        delivered = 0
        for cid, t in targets.items():
            session = sessions.get(cid)
            if session is None or not self.may_read(session, topic):
                continue
            session.deliver(Delivery(msg, min(t.qos, msg.qos), t.retain, tuple(t.ids)))
            delivered += 1
        return delivered

    def _pick_member(self, gkey: tuple[str, str], topic: str) -> Subscription | None:
        """Round robin over the group's members that may read the topic, connected first."""
        members = list(self.shared[gkey].values())
        n = len(members)
        start = self._turn.get(gkey, 0)
        fallback = None
        for i in range(n):
            sub = members[(start + i) % n]
            session = self.sessions.get(sub.client_id)
            if session is None or not self.may_read(session, topic):
                continue
            if session.connection is not None:
                self._turn[gkey] = (start + i + 1) % n
                return sub
            if fallback is None:
                fallback = sub
        return fallback

    # -- wills ----------------------------------------------------------------------------
    def schedule_will(self, client_id: str, msg: Message, delay_s: int) -> None:
        if delay_s <= 0:
            self.route(msg, client_id)
            return
        loop = asyncio.get_running_loop()
        self.cancel_delayed_will(client_id)
        self._delayed_wills[client_id] = loop.call_later(delay_s, self._will_due, client_id, msg)

    def _will_due(self, client_id: str, msg: Message) -> None:
        self._delayed_wills.pop(client_id, None)
        self.route(msg, client_id)

    def cancel_delayed_will(self, client_id: str) -> None:
        handle = self._delayed_wills.pop(client_id, None)
        if handle is not None:
            handle.cancel()
