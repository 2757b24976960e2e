"""Counters of one ingest worker, reported to PostgreSQL so any API node can expose them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

import asyncpg

from ioc.core.storage import ops


@dataclass
class IngestStats:
    worker_id: str
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    batches: int = 0
    db_errors: int = 0
    buffered: int = 0
    lags_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))

    def lag_percentile(self, q: float) -> float | None:
        if not self.lags_ms:
            return None
        ordered = sorted(self.lags_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    async def report(self, conn: asyncpg.Connection) -> None:
        await ops.report_worker(conn, ops.WorkerReport(
            self.worker_id, self.started_at, self.messages, self.accepted, self.rejected, self.duplicates,
            self.batches, self.buffered, self.lag_percentile(0.5), self.lag_percentile(0.99), self.db_errors,
        ))
