"""Retained messages and persistent sessions saved to disk, so a broker restart loses neither.

Saved on a clean stop and every `autosave_s` while something changed, like Mosquitto's
autosave: what a crash loses is what arrived since the last save. The file is JSON (payloads
base64) written to a temporary name and renamed, so a crash during a save leaves the last
good snapshot; a snapshot that cannot be read is moved aside with a warning, never fatal.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

from ioc.extras.broker.broker import Broker
from ioc.extras.broker.session import NEVER_EXPIRES, Delivery, Message, Session, Subscription

log = logging.getLogger("ioc.broker")

FORMAT = 1


def _message(m: Message) -> dict[str, Any]:
    return {"t": m.topic, "p": base64.b64encode(m.payload).decode(), "q": m.qos, "r": m.retain,
            "x": base64.b64encode(m.props_raw).decode() if m.props_raw else "", "e": m.expires_at}


def _unmessage(d: dict[str, Any]) -> Message:
    return Message(d["t"], base64.b64decode(d["p"]), int(d["q"]), bool(d["r"]),
                   base64.b64decode(d["x"]) if d.get("x") else b"",
                   expires_at=float(d["e"]) if d.get("e") is not None else None)


def save(broker: Broker, path: Path) -> int:
    """Write the snapshot; returns its size in bytes."""
    now = time.time()
    sessions = []
    for s in broker.sessions.values():
        if s.expiry_s == 0:
            continue
        sessions.append({
            "id": s.client_id, "user": s.username, "level": s.level, "expiry": s.expiry_s,
            "saved": now,
            "subs": [[key, sub.topic_filter, sub.group, sub.qos, sub.no_local, sub.retain_as_published,
                      sub.retain_handling, sub.subscription_id] for key, sub in s.subscriptions.items()],
            "queue": [[_message(d.message), d.qos, d.retain, list(d.subscription_ids)] for d in s.unsent()],
        })
    data = orjson.dumps({"format": FORMAT, "saved": now,
                         "retained": [_message(m) for m in broker.retained.values()],
                         "sessions": sessions})
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    broker.changed = False
    return len(data)


def load(broker: Broker, path: Path) -> None:
    """Restore what a previous run saved; sessions come back disconnected, their expiry
    counted from the save."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    try:
        data = orjson.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"snapshot format {data.get('format')!r}")
        retained = [_unmessage(m) for m in data["retained"]]
        restored = [_session(broker, s) for s in data["sessions"]]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        aside = path.with_name(path.name + f".unreadable-{int(time.time())}")
        os.replace(path, aside)
        log.warning("broker snapshot unreadable; starting empty", extra={"file": str(aside), "error": str(exc)})
        return
    for m in retained:
        broker.retained[m.topic] = m
    elapsed_now = time.time()
    queued = 0
    for session, saved, subs in restored:
        broker.sessions[session.client_id] = session
        for key, sub in subs:
            broker.subscribe(session, key, sub)
        queued += len(session.queue)
        if session.expiry_s != NEVER_EXPIRES:
            left = session.expiry_s - (elapsed_now - saved)
            if left <= 0:
                broker.drop_session(session)
                continue
            session.expiry_s = int(left) or 1
        broker.session_ended(session)
    broker.changed = False
    log.info("broker snapshot loaded", extra={"retained": len(retained), "sessions": len(restored), "queued": queued})


def _session(broker: Broker, d: dict[str, Any]) -> tuple[Session, float, list[tuple[str, Subscription]]]:
    s = Session(str(d["id"]), d["user"], level=int(d["level"]), expiry_s=int(d["expiry"]),
                max_queued=broker.limits.max_queued_messages)
    subs = [(str(key), Subscription(s.client_id, str(f), g, int(q), bool(nl), bool(rap), int(rh), sid))
            for key, f, g, q, nl, rap, rh, sid in d["subs"]]
    for m, qos, retain, ids in d["queue"]:
        s.queue.append(Delivery(_unmessage(m), int(qos), bool(retain), tuple(ids)))
    return s, float(d["saved"]), subs
