"""Agencies publish over the real broker; `ioc ingest` validates, stores, dead-letters, answers."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta, timezone

import asyncpg
import orjson
import pytest

from tests.conftest import Agencies, IngestProcess
from tests.helpers import wait_value
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client

KPI = "tthc.dossiers_received"


def iso(dt: datetime) -> str:
    return dt.isoformat()


async def connect(rig: MosquittoRig, user: str, password: str) -> Client:
    return await asyncio.to_thread(lambda: Client(rig.host, rig.port_for(user), user, password).wait_connected())


async def test_readings_land_with_live_and_retained_state(
    pool: asyncpg.Pool, broker: MosquittoRig, agencies: Agencies, ingest: IngestProcess, service_passwords: dict[str, str]
) -> None:
    agency, pw = await agencies.add(["tthc"])
    pub = await connect(broker, agency, pw)
    now = datetime.now(timezone(timedelta(hours=7))).replace(microsecond=0)
    ts_ms = int((now - timedelta(hours=1)).timestamp() * 1000)
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", [
        {"kpi": KPI, "ts": iso(now - timedelta(hours=2)), "value": 640, "area": "37", "msg_id": "m-1"},
        {"kpi": KPI, "ts": ts_ms, "value": 655, "area": "37"},
        {"kpi": "tthc.on_time_rate", "ts": iso(now), "value": 99.21, "area": "37", "agency": agency},
    ])
    n = await wait_value(pool, "SELECT count(*) FROM readings WHERE agency = $1", agency, until=lambda v: v == 3)
    assert n == 3
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT value, msg_id, revision FROM readings WHERE agency = $1 AND ts = $2",
                                  agency, now - timedelta(hours=2))
        latest = await conn.fetchrow("SELECT value, ts FROM kpi_latest WHERE kpi = $1 AND area = '37'", KPI)
    assert (row["value"], row["msg_id"], row["revision"]) == (640.0, "m-1", 0)
    assert latest["value"] == 655.0 and latest["ts"] == datetime.fromtimestamp(ts_ms / 1000, timezone.utc)
    # a wall that connects later gets the current value at once (retained)
    wall = await connect(broker, "svc-api", service_passwords["svc-api"])
    await asyncio.to_thread(wall.subscribe, f"ioc/v1/live/kpi/{KPI}/37")
    msgs = await asyncio.to_thread(wall.wait_for, lambda m: len(m) >= 1)
    live = orjson.loads(msgs[-1].payload)
    assert msgs[-1].retain and live["value"] == 655.0 and live["agency"] == agency
    pub.close()
    wall.close()


BAD_CASES = [
    ("malformed", b'{"kpi": "tthc.dossiers_received", "value": 1', "malformed JSON"),
    ("nan", b'{"kpi": "tthc.dossiers_received", "ts": 1700000000000, "value": NaN, "area": "35"}', "malformed JSON"),
    ("infinity", b'{"kpi": "tthc.dossiers_received", "ts": 1700000000000, "value": Infinity, "area": "35"}', "malformed JSON"),
    ("huge-exponent", b'{"kpi": "tthc.dossiers_received", "ts": 1700000000000, "value": 1e999, "area": "35"}', None),
    ("not-object", b'"hello"', "JSON object or an array"),
    ("empty-array", b"[]", "empty array"),
    ("string-value", {"kpi": KPI, "ts": 1700000000000, "value": "12", "area": "35"}, "value must be a number"),
    ("bool-value", {"kpi": KPI, "ts": 1700000000000, "value": True, "area": "35"}, "value must be a number"),
    ("fraction-counter", {"kpi": KPI, "ts": 1700000000000, "value": 12.5, "area": "35"}, "must be an integer"),
    ("unknown-kpi", {"kpi": "tthc.nonexistent", "ts": 1700000000000, "value": 1, "area": "35"}, "unknown kpi"),
    ("other-sector", {"kpi": "mt.aqi", "ts": 1700000000000, "value": 50, "area": "35"}, "may not report"),
    ("unknown-area", {"kpi": KPI, "ts": 1700000000000, "value": 1, "area": "99999"}, "unknown area"),
    ("negative", {"kpi": KPI, "ts": 1700000000000, "value": -1, "area": "35"}, "out of range"),
    ("too-big", {"kpi": KPI, "ts": 1700000000000, "value": 10**12, "area": "35"}, "out of range"),
    ("future", {"kpi": KPI, "ts": "2999-01-01T00:00:00Z", "value": 1, "area": "35"}, "in the future"),
    ("before-2000", {"kpi": KPI, "ts": "1999-12-31T23:59:59Z", "value": 1, "area": "35"}, "before 2000"),
    ("epoch-seconds", {"kpi": KPI, "ts": 1700000000, "value": 1, "area": "35"}, "before 2000"),
    ("no-offset", {"kpi": KPI, "ts": "2024-01-01T00:00:00", "value": 1, "area": "35"}, "no UTC offset"),
    ("bad-ts", {"kpi": KPI, "ts": "yesterday", "value": 1, "area": "35"}, "not an ISO 8601"),
    ("missing-ts", {"kpi": KPI, "value": 1, "area": "35"}, "ts is missing"),
    ("typo-field", {"kpi": KPI, "ts": 1700000000000, "vaule": 1, "area": "35"}, "unknown field"),
    ("agency-mismatch", {"kpi": KPI, "ts": 1700000000000, "value": 1, "area": "35", "agency": "yte"}, "does not match"),
    ("sql-kpi", {"kpi": "x'); DROP TABLE readings; --", "ts": 1700000000000, "value": 1, "area": "35"}, "unknown kpi"),
    ("sql-area", {"kpi": KPI, "ts": 1700000000000, "value": 1, "area": "35' OR '1'='1"}, "unknown area"),
    ("sql-ts", {"kpi": KPI, "ts": "2024-01-01'; DELETE FROM readings; --", "value": 1, "area": "35"}, "not an ISO 8601"),
    ("sql-field", {"kpi": KPI, "ts": 1700000000000, "value": 1, "area": "35", "x; DROP TABLE kpis": 1}, "unknown field"),
    ("nul-msg-id", {"kpi": KPI, "ts": 1700000000000, "value": 1, "area": "35", "msg_id": "a\u0000b"}, "msg_id"),
    ("bad-rev", {"kpi": KPI, "ts": 1700000000000, "value": 1, "area": "35", "rev": -1}, "rev must be"),
]


async def test_bad_input_is_dead_lettered_with_a_reason_and_nothing_else_changes(
    pool: asyncpg.Pool, broker: MosquittoRig, agencies: Agencies, ingest: IngestProcess
) -> None:
    agency, pw = await agencies.add(["tthc"])
    pub = await connect(broker, agency, pw)
    await asyncio.to_thread(pub.subscribe, f"ioc/v1/ack/{agency}")
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM readings")
    for _, payload, _ in BAD_CASES:
        await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", payload)
    # SQL-looking text is stored as text: the msg_id below is kept verbatim
    sql_id = "1'; DROP TABLE readings; --"
    good = {"kpi": KPI, "ts": 1700000000000, "value": 7, "area": "35", "msg_id": sql_id}
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", [good, {"kpi": KPI, "ts": 1700000000000, "value": -5, "area": "347"}])

    expected_dead = sum(1 for c in BAD_CASES if c[2]) + 1
    await wait_value(pool, "SELECT count(*) FROM dead_letters WHERE agency = $1", agency, until=lambda v: v >= expected_dead)
    await wait_value(pool, "SELECT count(*) FROM readings WHERE agency = $1", agency, until=lambda v: v >= 1)
    async with pool.acquire() as conn:
        reasons = [r["reason"] for r in await conn.fetch("SELECT reason FROM dead_letters WHERE agency = $1 ORDER BY id", agency)]
        stored = await conn.fetch("SELECT value, msg_id FROM readings WHERE agency = $1", agency)
        after = await conn.fetchval("SELECT count(*) FROM readings")
        assert await conn.fetchval("SELECT count(*) FROM kpis") > 40  # the catalogue is intact
    for name, _, fragment in BAD_CASES:
        if fragment:
            assert any(fragment in r for r in reasons), f"{name}: no dead letter saying {fragment!r} in {reasons}"
    # the 1e999 case: orjson reads it as infinity or refuses it; either way it is not stored
    assert [(r["value"], r["msg_id"]) for r in stored] == [(7.0, sql_id)]
    assert after == before + 1
    acks = await asyncio.to_thread(pub.wait_for, lambda m: len(m) >= expected_dead)
    bodies = [orjson.loads(m.payload) for m in acks]
    assert all(b["rejected"] and b["rejected"][0]["reason"] for b in bodies)
    assert any(b["status"] == "partial" and b["accepted"] == 1 for b in bodies)
    pub.close()


async def test_oversized_payloads_and_arrays_are_refused_whole(
    pool: asyncpg.Pool, broker: MosquittoRig, agencies: Agencies, ingest: IngestProcess
) -> None:
    agency, pw = await agencies.add(["tthc"])
    pub = await connect(broker, agency, pw)
    # over the service's 1 MiB limit, under the broker's 2 MiB: dead-lettered with a reason
    big = b'{"kpi": "tthc.dossiers_received", "pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    # more readings than one message may carry, under 1 MiB
    many = [{"kpi": KPI, "ts": 1700000000000 + i, "value": 1, "area": "35"} for i in range(10_001)]
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", big)
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", orjson.dumps(many))
    await wait_value(pool, "SELECT count(*) FROM dead_letters WHERE agency = $1", agency, until=lambda v: v >= 2)
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT reason, payload_bytes, length(payload) AS kept FROM dead_letters WHERE agency = $1 ORDER BY id", agency)
    # two transactions may be in flight, so dead letters need not commit in arrival order
    big_row = next(r for r in rows if "payload too large" in r["reason"])
    assert big_row["payload_bytes"] > 1024 * 1024 and big_row["kept"] <= 2048  # an excerpt, not the megabyte
    assert any("too many readings" in r["reason"] and "10001" in r["reason"] for r in rows)

    # 100k readings (~7 MB) exceed the broker's packet limit: the broker drops the sender.
    # Another agency floods: on Mosquitto an agency's client id is its name, so a second
    # connection of the same agency would take the first one's place
    huge = orjson.dumps([{"kpi": KPI, "ts": 1700000000000 + i, "value": 1, "area": "35"} for i in range(100_000)])
    assert len(huge) > 2 * 1024 * 1024
    flood_agency, flood_pw = await agencies.add(["tthc"])
    flooder = await connect(broker, flood_agency, flood_pw)
    dropped = asyncio.Event()
    loop = asyncio.get_running_loop()
    flooder.c.on_disconnect = lambda *a: loop.call_soon_threadsafe(dropped.set)
    flooder.c.reconnect_delay_set(60, 120)
    flooder.c.publish(f"ioc/v1/kpi/{flood_agency}", huge, qos=1)
    await asyncio.wait_for(dropped.wait(), 10)
    flooder.c.loop_stop()
    # the other agencies' connections and the service carry on
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", {"kpi": KPI, "ts": 1700007777000, "value": 2, "area": "35"})
    await wait_value(pool, "SELECT count(*) FROM readings WHERE agency = $1", agency, until=lambda v: v == 1)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dead_letters WHERE agency = $1", agency) == 2
    pub.close()


async def test_replays_are_idempotent_and_corrections_keep_history(
    pool: asyncpg.Pool, broker: MosquittoRig, agencies: Agencies, ingest: IngestProcess
) -> None:
    agency, pw = await agencies.add(["tthc"])
    other, other_pw = await agencies.add(["tthc"])
    pub = await connect(broker, agency, pw)
    area = "13306"
    ts = "2025-03-01T08:00:00+07:00"
    reading = {"kpi": KPI, "ts": ts, "value": 120, "area": area, "msg_id": "r1"}
    for _ in range(3):  # a gateway replaying after an outage
        await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", reading)
    await wait_value(pool, "SELECT count(*) FROM readings WHERE agency = $1", agency, until=lambda v: v == 1)
    # same key, different value, no new revision: refused, stored value unchanged
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", {**reading, "value": 999})
    await wait_value(pool, "SELECT count(*) FROM dead_letters WHERE agency = $1 AND reason LIKE '%send rev >%'", agency,
                     until=lambda v: v == 1)
    # another agency may not overwrite it even with a higher revision
    pub2 = await connect(broker, other, other_pw)
    await asyncio.to_thread(pub2.publish, f"ioc/v1/kpi/{other}", {**reading, "value": 5, "rev": 9})
    await wait_value(pool, "SELECT count(*) FROM dead_letters WHERE agency = $1", other, until=lambda v: v == 1)
    # a correction with a higher revision replaces it; the audit log keeps the old value
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", {**reading, "value": 125, "rev": 1, "msg_id": "r1-fix"})
    await wait_value(pool, "SELECT value FROM readings WHERE agency = $1", agency, until=lambda v: v == 125.0)
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT value, revision, msg_id FROM readings WHERE kpi = $1 AND area = $2", KPI, area)
        audit = await conn.fetch(
            "SELECT actor, details FROM audit_log WHERE action = 'reading.corrected' AND subject LIKE $1", f"{KPI}/{area}@%"
        )
        other_reason = await conn.fetchval("SELECT reason FROM dead_letters WHERE agency = $1", other)
    assert [(r["value"], r["revision"], r["msg_id"]) for r in rows] == [(125.0, 1, "r1-fix")]
    assert len(audit) == 1
    details = orjson.loads(audit[0]["details"])
    assert (details["old_value"], details["new_value"], details["old_revision"]) == (120, 125, 0)
    assert "only it may correct" in other_reason
    # replaying the correction changes nothing
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", {**reading, "value": 125, "rev": 1, "msg_id": "r1-fix"})
    await asyncio.sleep(0.5)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'reading.corrected' AND subject LIKE $1",
                                   f"{KPI}/{area}@%") == 1
    pub.close()
    pub2.close()


async def test_an_agency_cannot_publish_as_another(
    pool: asyncpg.Pool, broker: MosquittoRig, agencies: Agencies, ingest: IngestProcess
) -> None:
    a, a_pw = await agencies.add(["tthc"])
    b, _ = await agencies.add(["tthc"])
    pub = await connect(broker, a, a_pw)
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{b}", {"kpi": KPI, "ts": 1700000000000, "value": 3, "area": "35"})
    # a message A may send, published after the forged one: once it is in, the forged one had its chance
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{a}", {"kpi": KPI, "ts": 1700000001000, "value": 4, "area": "35"})
    await wait_value(pool, "SELECT count(*) FROM readings WHERE agency = $1", a, until=lambda v: v == 1)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM readings WHERE agency = $1", b) == 0
        assert await conn.fetchval("SELECT count(*) FROM dead_letters WHERE agency = $1", b) == 0
    pub.close()


async def test_wrong_password_is_refused_by_the_broker(broker: MosquittoRig, agencies: Agencies) -> None:
    agency, _ = await agencies.add(["tthc"])
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(lambda: Client(broker.host, broker.port, agency, "wrong-password").wait_connected(3))


async def test_a_correction_never_commits_before_its_original(
    pool: asyncpg.Pool, broker: MosquittoRig, agencies: Agencies, ingest: IngestProcess
) -> None:
    """Original and correction in different batches, the original's transaction held up:
    the correction must wait for it, or the original would be refused as a conflict and
    the history lost."""
    agency, pw = await agencies.add(["tthc"])
    pub = await connect(broker, agency, pw)
    base = 1_600_000_000_000 + secrets.randbelow(10**6) * 1000  # a random second in 2020
    blocker_key = {"kpi": KPI, "ts": base, "value": 1, "area": "352"}
    original = {"kpi": KPI, "ts": base + 1000, "value": 10, "area": "352"}
    # hold the blocker's key in an open transaction: the batch with the original waits on it
    holder = await pool.acquire()
    tx = holder.transaction()
    await tx.start()
    await holder.execute(
        "INSERT INTO readings (ts, kpi, area, value, agency, revision, received_at) VALUES ($1, $2, '352', 0, 'x', 0, now())",
        datetime.fromtimestamp(base / 1000, timezone.utc), KPI,
    )
    try:
        await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", [blocker_key, original])
        await asyncio.sleep(0.5)  # that batch is now in its transaction, blocked
        await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", {**original, "value": 11, "rev": 1})
        await asyncio.sleep(1.0)  # a second writer is free: without the guard it commits now
    finally:
        await tx.rollback()
        await pool.release(holder)
    await wait_value(pool, "SELECT count(*) FROM readings WHERE agency = $1", agency, until=lambda v: v == 2)
    await asyncio.sleep(0.3)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT value, revision FROM readings WHERE agency = $1 AND area = '352' AND ts = $2",
                                  agency, datetime.fromtimestamp((base + 1000) / 1000, timezone.utc))
        dead = await conn.fetch("SELECT reason FROM dead_letters WHERE agency = $1", agency)
        history = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'reading.corrected' AND actor = $1", agency)
    assert (row["value"], row["revision"]) == (11.0, 1)
    assert [d["reason"] for d in dead] == []
    assert history == 1
    pub.close()


async def test_a_reading_for_a_unit_that_ended_names_its_successor(
    pool: asyncpg.Pool, broker: MosquittoRig, agencies: Agencies, ingest: IngestProcess
) -> None:
    """Hà Nam (35) ended on 2025-06-30 (the shipped 2025 reform): a reading for it dated
    after is dead-lettered with the unit to report for; before, and for the successor, it
    is stored under the code it was reported for."""
    agency, pw = await agencies.add(["tthc"])
    pub = await connect(broker, agency, pw)
    await asyncio.to_thread(pub.subscribe, f"ioc/v1/ack/{agency}")
    vn = timezone(timedelta(hours=7))
    await asyncio.to_thread(pub.publish, f"ioc/v1/kpi/{agency}", [
        {"kpi": KPI, "ts": iso(datetime(2025, 6, 30, 23, 59, tzinfo=vn)), "value": 5, "area": "35"},  # its last day
        {"kpi": KPI, "ts": iso(datetime(2025, 7, 1, 0, 0, tzinfo=vn)), "value": 6, "area": "35"},  # local 1 July
        {"kpi": KPI, "ts": iso(datetime(2025, 7, 1, 0, 0, tzinfo=vn)), "value": 7, "area": "37"},
        {"kpi": KPI, "ts": iso(datetime(2025, 7, 2, tzinfo=vn)), "value": 8, "area": "347", "msg_id": "d-1"},
    ])
    await wait_value(pool, "SELECT count(*) FROM dead_letters WHERE agency = $1", agency, until=lambda v: v >= 2)
    await wait_value(pool, "SELECT count(*) FROM readings WHERE agency = $1", agency, until=lambda v: v >= 2)
    async with pool.acquire() as conn:
        dead = await conn.fetch("SELECT reason, area, reading_index, msg_id FROM dead_letters WHERE agency = $1 ORDER BY reading_index", agency)
        stored = await conn.fetch("SELECT area, value FROM readings WHERE agency = $1 ORDER BY value", agency)
    assert [(d["reading_index"], d["area"], d["reason"]) for d in dead] == [
        (1, "35", "area 35 ended on 2025-06-30; report for its successor 37 (Tỉnh Ninh Bình)"),
        (3, "347", "area 347 ended on 2025-06-30; report for its successor 37 (Tỉnh Ninh Bình)"),
    ]
    assert [(r["area"], r["value"]) for r in stored] == [("35", 5.0), ("37", 7.0)]
    acks = await asyncio.to_thread(pub.wait_for, lambda m: len(m) >= 1)
    body = orjson.loads(acks[-1].payload)
    assert body["accepted"] == 2 and "report for its successor 37" in body["rejected"][0]["reason"]
    pub.close()
