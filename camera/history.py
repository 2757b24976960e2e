"""Camera status history and events in PostgreSQL.

A status row is written at every change of state or flags; an event opens when a fault
(offline or a picture flag) appears and closes when it goes. Uptime per day is the
online time between status rows, cut at local midnight.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import asyncpg

from camera.monitor import CameraStatus
from camera.registry import Camera

log = logging.getLogger("ioc.camera")
UTC = timezone.utc


async def sync_registry(conn: asyncpg.Connection, cameras: list[Camera]) -> None:
    await conn.executemany(
        """INSERT INTO cameras (id, name, lat, lon, area, stream_url, mode, tags) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
               area = EXCLUDED.area, stream_url = EXCLUDED.stream_url, mode = EXCLUDED.mode,
               tags = EXCLUDED.tags, source = 'file', definition = NULL, updated_at = now()""",
        [(c.id, c.name, c.lat, c.lon, c.area, c.stream_url, c.mode, list(c.tags)) for c in cameras],
    )


def faults(status: CameraStatus) -> set[str]:
    if status.state == "offline":
        return {"offline"}
    return {k for k, v in status.flags.items() if v}


async def record(conn: asyncpg.Connection, status: CameraStatus, previous: set[str]) -> set[str]:
    """Store one change; returns the faults now open (feed it back as `previous`)."""
    now = datetime.fromtimestamp(status.since, UTC)
    current = faults(status) if status.state != "starting" else set()
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO camera_status_log (camera, at, state, healthy, flags, reason) VALUES ($1,$2,$3,$4,$5,$6)
               ON CONFLICT (camera, at) DO NOTHING""",
            status.camera_id, now, status.state, status.healthy, sorted(current), status.reason,
        )
        for kind in sorted(current - previous):
            await conn.execute(
                "INSERT INTO camera_events (camera, kind, started_at, details) VALUES ($1, $2, $3, $4::jsonb)",
                status.camera_id, kind, now, f'{{"reason": {_json(status.reason)}}}',
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


def _json(value: object) -> str:
    import orjson

    return orjson.dumps(value).decode()
