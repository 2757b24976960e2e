"""One roll-up refresh at a time, shared by every request that waits for it.

`/series` brings the roll-ups up to date before it answers. Under heavy ingest every
request finds hours to recompute, and on TimescaleDB a refresh covers every KPI: a burst of
N requests (N charts opening, N tablets) would run N refreshes of the same hours side by
side, each one holding a connection. Here a request joins the refresh that has not yet
read which hours are dirty, or queues one behind the running refresh: every request still
sees every reading committed before it arrived (the refresh it waits for takes its snapshot
after that), and a burst costs one refresh, two at most. Across API nodes, `rollups` takes
a database lock so that only one node refreshes at a time.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from ioc.core.storage import rollups
from ioc.core.storage.modes import StorageMode

log = logging.getLogger("ioc.api")


class RollupFlight:
    def __init__(self, pool: asyncpg.Pool, mode: StorageMode, timezone: str) -> None:
        self.pool = pool
        self.mode = mode
        self.timezone = timezone
        self.runs = 0  # refreshes started by this process (the test counts them)
        self.waiting = 0  # requests waiting for a refresh now
        self._open: dict[str, asyncio.Future[int]] = {}  # per key: the refresh still taking joiners
        self._turn: dict[str, asyncio.Lock] = {}  # per key: one refresh running at a time

    def _key(self, kpi: str) -> str:
        # TimescaleDB's refresh covers every KPI; plain mode recomputes one KPI's hours
        return "*" if self.mode is StorageMode.TIMESCALE else kpi

    async def refresh(self, kpi: str) -> int:
        """Wait until the roll-ups hold everything committed before this call; the hours
        recomputed by the refresh it shared."""
        key = self._key(kpi)
        shared = self._open.get(key)
        if shared is None:
            shared = asyncio.get_running_loop().create_future()
            self._open[key] = shared
            # its own task and connection: a request that goes away does not cancel the
            # refresh the others wait for, and waiting requests hold no connection
            asyncio.create_task(self._run(key, kpi, shared), name=f"rollup-refresh-{key}")
        self.waiting += 1
        try:
            return await asyncio.shield(shared)
        finally:
            self.waiting -= 1

    async def _run(self, key: str, kpi: str, result: asyncio.Future[int]) -> None:
        def closed() -> None:
            # the refresh is about to read the dirty hours: a later request needs a later one
            if self._open.get(key) is result:
                del self._open[key]

        try:
            async with self._turn.setdefault(key, asyncio.Lock()):
                self.runs += 1
                async with self.pool.acquire() as conn:
                    hours = await rollups.refresh(conn, self.mode, self.timezone, kpi=None if key == "*" else kpi,
                                                  before_snapshot=closed)
        except Exception as exc:  # noqa: BLE001 - handed to every waiter, logged once
            closed()
            result.set_exception(exc)
            result.exception()  # retrieved: no "never retrieved" warning when every waiter left
            log.warning("roll-up refresh failed", extra={"kpi": kpi, "error": str(exc)[:300]})
        except BaseException:
            closed()
            result.cancel()
            raise
        else:
            closed()
            result.set_result(hours)
