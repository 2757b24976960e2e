"""Operations' tables: ingest workers' counters, dead letters, and the figures `/metrics`
and `/healthz` report, so any API node answers for every worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class WorkerReport:
    """One ingest worker's counters since it started (a row of `ingest_workers`)."""

    worker_id: str
    started_at: datetime
    messages: int
    accepted: int
    rejected: int
    duplicates: int
    batches: int
    buffered: int
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    db_errors: int


async def report_worker(conn: asyncpg.Connection, w: WorkerReport) -> None:
    await conn.execute(
        """INSERT INTO ingest_workers AS w (worker_id, started_at, last_seen, messages, readings_accepted,
               readings_rejected, readings_duplicate, batches, buffered_messages, commit_lag_p50_ms,
               commit_lag_p99_ms, db_errors)
           VALUES ($1, $2, now(), $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (worker_id) DO UPDATE SET started_at = EXCLUDED.started_at, last_seen = now(),
               messages = EXCLUDED.messages, readings_accepted = EXCLUDED.readings_accepted,
               readings_rejected = EXCLUDED.readings_rejected, readings_duplicate = EXCLUDED.readings_duplicate,
               batches = EXCLUDED.batches, buffered_messages = EXCLUDED.buffered_messages,
               commit_lag_p50_ms = EXCLUDED.commit_lag_p50_ms, commit_lag_p99_ms = EXCLUDED.commit_lag_p99_ms,
               db_errors = EXCLUDED.db_errors""",
        w.worker_id, w.started_at, w.messages, w.accepted, w.rejected, w.duplicates,
        w.batches, w.buffered, w.lag_p50_ms, w.lag_p99_ms, w.db_errors,
    )


async def workers(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every worker's row, as it reported it."""
    return [dict(r) for r in await conn.fetch("SELECT * FROM ingest_workers ORDER BY worker_id")]


async def worker_figures(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every worker's row, with `age`: seconds since it last reported."""
    return await conn.fetch(
        "SELECT *, extract(epoch FROM now() - last_seen) AS age FROM ingest_workers ORDER BY worker_id"
    )


async def dead_letters(conn: asyncpg.Connection, *, agency: str | None, since: datetime | None,
                       before_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Rejected readings with their reasons, newest first (pages by `before_id`)."""
    rows = await conn.fetch(
        """SELECT id, received_at, agency, topic, reason, reading_index, kpi, area, msg_id, payload, payload_bytes
             FROM dead_letters
            WHERE ($1::text IS NULL OR agency = $1) AND ($2::timestamptz IS NULL OR received_at >= $2)
              AND ($3::bigint IS NULL OR id < $3)
            ORDER BY id DESC LIMIT $4""",
        agency, since, before_id, limit,
    )
    return [dict(r) for r in rows]


async def recent_dead_letters(conn: asyncpg.Connection) -> int:
    """How many readings were rejected in the last five minutes."""
    return await conn.fetchval("SELECT count(*) FROM dead_letters WHERE received_at > now() - interval '5 minutes'")


async def dirty_hours(conn: asyncpg.Connection) -> int:
    """Hours waiting for their roll-up."""
    return await conn.fetchval("SELECT count(*) FROM rollup_dirty")


async def ping(conn: asyncpg.Connection) -> None:
    """A round trip: raises if the database does not answer."""
    await conn.fetchval("SELECT 1")
