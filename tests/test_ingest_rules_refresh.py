"""The ingest's catalogue refresher closes its LISTEN connection when a refresh fails.

The refresher keeps one connection LISTENing on `ioc_catalogue` and reloads the rules on it.
When a reload fails it starts over with a new connection; the old one must be closed then,
not dropped for the garbage collector to find (asyncpg then warns "unclosed connection" and
the server session lingers until a collection happens to run).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings

import pytest

from ingest.service import IngestService
from ioc.core.settings import load_settings
from ioc.core.storage.modes import StorageMode
from tests.conftest import Stack


async def _listener_pid(stack: Stack, timeout: float = 15.0) -> int:
    """The backend of the refresher's connection, once it LISTENs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with stack.pool.acquire() as conn:
            pid = await conn.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%' "
                "AND pid <> pg_backend_pid()", stack.db_name)
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.1)
    raise AssertionError("the refresher never LISTENed")


async def _gone(stack: Stack, pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with stack.pool.acquire() as conn:
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                return True
        await asyncio.sleep(0.1)
    return False


async def test_a_failed_refresh_closes_the_listener_connection(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(database_url=stack.db_url, mqtt_url="mqtt://u:p@127.0.0.1:1", ingest_spool_max_bytes=0)
    service = IngestService(settings, stack.pool, StorageMode.PLAIN)
    caplog.set_level(logging.WARNING, logger="ioc.ingest")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = asyncio.create_task(service._rules_refresher())
        try:
            pid = await _listener_pid(stack)
            async with stack.pool.acquire() as conn:
                # the next reload fails on a healthy connection: the catalogue is not there
                await conn.execute("ALTER TABLE kpis RENAME TO kpis_away")
                await conn.execute("SELECT pg_notify('ioc_catalogue', 'test')")
            deadline = time.monotonic() + 20
            while "catalogue refresh failed" not in caplog.text:
                assert time.monotonic() < deadline, "the refresh did not fail"
                await asyncio.sleep(0.05)
            gc.collect()  # a connection merely dropped would be finalised (and warn) here
            assert await _gone(stack, pid), "the failed refresh's connection is still open on the server"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            async with stack.pool.acquire() as conn:
                await conn.execute("ALTER TABLE IF EXISTS kpis_away RENAME TO kpis")
        gc.collect()
    unclosed = [str(w.message)[:120] for w in caught if "unclosed connection" in str(w.message)]
    assert unclosed == [], unclosed
