"""Nothing the broker accepted is lost: database outages, a killed ingest, a broker restart.

Each test runs its own database, broker and ingest worker, so it can break them freely.
"""

from __future__ import annotations

import asyncio
import threading

import asyncpg

from tests.conftest import ADMIN_DSN, Stack
from tests.helpers import wait_value

KPI = "mt.pm25"


def readings(start: int, count: int) -> list[dict[str, object]]:
    areas = ["35", "347", "349", "350", "351", "352", "353"]
    base = 1_704_067_200_000  # 2024-01-01T00:00:00Z
    return [
        {"kpi": KPI, "ts": base + (start + i) * 1000, "value": (start + i) % 300, "area": areas[(start + i) % len(areas)]}
        for i in range(count)
    ]


async def set_db_available(name: str, available: bool) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(available).lower()}')
        if not available:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name
            )
    finally:
        await admin.close()


async def count_rows(stack: Stack) -> int:
    conn = await asyncpg.connect(stack.db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings"))
    finally:
        await conn.close()


async def test_database_outage_loses_nothing(stack: Stack) -> None:
    worker = await asyncio.to_thread(stack.ingest().start)
    pub = await asyncio.to_thread(stack.publisher)
    await asyncio.to_thread(pub.publish_many, f"ioc/v1/kpi/{stack.agency}", readings(0, 500))
    await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v == 500)

    await stack.pool.expire_connections()
    await set_db_available(stack.db_name, False)
    # the broker accepts these while PostgreSQL is away; the ingest must hold its acks
    await asyncio.to_thread(pub.publish_many, f"ioc/v1/kpi/{stack.agency}", readings(500, 3000))
    await asyncio.sleep(2.0)
    assert "database unavailable, holding acknowledgements" in worker.log_text()
    assert worker.proc is not None and worker.proc.poll() is None, "the ingest must survive an outage"

    await set_db_available(stack.db_name, True)
    n = await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v >= 3500, timeout=30)
    assert n == 3500
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
        assert await conn.fetchval("SELECT count(DISTINCT ts) FROM readings") == 3500
    pub.close()
    worker.stop()


async def test_killed_ingest_resumes_its_session_without_loss(stack: Stack) -> None:
    worker = await asyncio.to_thread(stack.ingest("resilient-2").start)
    pub = await asyncio.to_thread(stack.publisher)
    total = 6000
    sender = threading.Thread(target=pub.publish_many, args=(f"ioc/v1/kpi/{stack.agency}", readings(0, total)))
    sender.start()
    await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v >= 500, timeout=30)
    worker.kill()  # SIGKILL mid-stream: uncommitted batches and unacknowledged messages vanish with it
    killed_at = await count_rows(stack)
    await asyncio.to_thread(sender.join, 60)
    await asyncio.sleep(0.5)
    assert killed_at < total, "the kill came too late to prove anything"
    # the same worker id resumes its persistent session: the broker redelivers the rest
    restarted = await asyncio.to_thread(stack.ingest("resilient-2").start)
    n = await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v >= total, timeout=60)
    assert n == total
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
    pub.close()
    restarted.stop()


async def test_broker_restart_reconnects_and_keeps_the_session(stack: Stack) -> None:
    worker = await asyncio.to_thread(stack.ingest("resilient-3").start)
    pub = await asyncio.to_thread(stack.publisher)
    await asyncio.to_thread(pub.publish_many, f"ioc/v1/kpi/{stack.agency}", readings(0, 200))
    await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v == 200)
    pub.close()

    # stop the ingest, queue messages for its session, restart the broker, then the ingest
    worker.stop()
    pub = await asyncio.to_thread(stack.publisher)
    await asyncio.to_thread(pub.publish_many, f"ioc/v1/kpi/{stack.agency}", readings(200, 2000))
    pub.close()
    await asyncio.to_thread(stack.rig.stop)
    await asyncio.to_thread(stack.rig.start)
    worker = await asyncio.to_thread(stack.ingest("resilient-3").start)
    await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v == 2200, timeout=30)

    # now restart the broker under a running ingest: it reconnects by itself
    await asyncio.to_thread(stack.rig.stop)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stack.rig.start)
    pub = await asyncio.to_thread(stack.publisher)
    await asyncio.to_thread(pub.publish_many, f"ioc/v1/kpi/{stack.agency}", readings(2200, 300))
    n = await wait_value(stack.pool, "SELECT count(*) FROM readings", until=lambda v: v >= 2500, timeout=40)
    assert n == 2500
    assert worker.log_text().count('"mqtt connected"') >= 2
    pub.close()
    worker.stop()
