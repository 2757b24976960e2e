"""A broker crash while PostgreSQL is down loses nothing the broker acknowledged.

While the database is away the ingest writes what it receives to a local spool (fsynced
before it acknowledges), so the broker's queue stays empty and a SIGKILL of the broker
loses nothing; the spool is replayed, in order, when the database returns. These tests
count every reading: published, acknowledged (PUBACKed to the agency), stored.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import paho.mqtt.client as mqtt
from tests.helpers import wait_value
from ingest.spool import Spool, SpoolFull, SpoolRecord, decode_all, encode
from tests.conftest import Stack
from tests.test_ingest_resilience import KPI, readings, set_db_available



class CountingPublisher:
    """An agency publishing QoS 1 readings that counts the PUBACKs it gets back."""

    def __init__(self, stack: Stack) -> None:
        self.acked: set[int] = set()
        self.failed: set[int] = set()
        self._lock = threading.Lock()
        self._up = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        self.c.username_pw_set(stack.agency, stack.agency_pw)
        self.c.max_inflight_messages_set(1000)
        self.c.max_queued_messages_set(0)
        self.c.on_connect = lambda *a: self._up.set()
        self.c.on_publish = self._on_publish
        self.c.connect(stack.rig.host, stack.rig.port, keepalive=30)
        self.c.loop_start()
        if not self._up.wait(10):
            raise TimeoutError("publisher not connected")

    def _on_publish(self, client: object, userdata: object, mid: int, reason: mqtt.ReasonCode, props: object) -> None:
        with self._lock:
            if reason.is_failure:
                self.failed.add(mid)
            else:
                self.acked.add(mid)

    def publish(self, topic: str, payloads: list[dict[str, object]], timeout: float = 60.0) -> int:
        """Publish one reading per message; the number of messages the broker acknowledged."""
        mids = [self.c.publish(topic, orjson.dumps(p), qos=1).mid for p in payloads]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(m in self.acked or m in self.failed for m in mids):
                    break
            time.sleep(0.05)
        with self._lock:
            return sum(1 for m in mids if m in self.acked)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def stored(stack: Stack) -> tuple[int, int]:
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT count(*) AS n, count(DISTINCT (kpi, area, ts)) AS d FROM readings WHERE kpi = $1", KPI)
    return int(row["n"]), int(row["d"])


async def wait_spooled(directory: Path, at_least: int, timeout: float = 30.0) -> None:
    """Until the spool in `directory` holds `at_least` whole records (at most `timeout`).

    Read-only: the ingest is appending meanwhile. Without a spool this just times out and
    the test goes on to count what was lost.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = sum(len(decode_all(seg.read_bytes())[0]) for seg in directory.glob("*.seg"))
        if held >= at_least:
            return
        await asyncio.sleep(0.2)


async def test_broker_crash_during_a_database_outage_loses_nothing(stack: Stack) -> None:
    total = 20_000
    worker = await asyncio.to_thread(stack.ingest("spool-1").start)
    pub = await asyncio.to_thread(CountingPublisher, stack)
    topic = f"ioc/v1/kpi/{stack.agency}"
    assert await asyncio.to_thread(pub.publish, topic, readings(0, 100)) == 100
    await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v == 100, timeout=30)

    await stack.pool.expire_connections()
    await set_db_available(stack.db_name, False)
    outage = time.monotonic()
    acked = 100 + await asyncio.to_thread(pub.publish, topic, readings(100, total - 100))
    await wait_spooled(stack.tmp / "spool" / "spool-1", acked - 100, timeout=20)
    pub.close()
    await asyncio.to_thread(stack.rig.kill)  # a crash: the broker saves nothing
    await asyncio.to_thread(stack.rig.start)
    await asyncio.sleep(max(0.0, 10.0 - (time.monotonic() - outage)))
    await set_db_available(stack.db_name, True)

    deadline = time.monotonic() + 60
    n, distinct = await stored(stack)
    while n < acked and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        n, distinct = await stored(stack)
    await asyncio.sleep(1.0)  # anything more would be a duplicate or a foreign reading
    n, distinct = await stored(stack)
    print(f"published {total}, acknowledged {acked}, stored {n}, duplicates {n - distinct}, lost {acked - n}")
    assert acked == total, "the broker refused readings: nothing to prove"
    assert n == distinct
    assert n == acked, f"{acked - n} acknowledged readings lost"
    assert worker.proc is not None and worker.proc.poll() is None
    await asyncio.to_thread(wait_logged, worker.log_path, "spool drained")
    log = worker.log_text()
    assert "spooling started: the database is unavailable" in log and "draining the spool" in log
    worker.stop()


