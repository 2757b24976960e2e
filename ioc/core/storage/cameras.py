"""The cameras' tables: the registry as stored, API-added cameras, status history, events.

The registry file stays the way to declare a province's cameras in bulk; the API is for
the one added on a Tuesday afternoon. Both end up as `Camera` objects, validated by the
same model, and a file camera always wins over an API one with the same id.

Status history: a row at every change of state or flags; an event opens when a fault
(offline or a picture flag) appears and closes when it goes. Uptime per day is the
online time between status rows, cut at local midnight.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg
import orjson
from pydantic import ValidationError

from ioc.core.cameras import Camera, RegistryError
from ioc.core.contracts.camera import CameraStatus
from ioc.core.storage import audit


UTC = timezone.utc


class CameraConflict(ValueError):
    """The change cannot be made (exists already, or belongs to the registry file)."""


def definition(cam: Camera) -> str:
    doc: dict[str, Any] = cam.model_dump(mode="json", exclude={"password"})
    if cam.password is not None:
        doc["password"] = cam.password.get_secret_value()
    return orjson.dumps(doc).decode()


def parse_camera(doc: dict[str, Any]) -> Camera:
    try:
        cam = Camera(**doc)
        _ = cam.mode
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RegistryError(f"{'.'.join(str(p) for p in err['loc']) or 'camera'}: {err['msg']}") from None
    return cam


async def api_cameras(conn: asyncpg.Connection) -> list[Camera]:
    rows = await conn.fetch("SELECT definition FROM cameras WHERE source = 'api' ORDER BY id")
    return [parse_camera(orjson.loads(r["definition"])) for r in rows]


async def put_camera(conn: asyncpg.Connection, cam: Camera, actor: str, *, create: bool) -> None:
    async with conn.transaction():
        source = await conn.fetchval("SELECT source FROM cameras WHERE id = $1 FOR UPDATE", cam.id)
        if source == "file":
            raise CameraConflict(f"camera {cam.id!r} comes from the registry file: change it there")
        if create and source is not None:
            raise CameraConflict(f"camera {cam.id!r} exists already")
        if not create and source is None:
            raise LookupError(cam.id)
        await conn.execute(
            """INSERT INTO cameras (id, name, lat, lon, area, stream_url, mode, tags, source, definition)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'api', $9::jsonb)
               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
                   area = EXCLUDED.area, stream_url = EXCLUDED.stream_url, mode = EXCLUDED.mode,
                   tags = EXCLUDED.tags, definition = EXCLUDED.definition, updated_at = now()""",
            cam.id, cam.name, cam.lat, cam.lon, cam.area, cam.stream_url, cam.mode, list(cam.tags), definition(cam),
        )
        await audit.record(conn, actor, "camera.added" if create else "camera.changed", cam.id,
                    {"stream_url": cam.stream_url, "mode": cam.mode})


async def delete_camera(conn: asyncpg.Connection, camera_id: str, actor: str) -> None:
    async with conn.transaction():
        source = await conn.fetchval("SELECT source FROM cameras WHERE id = $1 FOR UPDATE", camera_id)
        if source is None:
            raise LookupError(camera_id)
        if source == "file":
            raise CameraConflict(f"camera {camera_id!r} comes from the registry file: remove it there")
        await conn.execute("DELETE FROM cameras WHERE id = $1", camera_id)
        await audit.record(conn, actor, "camera.removed", camera_id, {})


async def sync_registry(conn: asyncpg.Connection, cameras: list[Camera]) -> None:
    await conn.executemany(
        """INSERT INTO cameras (id, name, lat, lon, area, stream_url, mode, tags) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
               area = EXCLUDED.area, stream_url = EXCLUDED.stream_url, mode = EXCLUDED.mode,
               tags = EXCLUDED.tags, source = 'file', definition = NULL, updated_at = now()""",
        [(c.id, c.name, c.lat, c.lon, c.area, c.stream_url, c.mode, list(c.tags)) for c in cameras],
    )


async def record_status(conn: asyncpg.Connection, status: CameraStatus, previous: set[str]) -> set[str]:
    """Store one change; returns the faults now open (feed it back as `previous`)."""
    now = datetime.fromtimestamp(status.since, UTC)
    current = status.faults()
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO camera_status_log (camera, at, state, healthy, flags, reason) VALUES ($1,$2,$3,$4,$5,$6)
               ON CONFLICT (camera, at) DO NOTHING""",
            status.camera_id, now, status.state, status.healthy, sorted(current), status.reason,
        )
        for kind in sorted(current - previous):
            await conn.execute(
                "INSERT INTO camera_events (camera, kind, started_at, details) VALUES ($1, $2, $3, $4::jsonb)",
                status.camera_id, kind, now,
                orjson.dumps({"reason": status.recording_reason if kind == "recording" else status.reason}).decode(),
            )
        for kind in sorted(previous - current):
            await conn.execute(
                "UPDATE camera_events SET ended_at = $3 WHERE camera = $1 AND kind = $2 AND ended_at IS NULL",
                status.camera_id, kind, now,
            )
    return current


