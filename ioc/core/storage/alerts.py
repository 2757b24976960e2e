"""The `alerts` table: open, end, list and acknowledge alerts.

Each API node watches the same broker, so each may raise the same alert: the unique index
on open alerts per (kind, source) makes that harmless (`ON CONFLICT DO NOTHING`). Each
write returns whether it changed anything, so the caller republishes the list only then.
Camera alerts follow the camera service's own event table, so an event that happened while
no API node ran still becomes an alert.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

from ioc.core.storage import audit

_OPEN_CAMERA_ALERTS = """
    INSERT INTO alerts (kind, source, severity, message_vi, message_en, details, started_at)
    SELECT 'camera', e.camera || '/' || e.kind,
           CASE WHEN e.kind IN ('offline', 'black', 'frozen') THEN 'critical' ELSE 'warning' END,
           'Camera ' || coalesce(c.name, e.camera) || ': ' || ($1::jsonb ->> e.kind),
           'Camera ' || coalesce(c.name, e.camera) || ': ' || ($2::jsonb ->> e.kind),
           jsonb_build_object('camera', e.camera, 'event', e.id, 'fault', e.kind), e.started_at
    FROM camera_events e LEFT JOIN cameras c ON c.id = e.camera
    WHERE e.ended_at IS NULL
    ON CONFLICT DO NOTHING
"""
_END_CAMERA_ALERTS = """
    UPDATE alerts a SET ended_at = coalesce(
        (SELECT max(e.ended_at) FROM camera_events e WHERE e.camera || '/' || e.kind = a.source), now())
    WHERE a.kind = 'camera' AND a.ended_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM camera_events e
                      WHERE e.ended_at IS NULL AND e.camera || '/' || e.kind = a.source)
"""
_AGENCY_REPORTS = """
    SELECT l.agency, g.name_vi, g.name_en, max(l.received_at) AS last, min(k.report_interval) AS every
    FROM kpi_latest l JOIN kpis k ON k.id = l.kpi JOIN agencies g ON g.id = l.agency
    WHERE k.report_interval IS NOT NULL AND NOT g.disabled
    GROUP BY l.agency, g.name_vi, g.name_en
"""


def _row(r: asyncpg.Record) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    details = r["details"]
    details = orjson.loads(details) if isinstance(details, (str, bytes)) else details or {}
    camera = details.get("camera") if isinstance(details, dict) else None
    area = details.get("area") if isinstance(details, dict) else None  # a KPI's alert: where (the map marks it)
    return {"id": r["id"], "kind": r["kind"], "source": r["source"], "severity": r["severity"],
            "camera": camera if isinstance(camera, str) else None, "area": area if isinstance(area, str) else None,
            "message_vi": r["message_vi"], "message_en": r["message_en"], "started_at": iso(r["started_at"]),
            "ended_at": iso(r["ended_at"]), "acked_by": r["acked_by"], "acked_at": iso(r["acked_at"])}


async def recent(conn: asyncpg.Connection, *, open_only: bool, limit: int) -> list[dict[str, Any]]:
    """Open alerts first, then the newest; as JSON-ready dicts."""
    rows = await conn.fetch(
        "SELECT * FROM alerts WHERE ($1::boolean IS FALSE OR ended_at IS NULL) "
        "ORDER BY (ended_at IS NULL) DESC, started_at DESC LIMIT $2", open_only, limit)
    return [_row(r) for r in rows]


async def open_at(conn: asyncpg.Connection, at: datetime, limit: int = 200) -> list[dict[str, Any]]:
    """The alerts open at the past instant `at` (started by then, not ended by then), newest
    first, as the wall showed them then: an acknowledgement that came later is not shown."""
    rows = await conn.fetch(
        "SELECT * FROM alerts WHERE started_at <= $1 AND (ended_at IS NULL OR ended_at > $1) "
        "ORDER BY started_at DESC LIMIT $2", at, limit)
    out = []
    for r in rows:
        row = _row(r)
        row["ended_at"] = None
        if r["acked_at"] is None or r["acked_at"] > at:
            row["acked_by"] = row["acked_at"] = None
        out.append(row)
    return out


async def acknowledge(conn: asyncpg.Connection, alert_id: int, actor: str) -> dict[str, Any] | None:
    """Mark an alert (and a camera alert's event) acknowledged, audited; None if unknown."""
    async with conn.transaction():
        r = await conn.fetchrow(
            "UPDATE alerts SET acked_by = $2, acked_at = coalesce(acked_at, now()) WHERE id = $1 RETURNING *",
            alert_id, actor)
        if r is None:
            return None
        if r["kind"] == "camera":
            await conn.execute(
                "UPDATE camera_events SET acknowledged_by = $2, acknowledged_at = now() "
                "WHERE id = ($1::jsonb ->> 'event')::bigint AND acknowledged_at IS NULL", r["details"], actor)
        await audit.record(conn, actor, "alert.acknowledged", f"alert/{alert_id}", {"kind": r["kind"], "source": r["source"]})
    return _row(r)


async def follow_camera_events(conn: asyncpg.Connection, fault_vi: dict[str, str], fault_en: dict[str, str]) -> bool:
    """Open an alert for every open camera event and end those whose events ended.

    `fault_vi`/`fault_en` name each fault kind in the messages."""
    opened = await conn.execute(_OPEN_CAMERA_ALERTS, orjson.dumps(fault_vi).decode(), orjson.dumps(fault_en).decode())
    ended = await conn.execute(_END_CAMERA_ALERTS)
    return opened != "INSERT 0 0" or ended != "UPDATE 0"


async def raise_alert(conn: asyncpg.Connection, kind: str, source: str, *, message_vi: str, message_en: str,
                      details: dict[str, Any]) -> bool:
    """Open a warning unless one of this kind and source is open already."""
    done = await conn.execute(
        "INSERT INTO alerts (kind, source, severity, message_vi, message_en, details) "
        "VALUES ($1, $2, 'warning', $3, $4, $5::jsonb) ON CONFLICT DO NOTHING",
        kind, source, message_vi, message_en, orjson.dumps(details).decode())
    return done != "INSERT 0 0"


async def end_alert(conn: asyncpg.Connection, kind: str, source: str) -> bool:
    done = await conn.execute(
        "UPDATE alerts SET ended_at = now() WHERE kind = $1 AND source = $2 AND ended_at IS NULL", kind, source)
    return done != "UPDATE 0"


async def open_sources(conn: asyncpg.Connection, kind: str) -> set[str]:
    """The sources of the open alerts of one kind (to end those whose cause went away)."""
    rows = await conn.fetch("SELECT source FROM alerts WHERE kind = $1 AND ended_at IS NULL", kind)
    return {r["source"] for r in rows}


async def agency_reports(conn: asyncpg.Connection) -> tuple[datetime, list[asyncpg.Record]]:
    """The database's now, and per enabled agency with a reporting interval: its name
    (`name_vi`), its last reading (`last`) and the shortest interval it owes (`every`)."""
    now = await conn.fetchval("SELECT now()")
    return now, await conn.fetch(_AGENCY_REPORTS)
