"""The ingest's write path: one transaction per batch, COPY first, upsert when needed.

A batch is written whole or not at all: readings, dead letters, the latest-value table and
the roll-up bookkeeping commit together, and only then does the service acknowledge the
MQTT messages. New readings go in by a plain COPY (the fast path, ~5x an upsert); when a
batch collides with stored keys (a replay, a correction) the COPY is rolled back to its
savepoint and the batch goes through a staging table and INSERT ... ON CONFLICT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter

import asyncpg

from ingest.readings import Reject
from ioc.core.contracts import topics
from ioc.core.readings import Reading
from ioc.core.storage import reading_writes

PAYLOAD_EXCERPT = 2048
UTC = timezone.utc
# (kpi, area, ts): every writer inserts keys in this order, so two workers given the same
# keys (a replay reaching both) wait for each other instead of deadlocking
_LOCK_ORDER = itemgetter(1, 2, 0)


@dataclass(slots=True)
class DeadLetter:
    received_at: datetime
    agency: str | None
    topic: str
    payload: bytes
    reject: Reject

    def record(self) -> tuple[object, ...]:
        r = self.reject
        return (
            self.received_at, clean(self.agency, 64), clean(self.topic, 256), clean(r.reason, 1000), r.index,
            clean(r.kpi, 100), clean(r.area, 100), clean(r.msg_id, 128),
            clean(self.payload[:PAYLOAD_EXCERPT].decode("utf-8", "replace"), PAYLOAD_EXCERPT), len(self.payload),
        )


def clean(text: str | None, limit: int) -> str | None:
    """Text PostgreSQL accepts (no NUL) and of bounded size, whatever an agency sent."""
    if text is None:
        return None
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text[:limit]


@dataclass(slots=True)
class Outcome:
    written: list[Reading] = field(default_factory=list)
    duplicates: list[Reading] = field(default_factory=list)
    conflicts: list[tuple[Reading, str]] = field(default_factory=list)
    live: list[asyncpg.Record] = field(default_factory=list)


class ReadingStore:
    """Writes batches; remembers per connection whether its staging table exists."""

    def __init__(self) -> None:
        # Every touched hour is listed for the roll-ups, in both modes: plain recomputes them;
        # TimescaleDB shows recent hours in real time but only what a refresh materialized
        # below its watermark, and its policy revisits an hour only minutes (1h buckets) to an
        # hour (1d) later, so a late reading or a correction two days back stayed invisible that
        # long. `ioc serve` refreshes the listed hours before answering a series, and every
        # IOC_ROLLUP_REFRESH_S.
        self._prefer_upsert_until = 0.0

    async def write(
        self,
        conn: asyncpg.Connection,
        readings: list[Reading],
        dead: list[DeadLetter],
    ) -> Outcome:
        out = Outcome()
        rounds, dupes, conflicts = split_rounds(readings)
        out.duplicates.extend(dupes)
        out.conflicts.extend(conflicts)
        async with conn.transaction():
            for rows in rounds:
                await self._write_round(conn, rows, out)
            for reading, reason in out.conflicts:
                dead.append(
                    DeadLetter(reading.received_at, reading.agency, topics.kpi(reading.agency), b"",
                               Reject(reason, None, reading.kpi, reading.area, reading.msg_id))
                )
            if dead:
                await reading_writes.copy_dead_letters(conn, [d.record() for d in dead])
            if out.written:
                best, first = _scan(out.written)
                out.live = await _update_latest(conn, best)
                await self._mark_hours(conn, out.written, best, first)
        return out

    async def _write_round(self, conn: asyncpg.Connection, rows: list[Reading], out: Outcome) -> None:
        # a correction (revision > 0) replaces a stored key: its COPY would only fail (and
        # PostgreSQL log an ERROR for it), so such a round goes straight to the upsert
        if time.monotonic() >= self._prefer_upsert_until and not any(r.revision for r in rows):
            rows = sorted(rows, key=_LOCK_ORDER)
            try:
                async with conn.transaction():
                    await reading_writes.copy_readings(conn, rows)
                out.written.extend(rows)
                return
            except asyncpg.UniqueViolationError:
                # replays come in runs (an agency catching up): skip the doomed COPY for a while
                self._prefer_upsert_until = time.monotonic() + 5.0
        await self._upsert(conn, rows, out)

    async def _upsert(self, conn: asyncpg.Connection, rows: list[Reading], out: Outcome) -> None:
        returned = await reading_writes.stage_and_upsert(conn, rows)
        index = {(r.kpi, r.area, r.ts): i for i, r in enumerate(rows)}
        done = set()
        for rec in returned:
            i = index[(rec["kpi"], rec["area"], rec["ts"])]
            done.add(i)
            out.written.append(rows[i])
        if len(done) == len(rows):
            return
        left = [i for i in range(len(rows)) if i not in done]
        stored = await reading_writes.stored_beside_stage(conn, left)
        for rec in stored:
            reading = rows[rec["idx"]]
            if rec["agency"] != reading.agency:
                out.conflicts.append((reading, f"this kpi/area/ts was reported by agency {rec['agency']!r}; only it may correct it"))
            elif (rec["value"], rec["numerator"], rec["denominator"]) == (reading.value, reading.numerator, reading.denominator):
                out.duplicates.append(reading)
            else:
                out.conflicts.append(
                    (reading, f"a different value is stored for this kpi/area/ts (rev {rec['revision']}); "
                              f"send rev > {rec['revision']} to correct it")
                )

    async def _mark_hours(
        self,
        conn: asyncpg.Connection,
        rows: list[Reading],
        best: dict[tuple[str, str], Reading],
        first: dict[tuple[str, str], datetime],
    ) -> None:
        """List the hours whose roll-ups this batch changed.

        Per (kpi, area) the batch usually covers a short span, so every hour from its
        oldest to its newest reading is listed (an hour without readings recomputes to
        nothing); a span over two days, a backfill, lists only hours that have readings.
        """
        hours: set[tuple[str, str, int]] = set()
        exact = False
        for key, newest in best.items():
            lo = int(first[key].timestamp() // 3600)
            hi = int(newest.ts.timestamp() // 3600)
            if hi - lo > 48:
                exact = True
                break
            hours.update((key[0], key[1], h) for h in range(lo, hi + 1))
        if exact:
            hours = {(r.kpi, r.area, int(r.ts.timestamp() // 3600)) for r in rows}
        if not hours:
            return
        ordered = [(k, a, datetime.fromtimestamp(h * 3600, UTC)) for k, a, h in sorted(hours)]
        await reading_writes.mark_dirty_hours(conn, ordered)


def _scan(rows: list[Reading]) -> tuple[dict[tuple[str, str], Reading], dict[tuple[str, str], datetime]]:
    """One pass: the newest reading and the oldest time per (kpi, area)."""
    best: dict[tuple[str, str], Reading] = {}
    first: dict[tuple[str, str], datetime] = {}
    for r in rows:
        key = (r.kpi, r.area)
        b = best.get(key)
        if b is None:
            best[key] = r
            first[key] = r.ts
            continue
        ts = r.ts
        if ts > b.ts or (ts == b.ts and r.revision > b.revision):
            best[key] = r
        if ts < first[key]:
            first[key] = ts
    return best, first


def split_rounds(readings: list[Reading]) -> tuple[list[list[Reading]], list[Reading], list[tuple[Reading, str]]]:
    """Split a batch so that no key appears twice in one statement.

    The same (kpi, area, ts) may arrive twice in one batch: a replayed message (a duplicate)
    or a correction right behind the original. Corrections go into a later round so the
    original is stored first and the audit log keeps it.
    """
    if len({(r.kpi, r.area, r.ts) for r in readings}) == len(readings):
        return ([readings] if readings else []), [], []  # the usual case: every key once
    rounds: list[dict[tuple[object, ...], Reading]] = [{}]
    dupes: list[Reading] = []
    conflicts: list[tuple[Reading, str]] = []
    last: dict[tuple[object, ...], Reading] = {}
    first_round = rounds[0]
    for r in readings:
        key = (r.kpi, r.area, r.ts)
        prev = last.get(key)
        if prev is None:
            first_round[key] = r
            last[key] = r
            continue
        if r.revision > prev.revision:
            for rnd in rounds:
                if key not in rnd:
                    rnd[key] = r
                    break
            else:
                rounds.append({key: r})
            last[key] = r
        elif (r.value, r.numerator, r.denominator) == (prev.value, prev.numerator, prev.denominator):
            dupes.append(r)
        else:
            conflicts.append((r, f"a different value for this kpi/area/ts came first (rev {prev.revision}); "
                                 f"send rev > {prev.revision} to correct it"))
    return [list(rnd.values()) for rnd in rounds if rnd], dupes, conflicts


async def _update_latest(conn: asyncpg.Connection, best: dict[tuple[str, str], Reading]) -> list[asyncpg.Record]:
    return await reading_writes.update_latest(conn, [best[k] for k in sorted(best)])