async def close_open_events(conn: asyncpg.Connection, camera_ids: list[str]) -> None:
    """At start: events left open by a previous run cannot be trusted to still hold."""
    await conn.execute("UPDATE camera_events SET ended_at = now() WHERE camera = ANY($1::text[]) AND ended_at IS NULL",
                       camera_ids)


async def uptime_per_day(conn: asyncpg.Connection, camera: str, start: datetime, end: datetime,
                         tz: str) -> list[dict[str, object]]:
    rows = await conn.fetch(
        """WITH spans AS (
               SELECT at AS s, coalesce(lead(at) OVER (ORDER BY at), least(now(), $3)) AS e, state
                 FROM camera_status_log WHERE camera = $1 AND at < $3
                  AND at >= coalesce((SELECT max(at) FROM camera_status_log WHERE camera = $1 AND at <= $2), $2)
           ), days AS (
               SELECT d AS day_start, d + interval '1 day' AS day_end
                 FROM generate_series(date_trunc('day', $2::timestamptz, $4), $3::timestamptz - interval '1 microsecond',
                                      interval '1 day') AS d
           )
           SELECT days.day_start,
                  coalesce(sum(extract(epoch FROM least(e, day_end) - greatest(s, day_start)))
                           FILTER (WHERE state = 'online'), 0) AS online_s,
                  coalesce(sum(extract(epoch FROM least(e, day_end) - greatest(s, day_start))), 0) AS known_s
             FROM days LEFT JOIN spans ON spans.s < days.day_end AND spans.e > days.day_start
                  AND greatest(spans.s, $2) < least(spans.e, $3)
            GROUP BY days.day_start ORDER BY days.day_start""",
        camera, start, end, tz,
    )
    return [{"day": r["day_start"], "online_s": float(r["online_s"]), "known_s": float(r["known_s"]),
             "uptime": (float(r["online_s"]) / float(r["known_s"])) if r["known_s"] else None} for r in rows]



async def camera_exists(conn: asyncpg.Connection, camera_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM cameras WHERE id = $1", camera_id))


async def camera_names(conn: asyncpg.Connection) -> dict[str, str]:
    """Camera id -> display name, for labels on the wall."""
    return {r["id"]: r["name"] for r in await conn.fetch("SELECT id, name FROM cameras")}


async def cameras_with_status(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every camera with its latest status row (credentials are never stored here)."""
    rows = await conn.fetch(
        """SELECT c.id, c.name, c.lat, c.lon, c.area, c.stream_url, c.mode, c.tags, c.source,
                  s.state, s.healthy, s.flags, s.reason, s.at AS status_since
             FROM cameras c LEFT JOIN LATERAL (
                  SELECT * FROM camera_status_log l WHERE l.camera = c.id ORDER BY at DESC LIMIT 1) s ON true
            ORDER BY c.id"""
    )
    return [dict(r) for r in rows]


async def status_history(conn: asyncpg.Connection, camera_id: str, start: datetime, end: datetime,
                         limit: int) -> list[dict[str, Any]]:
    """Status rows in [start, end), newest first."""
    rows = await conn.fetch(
        """SELECT at, state, healthy, flags, reason FROM camera_status_log
            WHERE camera = $1 AND at >= $2 AND at < $3 ORDER BY at DESC LIMIT $4""",
        camera_id, start, end, limit,
    )
    return [dict(r) for r in rows]


async def events(conn: asyncpg.Connection, camera_id: str, *, open_only: bool, limit: int) -> list[dict[str, Any]]:
    """Fault events, newest first; `details` as JSON text."""
    rows = await conn.fetch(
        """SELECT id, kind, started_at, ended_at, details::text AS details, acknowledged_by, acknowledged_at
             FROM camera_events WHERE camera = $1 AND (NOT $2 OR ended_at IS NULL)
            ORDER BY started_at DESC LIMIT $3""",
        camera_id, open_only, limit,
    )
    return [dict(r) for r in rows]


async def faults_begun(conn: asyncpg.Connection, start: datetime, end: datetime) -> dict[str, int]:
    """Camera id -> how many fault events began in [start, end) (the monthly report's table)."""
    rows = await conn.fetch(
        "SELECT camera, count(*) AS n FROM camera_events WHERE started_at >= $1 AND started_at < $2 GROUP BY camera",
        start, end)
    return {r["camera"]: int(r["n"]) for r in rows}
