"""The recordings' index: per-camera modes, segments, kept (evidence) spans, retention.

The files are the truth about what exists and the index is how it is found: a segment row
is written only after its file was renamed into place, and retention deletes the row first
(`DELETE ... RETURNING path`) and the file after, so two processes never delete one file
twice and a row never points at a file that was removed on purpose. A segment is `kept`
while any kept span overlaps it; retention never touches a kept segment.

A segment is of the camera's `main` stream or its `sub`-stream. Seeking and listing are per
stream (main unless asked); keeping and retention are per camera, so both streams of a span
are kept, or deleted, together. Exports and event clips read the main stream only.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg

from ioc.core.contracts.video_frame import STREAMS, Stream
from ioc.core.storage import audit

UTC = timezone.utc
_OVERLAPS_KEPT = """EXISTS (SELECT 1 FROM recording_kept k WHERE k.camera = s.camera
                            AND k.started_at < s.ended_at AND k.ended_at > s.started_at)"""


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


async def modes(conn: asyncpg.Connection) -> dict[str, str]:
    """Camera id -> recording mode, for the cameras an admin set one for (the rest are off)."""
    return {r["camera"]: r["mode"] for r in await conn.fetch("SELECT camera, mode FROM camera_recording")}


async def mode_of(conn: asyncpg.Connection, camera: str) -> dict[str, Any]:
    r = await conn.fetchrow("SELECT mode, changed_by, changed_at FROM camera_recording WHERE camera = $1", camera)
    return dict(r) if r else {"mode": "off", "changed_by": None, "changed_at": None}


async def set_mode(conn: asyncpg.Connection, camera: str, mode: str, actor: str) -> None:
    async with conn.transaction():
        before = await conn.fetchval("SELECT mode FROM camera_recording WHERE camera = $1 FOR UPDATE", camera)
        await conn.execute(
            """INSERT INTO camera_recording (camera, mode, changed_by) VALUES ($1, $2, $3)
               ON CONFLICT (camera) DO UPDATE SET mode = EXCLUDED.mode, changed_by = EXCLUDED.changed_by,
                   changed_at = now()""", camera, mode, actor)
        await audit.record(conn, actor, "camera.recording_mode", camera, {"mode": mode, "before": before or "off"})


async def add_segments(conn: asyncpg.Connection, rows: list[tuple[str, float, float, int, str]],
                       stream: Stream = "main") -> None:
    """(camera, start, end, bytes, relative path) of closed segments of one stream; one
    indexed twice stays once."""
    await conn.executemany(
        """INSERT INTO recording_segments (camera, started_at, ended_at, bytes, path, stream, kept)
           SELECT $1, $2, $3, $4, $5, $6, EXISTS (SELECT 1 FROM recording_kept k WHERE k.camera = $1
                                                  AND k.started_at < $3 AND k.ended_at > $2)
           ON CONFLICT (path) DO NOTHING""",
        [(cam, _at(start), _at(end), size, path, stream) for cam, start, end, size, path in rows])


async def indexed_paths(conn: asyncpg.Connection, paths: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT path FROM recording_segments WHERE path = ANY($1::text[])", paths)
    return {r["path"] for r in rows}


async def segments(conn: asyncpg.Connection, camera: str, start: datetime, end: datetime,
                   limit: int, stream: Stream = "main") -> list[dict[str, Any]]:
    """Segments of one stream that overlap [start, end), oldest first."""
    rows = await conn.fetch(
        """SELECT id, started_at, ended_at, bytes, kept, path, stream FROM recording_segments
            WHERE camera = $1 AND stream = $5 AND started_at < $3 AND ended_at > $2
              AND started_at >= $2 - interval '10 minutes'
            ORDER BY started_at LIMIT $4""", camera, start, end, limit, stream)
    return [dict(r) for r in rows]


_AROUND = """
    SELECT c.camera, st.stream, r.id, r.started_at, r.ended_at, r.bytes, r.kept, r.path
      FROM unnest($1::text[]) AS c(camera)
     CROSS JOIN unnest($4::text[]) AS st(stream)
     CROSS JOIN LATERAL (
           (SELECT id, started_at, ended_at, bytes, kept, path FROM recording_segments
             WHERE camera = c.camera AND stream = st.stream AND started_at <= $2
             ORDER BY started_at DESC LIMIT 1)
           UNION ALL
           (SELECT id, started_at, ended_at, bytes, kept, path FROM recording_segments
             WHERE camera = c.camera AND stream = st.stream AND started_at > $2
             ORDER BY started_at LIMIT $3)) AS r"""


async def around(conn: asyncpg.Connection, cameras: list[str], at: datetime, following: int = 2,
                 within_s: float = 300, streams: tuple[Stream, ...] = STREAMS) -> dict[tuple[str, Stream], dict[str, Any]]:
    """For every camera and stream at once: the segment that holds `at` (`segment`, or None:
    a gap), up to `following` segments that start within `within_s` of its end, and the
    gap's edges (`before`: the last recorded time before `at`, `after`: the first after).
    A camera and stream never recorded is absent.

    One query for a whole wall, where a per-camera lookup of the segment, the ones after it
    and the gap's edges made a replay's start wait on forty round trips. A stream's segments
    never overlap, so the last one starting at or before `at` either holds it or ended
    before it."""
    rows = await conn.fetch(_AROUND, sorted(set(cameras)), at, following + 1, list(streams))
    out: dict[tuple[str, Stream], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: (r["camera"], r["stream"], r["started_at"])):
        one = out.setdefault((r["camera"], r["stream"]),
                             {"segment": None, "following": [], "before": None, "after": None})
        seg = {k: r[k] for k in ("id", "started_at", "ended_at", "bytes", "kept", "path", "stream")}
        if r["started_at"] <= at:
            if r["ended_at"] > at:
                one["segment"] = seg
            else:
                one["before"] = r["ended_at"]
            continue
        one["after"] = one["after"] or r["started_at"]
        held = one["segment"]
        if held is not None and len(one["following"]) < following and r["ended_at"] > held["ended_at"] \
                and (r["started_at"] - held["ended_at"]).total_seconds() < within_s:
            one["following"].append(seg)
    return out


async def nearest(conn: asyncpg.Connection, camera: str, at: datetime,
                  stream: Stream = "main") -> tuple[datetime | None, datetime | None]:
    """The last recorded time of a stream before `at` and the first after it (either may be None)."""
    before = await conn.fetchval(
        "SELECT ended_at FROM recording_segments WHERE camera = $1 AND stream = $3 AND ended_at <= $2 "
        "ORDER BY ended_at DESC LIMIT 1", camera, at, stream)
    after = await conn.fetchval(
        "SELECT started_at FROM recording_segments WHERE camera = $1 AND stream = $3 AND started_at >= $2 "
        "ORDER BY started_at LIMIT 1", camera, at, stream)
    return before, after


async def segment(conn: asyncpg.Connection, segment_id: int) -> dict[str, Any] | None:
    r = await conn.fetchrow("SELECT id, camera, started_at, ended_at, bytes, kept, path, stream "
                            "FROM recording_segments WHERE id = $1", segment_id)
    return dict(r) if r else None


async def keep(conn: asyncpg.Connection, camera: str, start: datetime, end: datetime, reason: str,
               actor: str) -> int:
    """Keep [start, end) of a camera as evidence; audited with who did it."""
    async with conn.transaction():
        span_id: int = await conn.fetchval(
            "INSERT INTO recording_kept (camera, started_at, ended_at, reason, kept_by) VALUES ($1,$2,$3,$4,$5) "
            "RETURNING id", camera, start, end, reason, actor)
        n = await conn.execute("UPDATE recording_segments SET kept = true WHERE camera = $1 AND started_at < $3 "
                               "AND ended_at > $2", camera, start, end)
        await audit.record(conn, actor, "recording.kept", f"camera/{camera}", {
            "span": span_id, "start": start.isoformat(), "end": end.isoformat(), "reason": reason,
            "segments": int(n.split()[-1])})
    return span_id


async def release(conn: asyncpg.Connection, span_id: int, actor: str) -> bool:
    """Stop keeping a span (retention may then delete what no other span keeps); audited."""
    async with conn.transaction():
        r = await conn.fetchrow("DELETE FROM recording_kept WHERE id = $1 RETURNING camera, started_at, ended_at",
                                span_id)
        if r is None:
            return False
        await conn.execute(
            f"""UPDATE recording_segments s SET kept = {_OVERLAPS_KEPT}
                 WHERE camera = $1 AND started_at < $3 AND ended_at > $2""", r["camera"], r["started_at"], r["ended_at"])
        await audit.record(conn, actor, "recording.released", f"camera/{r['camera']}", {
            "span": span_id, "start": r["started_at"].isoformat(), "end": r["ended_at"].isoformat()})
    return True


async def kept_spans(conn: asyncpg.Connection, camera: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, started_at, ended_at, reason, kept_by, kept_at FROM recording_kept "
                            "WHERE camera = $1 ORDER BY started_at", camera)
    return [dict(r) for r in rows]


async def expire(conn: asyncpg.Connection, before: datetime, batch: int = 5000) -> list[str]:
    """Unindex up to `batch` segments (not kept) that ended before `before`; their paths."""
    rows = await conn.fetch(
        """DELETE FROM recording_segments WHERE id IN (
               SELECT id FROM recording_segments WHERE NOT kept AND ended_at < $1 ORDER BY started_at LIMIT $2)
           RETURNING path""", before, batch)
    return [r["path"] for r in rows]


async def total_bytes(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(sum(bytes), 0) FROM recording_segments"))


async def over_quota(conn: asyncpg.Connection, quota: int, batch: int = 5000) -> list[str]:
    """Unindex the oldest segments that are not kept until the total fits `quota` (at most
    `batch` at a time); their paths."""
    rows = await conn.fetch(
        """WITH total AS (SELECT coalesce(sum(bytes), 0) AS t FROM recording_segments),
                oldest AS (SELECT id, bytes, sum(bytes) OVER (ORDER BY started_at, id) AS upto
                             FROM recording_segments WHERE NOT kept ORDER BY started_at, id LIMIT $2)
           DELETE FROM recording_segments s USING oldest, total
            WHERE s.id = oldest.id AND oldest.upto - oldest.bytes < total.t - $1
           RETURNING s.path""", quota, batch)
    return [r["path"] for r in rows]


async def bytes_per_camera_day(conn: asyncpg.Connection, days: int) -> list[dict[str, Any]]:
    """Disk used per camera and UTC day, newest first (the README's sizing figure comes from it)."""
    rows = await conn.fetch(
        """SELECT camera, (started_at AT TIME ZONE 'UTC')::date AS day, sum(bytes) AS bytes,
                  sum(extract(epoch FROM ended_at - started_at)) AS seconds
             FROM recording_segments WHERE started_at > now() - make_interval(days => $1)
            GROUP BY 1, 2 ORDER BY 2 DESC, 1""", days)
    return [dict(r) for r in rows]
