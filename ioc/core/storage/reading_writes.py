"""The ingest's statements: COPY of readings and dead letters, the staged upsert, the
latest-value table and the roll-up bookkeeping.

These are the fast path (tens of thousands of readings a second): each function is one
statement (or one COPY) over a whole batch, called inside the caller's transaction; the
decisions (which rows, which order, COPY or upsert) stay with the ingest's `ReadingStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from ioc.core.readings import READING_COLUMNS, Reading

DEAD_LETTER_COLUMNS = (
    "received_at", "agency", "topic", "reason", "reading_index", "kpi", "area", "msg_id", "payload", "payload_bytes",
)


async def copy_readings(conn: asyncpg.Connection, rows: Sequence[Reading]) -> None:
    """COPY new readings; raises UniqueViolationError when a key is stored already."""
    await conn.copy_records_to_table("readings", records=rows, columns=READING_COLUMNS)


async def copy_dead_letters(conn: asyncpg.Connection, records: Sequence[tuple[object, ...]]) -> None:
    """COPY rejects, each a tuple in `DEAD_LETTER_COLUMNS` order."""
    await conn.copy_records_to_table("dead_letters", records=records, columns=DEAD_LETTER_COLUMNS)


async def stage_and_upsert(conn: asyncpg.Connection, rows: Sequence[Reading]) -> list[asyncpg.Record]:
    """Stage the rows (numbered by position) and insert them, replacing only an older
    revision by the same agency; returns (kpi, area, ts) of the rows written.

    The staging table is per connection and empties at commit, so `stored_beside_stage`
    can read it afterwards in the same transaction.
    """
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS ingest_stage (idx integer, ts timestamptz, kpi text, area text, "
        "value double precision, agency text, revision integer, msg_id text, received_at timestamptz, "
        "numerator double precision, denominator double precision) "
        "ON COMMIT DELETE ROWS"
    )
    await conn.execute("TRUNCATE ingest_stage")
    await conn.copy_records_to_table(
        "ingest_stage", records=[(i, *r) for i, r in enumerate(rows)], columns=("idx", *READING_COLUMNS)
    )
    # ORDER BY gives every worker the same row-lock order: no deadlocks between them
    return await conn.fetch(
        """INSERT INTO readings AS r (ts, kpi, area, value, agency, revision, msg_id, received_at, numerator, denominator)
           SELECT ts, kpi, area, value, agency, revision, msg_id, received_at, numerator, denominator FROM ingest_stage
           ORDER BY kpi, area, ts
           ON CONFLICT (kpi, area, ts) DO UPDATE
              SET value = EXCLUDED.value, revision = EXCLUDED.revision,
                  numerator = EXCLUDED.numerator, denominator = EXCLUDED.denominator,
                  msg_id = EXCLUDED.msg_id, received_at = EXCLUDED.received_at
            WHERE r.revision < EXCLUDED.revision AND r.agency = EXCLUDED.agency
           RETURNING kpi, area, ts"""
    )


async def stored_beside_stage(conn: asyncpg.Connection, indexes: list[int]) -> list[asyncpg.Record]:
    """For staged rows the upsert did not write: the stored value (and a ratio's parts),
    revision and agency."""
    return await conn.fetch(
        """SELECT s.idx, r.value, r.numerator, r.denominator, r.revision, r.agency FROM ingest_stage s
           JOIN readings r ON r.kpi = s.kpi AND r.area = s.area AND r.ts = s.ts
           WHERE s.idx = ANY($1::int[])""",
        indexes,
    )


async def mark_dirty_hours(conn: asyncpg.Connection, hours: Sequence[tuple[str, str, datetime]]) -> None:
    """List (kpi, area, hour) whose roll-ups must be recomputed."""
    await conn.execute(
        """INSERT INTO rollup_dirty (kpi, area, hour)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
           ON CONFLICT DO NOTHING""",
        [h[0] for h in hours], [h[1] for h in hours], [h[2] for h in hours],
    )


async def update_latest(conn: asyncpg.Connection, newest: Sequence[Reading]) -> list[asyncpg.Record]:
    """Move `kpi_latest` forward (never back); returns the rows that changed."""
    return await conn.fetch(
        """INSERT INTO kpi_latest AS l (kpi, area, ts, value, revision, agency, received_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::int[],
                                $6::text[], $7::timestamptz[])
           ON CONFLICT (kpi, area) DO UPDATE
              SET ts = EXCLUDED.ts, value = EXCLUDED.value, revision = EXCLUDED.revision,
                  agency = EXCLUDED.agency, received_at = EXCLUDED.received_at
            WHERE EXCLUDED.ts > l.ts OR (EXCLUDED.ts = l.ts AND EXCLUDED.revision > l.revision)
           RETURNING kpi, area, ts, value, revision, agency, received_at""",
        [r.kpi for r in newest], [r.area for r in newest], [r.ts for r in newest],
        [r.value for r in newest], [r.revision for r in newest], [r.agency for r in newest],
        [r.received_at for r in newest],
    )
