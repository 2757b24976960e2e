"""The ingest's durable spool: messages taken from the broker while PostgreSQL is away.

The broker keeps what it queues in memory (Mosquitto and the embedded broker save it only
every autosave), so a broker crash during a database outage would lose every reading the
ingest had not yet acknowledged. While the database is unavailable the ingest therefore
appends the messages to this spool, fsyncs, and only then acknowledges them; the broker's
queue stays empty and the backlog sits on the ingest's own disk until it is replayed.

Layout: `<dir>/<worker id>/NNNNNNNNNN.seg` segments, append-only, each record
`magic | length | crc32 | body` so a record torn by a crash mid-write is recognised and
dropped. `NNNNNNNNNN.done` beside a segment holds how far it has been replayed, so a
restart does not replay committed records again (replaying them would only count
duplicates: readings are idempotent on (kpi, area, ts)). A segment is deleted once every
record in it is committed.

Every method here blocks (file I/O and fsync): the service calls them off its loop, and
never two at once.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("ioc.ingest.spool")
UTC = timezone.utc
MAGIC = b"IOCs"
_HEADER = struct.Struct(">4sII")  # magic, body length, crc32 of the body
_BODY = struct.Struct(">qHH")  # received_at in microseconds, topic length, agency length
SEGMENT_BYTES = 16 * 1024 * 1024


class SpoolError(Exception):
    """The spool directory cannot be used; the message says which and why."""


class SpoolFull(Exception):
    """Appending would grow the spool past IOC_INGEST_SPOOL_MAX_BYTES."""


@dataclass(slots=True, frozen=True)
class SpoolRecord:
    topic: str
    agency: str | None
    payload: bytes
    received_at: datetime


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    size: int  # bytes of whole, fsynced records
    done: int  # bytes replayed and committed
    records: int  # records not yet replayed


@dataclass(slots=True, frozen=True)
class Chunk:
    """Records read from one segment, [start, end) in bytes: consumed together."""

    seq: int
    end: int
    records: list[SpoolRecord]


def encode(rec: SpoolRecord) -> bytes:
    topic = rec.topic.encode("utf-8")
    agency = (rec.agency or "").encode("utf-8")
    micros = int(rec.received_at.timestamp() * 1_000_000)
    body = _BODY.pack(micros, len(topic), len(agency)) + topic + agency + rec.payload
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def decode_all(data: bytes, max_records: int | None = None) -> tuple[list[SpoolRecord], int]:
    """The whole records at the start of `data` (at most `max_records`), and their bytes."""
    out: list[SpoolRecord] = []
    pos = 0
    end = len(data)
    while pos + _HEADER.size <= end and (max_records is None or len(out) < max_records):
        magic, length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        if magic != MAGIC or start + length > end or length < _BODY.size:
            break
        body = data[start:start + length]
        if zlib.crc32(body) != crc:
            break
        micros, tlen, alen = _BODY.unpack_from(body, 0)
        o = _BODY.size
        topic = body[o:o + tlen].decode("utf-8")
        agency = body[o + tlen:o + tlen + alen].decode("utf-8") or None
        payload = body[o + tlen + alen:]
        out.append(SpoolRecord(topic, agency, payload, datetime.fromtimestamp(micros / 1_000_000, UTC)))
        pos = start + length
    return out, pos


def prepare_dir(base: str, worker_id: str) -> Path:
    """`<base>/<worker id>`, created and proven writable, or a SpoolError saying why."""
    directory = Path(base).expanduser().resolve() / worker_id
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        with open(probe, "wb") as f:
            f.write(b"ok")
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        raise SpoolError(
            f"IOC_INGEST_SPOOL_DIR: the ingest cannot write its spool in {directory} ({exc.strerror or exc}); "
            "point IOC_INGEST_SPOOL_DIR at a writable directory on a local disk"
        ) from None
    return directory


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Append-only segments in one directory, replayed oldest first."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.segments: list[_Segment] = []
        self._open()

    # -- state -------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Records not yet replayed into the database."""
        return sum(s.records for s in self.segments)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def _open(self) -> None:
        """Take over what a previous run left, dropping a record torn by a crash."""
        for path in sorted(self.directory.glob("*.seg")):
            try:
                seq = int(path.stem)
            except ValueError:
                continue
            data = path.read_bytes()
            records, good = decode_all(data)
            if good < len(data):
                log.warning("torn spool record dropped", extra={
                    "segment": path.name, "offset": good, "bytes_dropped": len(data) - good, "records_kept": len(records)})
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            done = self._read_done(path, good)
            _, skipped_bytes = decode_all(data[:done])
            done = skipped_bytes  # a cursor inside a record would be a bug: start at a boundary
            left = len(decode_all(data[done:good])[0])
            if left == 0:
                self._remove(path)
                continue
            self.segments.append(_Segment(seq, path, good, done, left))

    @staticmethod
    def _read_done(path: Path, limit: int) -> int:
        try:
            value = int(path.with_suffix(".done").read_text(encoding="ascii").strip() or 0)
        except (OSError, ValueError):
            return 0
        return max(0, min(value, limit))

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_suffix(".done").unlink(missing_ok=True)

    # -- writing -----------------------------------------------------------------------
    def append(self, records: list[SpoolRecord]) -> None:
        """Write and fsync `records` in order; SpoolFull (nothing written) past the limit."""
        data = b"".join(encode(r) for r in records)
        if self.bytes + len(data) > self.max_bytes:
            raise SpoolFull(f"the spool holds {self.bytes} bytes; {len(data)} more would pass {self.max_bytes}")
        seg = self.segments[-1] if self.segments else None
        created = False
        if seg is None or seg.size >= self.segment_bytes:
            seq = seg.seq + 1 if seg is not None else 1
            seg = _Segment(seq, self.directory / f"{seq:010d}.seg", 0, 0, 0)
            created = True
        with open(seg.path, "ab") as f:
            if f.tell() != seg.size:  # a failed earlier write left bytes behind: cut them
                f.truncate(seg.size)
                f.seek(seg.size)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if created:
            _fsync_dir(self.directory)
            self.segments.append(seg)
        seg.size += len(data)
        seg.records += len(records)

    # -- replaying ---------------------------------------------------------------------
    def read(self, max_records: int) -> Chunk | None:
        """The next records to replay (from the oldest segment), or None if all are."""
        for seg in self.segments:
            if seg.records == 0:
                continue
            with open(seg.path, "rb") as f:
                f.seek(seg.done)
                data = f.read(seg.size - seg.done)
            records, used = decode_all(data, max_records)
            return Chunk(seg.seq, seg.done + used, records)
        return None

    def consumed(self, chunk: Chunk) -> None:
        """The chunk's rows are committed: remember it, and delete a finished segment."""
        for i, seg in enumerate(self.segments):
            if seg.seq != chunk.seq:
                continue
            seg.done = chunk.end
            seg.records -= len(chunk.records)
            if seg.records == 0 and i < len(self.segments) - 1:
                self._remove(seg.path)
                del self.segments[i]
            else:
                tmp = seg.path.with_suffix(".done.tmp")
                tmp.write_text(str(seg.done), encoding="ascii")
                os.replace(tmp, seg.path.with_suffix(".done"))
            return

    def clear_if_drained(self) -> bool:
        """Delete every segment if all is replayed: new messages may then skip the spool."""
        if self.pending:
            return False
        for seg in self.segments:
            self._remove(seg.path)
        self.segments.clear()
        _fsync_dir(self.directory)
        return True
