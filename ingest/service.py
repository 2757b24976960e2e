"""`ioc ingest`: agencies' KPI messages from the broker into PostgreSQL, acknowledged after commit.

One asyncio loop does everything: the MQTT link feeds parsed messages into a buffer, one
writer drains the buffer in batches (a batch is whatever arrived while the previous one was
committing, so batches grow with load), and only after a batch commits are its messages
acknowledged to the broker. If PostgreSQL is down, the batch goes to a durable local spool
(`ingest.spool`, fsynced before the acknowledgement) and so does everything after it until
the spool has been replayed, in order, through the same write path: the broker keeps its
queue in memory, so a broker crash during an outage must not find the backlog there. With
the spool off or full, the writer retries and nothing is acknowledged; the broker holds the
rest (Receive Maximum bounds what sits in memory here).
A message the database itself refuses is isolated by bisecting the batch and dead-lettered,
so one poison message cannot stall an agency's stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import asyncpg

from ingest.readings import Reject
from ioc.core.readings import Reading
from ingest.rules import Rules, load_rules
from ingest.spool import Chunk, Spool, SpoolFull, SpoolRecord, prepare_dir
from ingest.stats import IngestStats
from ingest.store import DeadLetter, Outcome, ReadingStore
from ingest.validate import Limits, parse_payload
from ioc.core.contracts import kpi as kpi_contract
from ioc.core.contracts import topics
from ioc.core.mqtt.link import MqttLink, Subscription
from ioc.core.settings import Settings, SettingsError, parse_shard
from ioc.core.sharding import owner
from ioc.core.storage.modes import StorageMode
from ioc.core.supervise import run_together

log = logging.getLogger("ioc.ingest")
UTC = timezone.utc
MAX_ACK_ITEMS = 100
_TRANSIENT_SQLSTATE = ("08", "40", "53", "55", "57", "58", "3D", "XX")


@dataclass(slots=True)
class Pending:
    mid: int
    qos: int
    generation: int
    agency: str | None
    topic: str
    readings: list[Reading]
    rejects: list[Reject]
    payload: bytes
    received_at: datetime
    t0: float  # time.time() at receipt
    size: int
    unknown_agency: bool = False
    corrections: bool = False  # may carry "rev": a correction (conservative byte test)
    raw: bytes = b""  # the message as received, kept for the spool
    reply: str | None = None  # the result topic it asked for (its agency's), with the correlation
    correlation: bytes = b""


class DatabaseAway(Exception):
    """A batch could not be written because the database is unavailable (not the data)."""


@dataclass
class BatchResult:
    outcome: Outcome = field(default_factory=Outcome)
    refused: list[tuple[Pending, str]] = field(default_factory=list)
    away: str | None = None  # the database was unavailable (why): nothing was written


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying the same batch for: the database is away, not the data bad."""
    if isinstance(exc, (OSError, asyncio.TimeoutError, ConnectionError, asyncpg.InterfaceError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_SQLSTATE
    return False


class IngestService:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, mode: StorageMode) -> None:
        self.settings = settings
        self.pool = pool
        self.limits = Limits(
            settings.ingest_max_payload_bytes,
            settings.ingest_max_readings_per_message,
            settings.ingest_future_skew_s,
        )
        self.store = ReadingStore()
        self.rules = Rules()
        self.stats = IngestStats(settings.ingest_worker_id)
        self.buffer: deque[Pending] = deque()
        self.buffered_bytes = 0
        self._wake = asyncio.Event()
        self._reload = asyncio.Event()
        self.shard = parse_shard(settings.ingest_shard)
        if self.shard[1] > 1 and settings.ingest_share_group:
            raise SettingsError("IOC_INGEST_SHARD and IOC_INGEST_SHARE_GROUP exclude each other: pick one way to split the load")
        self.link = MqttLink(
            settings.require_mqtt(),
            settings.ingest_worker_id,
            on_message=self._on_message,
            persistent=True,
            session_expiry_s=settings.ingest_session_expiry_s,
            receive_maximum=settings.ingest_receive_maximum,
            manual_ack=True,
        )
        self._clock_t = 0.0
        self._clock_dt = datetime.now(UTC)
        self._rules_loaded_at = 0.0
        self.spool: Spool | None = None
        if settings.ingest_spool_max_bytes > 0:
            self.spool = Spool(prepare_dir(settings.ingest_spool_dir, settings.ingest_worker_id),
                               settings.ingest_spool_max_bytes)
            if self.spool.pending:
                log.warning("spool found at start: replaying it before new messages",
                            extra={"records": self.spool.pending, "bytes": self.spool.bytes,
                                   "dir": str(self.spool.directory)})
        self._spooled_total = 0
        self._spool_logged = 0.0
        self._spool_full_logged = False
        self._spool_lock = asyncio.Lock()
        self._spool_wake = asyncio.Event()

    # -- what to subscribe to ----------------------------------------------------------
    def subscriptions(self) -> tuple[list[Subscription], list[str]]:
        """This worker's topic filters, and those it must drop from its session.

        Mosquitto (2.0.11, measured) restores an offline session's plain subscriptions
        after a broker restart but not its shared ones, so messages published before a
        shared subscriber reconnects reach nobody. Plain persistent subscriptions are
        therefore the default: one worker takes `ioc/v1/kpi/+`; N workers (`--shard i/N`)
        each take the agencies `ioc.core.sharding` gives them (the cameras' rule). A shared subscription remains available
        (IOC_INGEST_SHARE_GROUP) for brokers that persist them.
        """
        group = self.settings.ingest_share_group
        wildcard = topics.KPI_ALL
        agency_topics = {a: topics.kpi(a) for a in self.rules.agencies}
        if group:
            return [Subscription(topics.shared(group, wildcard), 1, 2)], [wildcard, *agency_topics.values()]
        index, count = self.shard
        if count == 1:
            return [Subscription(wildcard, 1, 2)], list(agency_topics.values())
        mine = [Subscription(t, 1, 2) for a, t in sorted(agency_topics.items()) if owner(a, count) == index]
        others = [t for a, t in sorted(agency_topics.items()) if owner(a, count) != index]
        return mine, [wildcard, *others]

    def _apply_subscriptions(self) -> None:
        subs, stale = self.subscriptions()
        self.link.set_subscriptions(subs, stale)

    # -- receiving -------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool, generation: int) -> None:
        now = time.time()
        if now - self._clock_t > 0.001:  # one datetime per millisecond, not per message
            self._clock_t = now
            self._clock_dt = datetime.fromtimestamp(now, UTC)
        self.stats.messages += 1
        p = self._pending(topic, payload, self._clock_dt, now, mid, qos, generation)
        reply = self.link.reply
        if reply is not None and p.agency is not None:
            asked = topics.parse_result(reply[0])
            # answers go only under the sender's own agency: a Response Topic is never a way
            # to make the ingest publish a live value or another agency's result
            if asked is not None and asked[0] == p.agency and len(reply[1]) <= 128:
                p.reply, p.correlation = reply[0], reply[1]
        self.buffer.append(p)
        self.buffered_bytes += p.size
        if (len(self.buffer) >= self.settings.ingest_receive_maximum
                or self.buffered_bytes > self.settings.ingest_max_buffered_bytes):
            self.link.pause_reading()
        self._wake.set()

    def _pending(self, topic: str, payload: bytes, received_at: datetime, now: float,
                 mid: int = 0, qos: int = 0, generation: int = 0) -> Pending:
        """Parse one message, as received or as replayed from the spool."""
        agency = topics.agency_of_kpi_topic(topic)
        if agency is None:
            readings: list[Reading] = []
            rejects = [Reject(f"unexpected topic {topic[:200]!r}: publish on {topics.kpi('<agency>')}")]
            agency_or_none = None
        else:
            readings, rejects = parse_payload(agency, payload, self.rules, self.limits, received_at)
            agency_or_none = agency
        unknown = agency_or_none is not None and agency_or_none not in self.rules.agencies
        return Pending(mid, qos, generation, agency_or_none, topic, readings, rejects,
                       payload if rejects else b"", received_at, now, len(payload), unknown,
                       bool(readings) and b'"rev"' in payload, payload)

    # -- writing ---------------------------------------------------------------------
    def _take_batch(self) -> list[Pending]:
        """Up to batch_max_rows readings, whole messages only.

        Messages delivered on an earlier connection are dropped here: they cannot be
        acknowledged any more, and the broker has already redelivered them on this one.
        """
        batch: list[Pending] = []
        rows = 0
        limit = self.settings.ingest_batch_max_rows
        current = self.link.generation
        buffer = self.buffer
        while buffer and (not batch or rows + len(buffer[0].readings) <= limit):
            p = buffer.popleft()
            self.buffered_bytes -= p.size
            if p.generation != current:
                continue
            batch.append(p)
            rows += len(p.readings)
        return batch

    async def _writer(self) -> None:
        """Commit batches, up to IOC_INGEST_WRITERS at once, acknowledging in arrival order.

        Two transactions in flight let PostgreSQL work on one batch while this process
        parses the next; acknowledgements still go out strictly in the order the broker
        delivered the messages.
        """
        inflight: deque[tuple[list[Pending], asyncio.Task[BatchResult]]] = deque()
        waiting: list[Pending] | None = None
        while True:
            if not self.buffer and not inflight and waiting is None:
                await self._wake.wait()
            self._wake.clear()
            while (waiting is not None or self.buffer) and len(inflight) < self.settings.ingest_writers:
                batch = waiting if waiting is not None else self._take_batch()
                waiting = None
                self.stats.buffered = len(self.buffer)
                if not batch:
                    continue
                if self._spooling():
                    if inflight:  # batches taken before must be decided (and spooled) first
                        waiting = batch
                        break
                    await self._spool_batch(batch, None)
                    continue
                if any(p.unknown_agency for p in batch):
                    await self._revalidate(batch)
                if inflight and any(p.corrections for p in batch):
                    # a correction must not commit before its original, which may sit in
                    # an open transaction: batches with corrections wait for the others
                    # (replays and new readings commit in any order with the same result)
                    waiting = batch
                    break
                inflight.append((batch, asyncio.create_task(self._commit(batch))))
            if inflight:
                batch, task = inflight[0]
                if len(inflight) < self.settings.ingest_writers and waiting is None and not task.done():
                    # a writer is free: wake for new messages too, not only for this commit
                    woken = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait((task, woken), return_when=asyncio.FIRST_COMPLETED)
                    woken.cancel()
                    if not task.done():
                        continue
                try:
                    result = await task
                finally:
                    inflight.popleft()
                if result.away is not None:
                    await self._spool_batch(batch, result.away)
                else:
                    self._after_commit(batch, result)
            self._maybe_resume()

    def _maybe_resume(self) -> None:
        if (self.link.paused and len(self.buffer) <= self.settings.ingest_receive_maximum // 2
                and self.buffered_bytes <= self.settings.ingest_max_buffered_bytes // 2):
            self.link.resume_reading()

    async def _revalidate(self, batch: list[Pending]) -> None:
        """The broker let in an agency we do not know: it was probably just added.

        Rules loaded after a message arrived are the final word on it, so a reload happens
        only when some message in the batch is newer than the rules: a flood from an agency
        that really is unknown costs one query per batch at most.
        """
        if any(p.unknown_agency and p.t0 > self._rules_loaded_at for p in batch):
            try:
                async with self.pool.acquire() as conn:
                    self._set_rules(await load_rules(conn))
            except Exception as exc:  # noqa: BLE001 - keep the old rules, the reject says why
                log.warning("catalogue reload failed", extra={"error": str(exc)[:200]})
        for p in batch:
            if p.unknown_agency and p.agency is not None:
                p.unknown_agency = False
                if p.agency in self.rules.agencies and p.payload:
                    p.readings, p.rejects = parse_payload(p.agency, p.payload, self.rules, self.limits, p.received_at)
                    if not p.rejects:
                        p.payload = b""

    def _set_rules(self, rules: Rules) -> None:
        self._rules_loaded_at = time.time()
        self.rules = rules
        self._apply_subscriptions()

    async def _commit(self, batch: list[Pending]) -> BatchResult:
        """Write a batch, or say the database is away (the spool takes it); bisect what it refuses.

        Without a spool (off, or full) the batch is retried until the database returns.
        """
        result = BatchResult()
        try:
            await self._write_parts(batch, result, hold=self.spool is None)
        except DatabaseAway as exc:
            result.away = str(exc)
        return result

    async def _write_parts(self, batch: list[Pending], result: BatchResult, hold: bool = True) -> None:
        readings = [r for p in batch for r in p.readings]
        delay = 0.25
        while True:
            dead = [DeadLetter(p.received_at, p.agency, p.topic, p.payload, rj) for p in batch for rj in p.rejects]
            dead.extend(DeadLetter(p.received_at, p.agency, p.topic, p.payload, Reject(why)) for p, why in result.refused if p in batch)
            try:
                async with self.pool.acquire() as conn:
                    outcome = await self.store.write(conn, readings, dead)
            except Exception as exc:  # noqa: BLE001 - sorted below, never swallowed
                if is_transient(exc):
                    self.stats.db_errors += 1
                    if not hold:
                        raise DatabaseAway(str(exc)[:300]) from exc
                    log.error("database unavailable, holding acknowledgements",
                              extra={"error": str(exc)[:300], "retry_s": delay, "held": len(batch) + len(self.buffer)})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if len(batch) == 1:
                    why = f"the database refused this message: {str(exc)[:300]}"
                    log.error("message refused by the database", extra={"agency": batch[0].agency, "error": str(exc)[:300]})
                    batch[0].readings = []
                    result.refused.append((batch[0], why))
                    readings = []
                    continue
                half = len(batch) // 2
                await self._write_parts(batch[:half], result)
                await self._write_parts(batch[half:], result)
                return
            o = result.outcome
            o.written.extend(outcome.written)
            o.duplicates.extend(outcome.duplicates)
            o.conflicts.extend(outcome.conflicts)
            o.live.extend(outcome.live)
            return

    def _after_commit(self, batch: list[Pending], result: BatchResult, *, ack: bool = True) -> None:
        now = time.time()
        link = self.link
        stats = self.stats
        stats.batches += 1
        mids = [p.mid for p in batch if p.qos]
        if mids and ack:
            link.ack_many(mids, batch[0].generation)
        lags = stats.lags_ms
        for p in batch[:: max(1, len(batch) // 200)]:  # a sample is enough for percentiles
            lags.append((now - p.t0) * 1000.0)
        out = result.outcome
        stats.accepted += len(out.written)
        stats.duplicates += len(out.duplicates)
        stats.rejected += sum(len(p.rejects) for p in batch) + len(out.conflicts) + len(result.refused)
        for rec in out.live:
            link.publish(
                topics.live_kpi(rec["kpi"], rec["area"]),
                kpi_contract.encode_live(rec["kpi"], rec["area"], rec["ts"], rec["value"], rec["revision"],
                                         rec["agency"], rec["received_at"]),
                qos=1,
                retain=True,
            )
        refused = {id(p): why for p, why in result.refused}
        for p in batch:
            if p.agency is None or not (p.rejects or id(p) in refused):
                continue
            items = [
                {"index": r.index, "kpi": r.kpi, "area": r.area, "msg_id": r.msg_id, "reason": r.reason}
                for r in p.rejects[:MAX_ACK_ITEMS]
            ]
            if id(p) in refused:
                items.append({"index": None, "kpi": None, "area": None, "msg_id": None, "reason": refused[id(p)]})
            first_id = next((r.msg_id for r in p.readings if r.msg_id), None) or next((r.msg_id for r in p.rejects if r.msg_id), None)
            self._send_ack(p.agency, kpi_contract.encode_ack(
                "partial" if p.readings else "rejected", items,
                msg_id=first_id, accepted=len(p.readings),
                rejected_count=len(p.rejects) + (1 if id(p) in refused else 0), received_at=p.received_at,
            ))
            log.info("readings rejected", extra={"agency": p.agency, "count": len(p.rejects), "first": items[0]["reason"]})
        if any(p.reply for p in batch):
            self._send_results(batch, result, refused)
        by_agency: dict[str, list[dict[str, Any]]] = {}
        for reading, why in out.conflicts:
            by_agency.setdefault(reading.agency, []).append(
                {"kpi": reading.kpi, "area": reading.area, "ts": reading.ts, "msg_id": reading.msg_id, "reason": why}
            )
        for agency, items in by_agency.items():
            self._send_ack(agency, kpi_contract.encode_ack("conflict", items[:MAX_ACK_ITEMS], rejected_count=len(items)))
            log.info("conflicting readings", extra={"agency": agency, "count": len(items), "first": items[0]["reason"]})

    def _send_ack(self, agency: str, body: bytes) -> None:
        self.link.publish(topics.ack(agency), body, qos=1)

    def _send_results(self, batch: list[Pending], result: BatchResult | None, refused: dict[int, str]) -> None:
        """Answer the messages that asked for it, one row per reading (None: spooled)."""
        status: dict[int, tuple[kpi_contract.RowStatus, str | None]] = {}
        if result is not None:
            out = result.outcome
            for r in out.written:
                status[id(r)] = ("corrected" if r.revision else "accepted", None)
            for r in out.duplicates:
                status[id(r)] = ("duplicate", None)
            for r, why in out.conflicts:
                status[id(r)] = ("refused", why)
        for p in batch:
            if not p.reply or p.agency is None:
                continue
            readings, rejects = p.readings, p.rejects
            if result is None:
                # the spool keeps the message as received and parses it again when it is
                # replayed: say what that parse will keep (a failed write may have emptied
                # p.readings on the way to the spool)
                readings, rejects = parse_payload(p.agency, p.raw, self.rules, self.limits, p.received_at)
            rows: list[kpi_contract.RowResult] = []
            if id(p) in refused:
                rows.append({"index": None, "kpi": None, "area": None, "msg_id": None,
                             "status": "refused", "reason": refused[id(p)]})
            taken = {rj.index for rj in rejects}
            index = 0
            for r in readings:
                while index in taken:
                    index += 1
                st, why = status.get(id(r), ("spooled", None))
                row: kpi_contract.RowResult = {"index": index, "kpi": r.kpi, "area": r.area, "msg_id": r.msg_id,
                                               "status": st}
                if why:
                    row["reason"] = why
                rows.append(row)
                index += 1
            for rj in rejects:
                rows.append({"index": rj.index, "kpi": rj.kpi, "area": rj.area, "msg_id": rj.msg_id,
                             "status": "refused", "reason": rj.reason})
            rows.sort(key=lambda row: -1 if row["index"] is None else row["index"])
            request = p.correlation.decode("utf-8", "replace")
            self.link.publish(p.reply, kpi_contract.encode_result(request, p.received_at, rows), qos=1,
                              correlation=p.correlation)

    # -- the spool -------------------------------------------------------------------
    def _spooling(self) -> bool:
        """New messages go to the spool while it holds anything: their order is kept."""
        return self.spool is not None and bool(self.spool.segments)

    async def _spool_batch(self, batch: list[Pending], why: str | None) -> None:
        """Append the batch to the spool, fsynced, then acknowledge it to the broker.

        A full spool (or a failing disk) leaves the batch unacknowledged here until there
        is room: the broker holds what follows, as it would without a spool.
        """
        assert self.spool is not None
        records = [SpoolRecord(p.topic, p.agency, p.raw, p.received_at) for p in batch]
        delay = 0.5
        while True:
            async with self._spool_lock:
                starting = not self.spool.segments
                try:
                    await asyncio.to_thread(self.spool.append, records)
                    break
                except (SpoolFull, OSError) as exc:
                    if not self._spool_full_logged:
                        self._spool_full_logged = True
                        log.error("spool cannot take more: messages wait unacknowledged in the broker",
                                  extra={"error": str(exc)[:300], "spool_bytes": self.spool.bytes,
                                         "max_bytes": self.spool.max_bytes, "held": len(batch) + len(self.buffer)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        if self._spool_full_logged:
            self._spool_full_logged = False
            log.info("spool takes messages again", extra={"spool_bytes": self.spool.bytes})
        if starting:
            log.warning("spooling started: the database is unavailable",
                        extra={"reason": why or "the spool was not empty", "dir": str(self.spool.directory)})
        mids = [p.mid for p in batch if p.qos]
        if mids:
            self.link.ack_many(mids, batch[0].generation)
        if any(p.reply for p in batch):
            self._send_results(batch, None, {})
        self._spooled_total += len(batch)
        self.stats.batches += 1
        now = time.monotonic()
        if starting or now - self._spool_logged >= 5.0:
            self._spool_logged = now
            log.info("spooled", extra={"count": len(batch), "total": self._spooled_total,
                                       "pending": self.spool.pending, "spool_bytes": self.spool.bytes})
        self._spool_wake.set()

    async def _drainer(self) -> None:
        """Replay the spool, oldest first, through the same write path, once the database is back.

        Rows are committed before their records are marked consumed, so a crash here replays
        them again: a duplicate for each, nothing changed.
        """
        spool = self.spool
        assert spool is not None
        replayed = 0
        while True:
            if not spool.segments:
                self._spool_wake.clear()
                await self._spool_wake.wait()
                continue
            chunk: Chunk | None = await asyncio.to_thread(spool.read, self.settings.ingest_batch_max_rows)
            if chunk is None:
                async with self._spool_lock:
                    if await asyncio.to_thread(spool.clear_if_drained):
                        log.info("spool drained: new messages go straight to the database",
                                 extra={"replayed": replayed})
                        replayed = 0
                        self._spooled_total = 0
                        self._wake.set()
                continue
            now = time.time()
            batch = [self._pending(r.topic, r.payload, r.received_at, now) for r in chunk.records]
            if any(p.unknown_agency for p in batch):
                await self._revalidate(batch)
            result = BatchResult()
            await self._write_parts(batch, result)  # retries until the database is back
            if replayed == 0:
                log.info("draining the spool", extra={"pending": spool.pending})
            self._after_commit(batch, result, ack=False)
            await asyncio.to_thread(spool.consumed, chunk)
            replayed += len(batch)

    # -- housekeeping ----------------------------------------------------------------
    async def _load_rules_until_ready(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.pool.acquire() as conn:
                    self._set_rules(await load_rules(conn))
                log.info("catalogue loaded", extra={"kpis": len(self.rules.kpis), "areas": len(self.rules.areas),
                                                    "agencies": len(self.rules.agencies)})
                return
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc):
                    raise
                log.error("cannot load the catalogue, retrying", extra={"error": str(exc)[:300]})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _rules_refresher(self) -> None:
        listener: asyncpg.Connection | None = None
        last = time.monotonic()
        while True:
            try:
                if listener is None or listener.is_closed():
                    listener = await asyncpg.connect(self.settings.require_database_url())
                    await listener.add_listener("ioc_catalogue", lambda *_: self._reload.set())
                try:
                    await asyncio.wait_for(self._reload.wait(), timeout=30.0)
                except asyncio.TimeoutError:
                    pass
                if time.monotonic() - last < 1.0:
                    await asyncio.sleep(1.0)
                self._reload.clear()
                last = time.monotonic()
                self._set_rules(await load_rules(listener))
            except asyncio.CancelledError:
                if listener is not None:
                    await listener.close()
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("catalogue refresh failed", extra={"error": str(exc)[:300]})
                if listener is not None:  # a broken connection is closed, not left to the GC
                    listener.terminate()
                listener = None
                await asyncio.sleep(5.0)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ingest_heartbeat_s)
            self.stats.buffered = len(self.buffer)
            try:
                async with self.pool.acquire() as conn:
                    await self.stats.report(conn)
            except Exception as exc:  # noqa: BLE001
                log.warning("heartbeat not written", extra={"error": str(exc)[:200]})

    async def run(self) -> None:
        await self._load_rules_until_ready()
        tasks = [
            asyncio.create_task(self.link.run(), name="mqtt"),
            asyncio.create_task(self._writer(), name="writer"),
            asyncio.create_task(self._rules_refresher(), name="rules"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        if self.spool is not None:
            tasks.append(asyncio.create_task(self._drainer(), name="spool"))
        log.info("ingest running", extra={"worker": self.settings.ingest_worker_id})
        await run_together(tasks)