async def test_a_killed_ingest_replays_its_spool_and_drops_a_torn_record(stack: Stack) -> None:
    """SIGKILL with a spool waiting, a half-written record at its end: the rest is stored."""
    worker = await asyncio.to_thread(stack.ingest("spool-2").start)
    pub = await asyncio.to_thread(CountingPublisher, stack)
    topic = f"ioc/v1/kpi/{stack.agency}"
    await stack.pool.expire_connections()
    await set_db_available(stack.db_name, False)
    acked = await asyncio.to_thread(pub.publish, topic, readings(0, 3000))
    assert acked == 3000
    await wait_spooled(stack.tmp / "spool" / "spool-2", acked, timeout=30)
    pub.close()
    worker.kill()
    segments = sorted((stack.tmp / "spool" / "spool-2").glob("*.seg"))
    assert segments, "nothing was spooled"
    torn = encode(SpoolRecord(topic, stack.agency, orjson.dumps(readings(5000, 1)[0]), datetime.now(timezone.utc)))
    with open(segments[-1], "ab") as f:
        f.write(torn[: len(torn) // 2])  # what a crash in the middle of a write leaves

    await set_db_available(stack.db_name, True)
    restarted = await asyncio.to_thread(stack.ingest("spool-2").start)
    n = await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v >= acked, timeout=60)
    await asyncio.sleep(1.0)
    n, distinct = await stored(stack)
    assert (n, distinct) == (acked, acked)
    log = restarted.log_text()
    assert "torn spool record dropped" in log and "spool found at start" in log
    await asyncio.to_thread(wait_logged, restarted.log_path, "spool drained")
    assert not list((stack.tmp / "spool" / "spool-2").glob("*.seg"))
    restarted.stop()


def wait_logged(path: Path, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(encoding="utf-8", errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.1)


def record(i: int) -> SpoolRecord:
    return SpoolRecord("ioc/v1/kpi/a1", "a1", b'{"i":%d}' % i, datetime(2024, 1, 1, tzinfo=timezone.utc))


def test_spool_segments_cursor_and_size_limit(tmp_path: Path) -> None:
    """Replayed records are not replayed again after a restart; finished segments go; the
    limit refuses a batch whole."""
    spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=500)
    for i in range(0, 40, 4):
        spool.append([record(i + k) for k in range(4)])
    assert spool.pending == 40 and len(spool.segments) > 2
    chunk = spool.read(6)
    assert chunk is not None and [r.payload for r in chunk.records] == [b'{"i":%d}' % i for i in range(6)]
    spool.consumed(chunk)
    reopened = Spool(tmp_path, max_bytes=10_000, segment_bytes=500)  # as after a crash
    assert reopened.pending == 34
    seen = []
    while (chunk := reopened.read(100)) is not None:
        seen.extend(int(r.payload[5:-1]) for r in chunk.records)
        reopened.consumed(chunk)
    assert seen == list(range(6, 40))
    assert reopened.clear_if_drained() and not list(tmp_path.glob("*.seg"))
    with pytest.raises(SpoolFull):
        reopened.append([record(i) for i in range(400)])
    assert reopened.pending == 0 and not list(tmp_path.glob("*.seg"))
