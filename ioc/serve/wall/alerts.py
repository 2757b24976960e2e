"""Alerts for the wall: camera faults, KPIs below target, agencies that went quiet.

Each API node watches the same broker, so each may raise the same alert: PostgreSQL's
unique index on open alerts per (kind, source) makes that harmless (`ON CONFLICT DO
NOTHING`). Whoever changes something publishes the fresh list, retained, on
`ioc/v1/wall/alerts`; every hub shows what that topic says. Camera alerts follow the
camera service's own event table, so an event that happened while no API node ran still
becomes an alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from typing import Any

import asyncpg
import orjson

from ioc.core.storage import audit
from ioc.core.contracts import topics
from ioc.core.contracts import wall as wall_contract
from ioc.serve.wall.tiledata import KpiMeta, target_status

log = logging.getLogger("ioc.wall.alerts")
SHOWN = 50

CAMERA_TEXT = {
    "offline": ("mất tín hiệu", "offline"), "black": ("màn hình đen", "black picture"),
    "uniform": ("hình một màu", "uniform picture"), "frozen": ("hình bị đứng", "frozen picture"),
    "blurred": ("hình bị mờ", "blurred picture"), "scene_changed": ("bị xoay hoặc che", "turned or covered"),
}

_OPEN_CAMERA_ALERTS = """
    INSERT INTO alerts (kind, source, severity, message_vi, message_en, details, started_at)
    SELECT 'camera', e.camera || '/' || e.kind,
           CASE WHEN e.kind IN ('offline', 'black', 'frozen') THEN 'critical' ELSE 'warning' END,
           'Camera ' || coalesce(c.name, e.camera) || ': ' || ($1::jsonb ->> e.kind),
           'Camera ' || e.camera || ': ' || ($2::jsonb ->> e.kind),
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
_CAMERA_VI = orjson.dumps({k: v[0] for k, v in CAMERA_TEXT.items()}).decode()
_CAMERA_EN = orjson.dumps({k: v[1] for k, v in CAMERA_TEXT.items()}).decode()

_SILENT = """
    SELECT l.agency, g.name_vi, max(l.received_at) AS last, min(k.report_interval) AS every
    FROM kpi_latest l JOIN kpis k ON k.id = l.kpi JOIN agencies g ON g.id = l.agency
    WHERE k.report_interval IS NOT NULL AND NOT g.disabled
    GROUP BY l.agency, g.name_vi
"""


def _row(r: asyncpg.Record) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {"id": r["id"], "kind": r["kind"], "source": r["source"], "severity": r["severity"],
            "message_vi": r["message_vi"], "message_en": r["message_en"], "started_at": iso(r["started_at"]),
            "ended_at": iso(r["ended_at"]), "acked_by": r["acked_by"], "acked_at": iso(r["acked_at"])}


async def recent(conn: asyncpg.Connection, *, open_only: bool = False, limit: int = SHOWN) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM alerts WHERE ($1::boolean IS FALSE OR ended_at IS NULL) "
        "ORDER BY (ended_at IS NULL) DESC, started_at DESC LIMIT $2", open_only, limit)
    return [_row(r) for r in rows]


async def acknowledge(conn: asyncpg.Connection, alert_id: int, actor: str) -> dict[str, Any] | None:
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


class AlertKeeper:
    def __init__(self, pool: asyncpg.Pool, publish: Callable[[str, bytes], None],
                 show: Callable[[list[dict[str, Any]]], None], *, watched_kpis: Callable[[], set[tuple[str, str]]],
                 every_s: float = 10.0, timezone: str = "Asia/Ho_Chi_Minh") -> None:
        self.tz = ZoneInfo(timezone)
        self.pool = pool
        self.publish = publish
        self.show = show
        self.watched_kpis = watched_kpis
        self.every_s = every_s
        self._kpi_missed: dict[tuple[str, str], bool] = {}
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=10_000)
        self._wake = asyncio.Event()

    # called by the hub for every live message: cheap, and only a change is queued
    def on_kpi(self, meta: KpiMeta | None, live: dict[str, Any]) -> None:
        source = (str(live.get("kpi")), str(live.get("area")))
        if meta is None or meta.target is None or source not in self.watched_kpis():
            return
        missed = target_status(meta, float(live["value"])) == "missed"
        if self._kpi_missed.get(source) == missed:
            return
        self._kpi_missed[source] = missed
        self._put(("kpi", (meta, live, missed)))

    def on_camera_event(self, event: dict[str, Any]) -> None:
        self._wake.set()

    def _put(self, item: tuple[str, Any]) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            log.error("alert queue full, dropping a KPI status change", extra={"item": str(item[1])[:100]})
        self._wake.set()

    async def refresh(self) -> None:
        async with self.pool.acquire() as conn:
            alerts = await recent(conn)
        self.show(alerts)
        self.publish(topics.WALL_ALERTS, wall_contract.encode_alerts(alerts))

    async def run(self) -> None:
        first = True
        while True:
            try:
                changed = await self._cycle()
                if changed or first:
                    await self.refresh()
                    first = False
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("alerts not updated, retrying", extra={"error": str(exc)[:200]})
            try:
                await asyncio.wait_for(self._wake.wait(), self.every_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _cycle(self) -> bool:
        changed = False
        async with self.pool.acquire() as conn:
            changed |= (await conn.execute(_OPEN_CAMERA_ALERTS, _CAMERA_VI, _CAMERA_EN)) != "INSERT 0 0"
            changed |= (await conn.execute(_END_CAMERA_ALERTS)) != "UPDATE 0"
            while not self._queue.empty():
                _, (meta, live, missed) = self._queue.get_nowait()
                changed |= await self._kpi_alert(conn, meta, live, missed)
            changed |= await self._silent_agencies(conn)
        return changed

    async def _kpi_alert(self, conn: asyncpg.Connection, meta: KpiMeta, live: dict[str, Any], missed: bool) -> bool:
        source = f"{live['kpi']}/{live['area']}"
        if not missed:
            done = await conn.execute("UPDATE alerts SET ended_at = now() WHERE kind = 'kpi_target' AND source = $1 "
                                      "AND ended_at IS NULL", source)
            return done != "UPDATE 0"
        area = await conn.fetchval("SELECT name_vi FROM areas WHERE code = $1", live["area"]) or live["area"]
        value = float(live["value"])
        word = "dưới" if meta.better == "higher" else "trên"
        done = await conn.execute(
            "INSERT INTO alerts (kind, source, severity, message_vi, message_en, details) "
            "VALUES ('kpi_target', $1, 'warning', $2, $3, $4::jsonb) ON CONFLICT DO NOTHING",
            source, f"{meta.name_vi} ({area}): {_vi(value)} {meta.unit}, {word} mục tiêu {_vi(meta.target or 0)}",
            f"{meta.name_en} ({live['area']}): {value:g}, target {meta.target:g} not met",
            orjson.dumps({"kpi": live["kpi"], "area": live["area"], "value": value, "target": meta.target}).decode())
        return done != "INSERT 0 0"

    async def _silent_agencies(self, conn: asyncpg.Connection) -> bool:
        changed = False
        now = await conn.fetchval("SELECT now()")
        for r in await conn.fetch(_SILENT):
            grace = max(r["every"] * 0.5, timedelta(seconds=60))
            silent = now - r["last"] > r["every"] + grace
            source = r["agency"]
            if silent:
                done = await conn.execute(
                    "INSERT INTO alerts (kind, source, severity, message_vi, message_en, details) "
                    "VALUES ('agency_silent', $1, 'warning', $2, $3, $4::jsonb) ON CONFLICT DO NOTHING",
                    source, f"{r['name_vi']}: chưa gửi số liệu từ {r['last'].astimezone(self.tz).strftime('%H:%M %d/%m/%Y')}",
                    f"{source}: no readings since {r['last'].isoformat(timespec='minutes')}",
                    orjson.dumps({"agency": source, "last": r["last"].isoformat()}).decode())
                changed |= done != "INSERT 0 0"
            else:
                done = await conn.execute("UPDATE alerts SET ended_at = now() WHERE kind = 'agency_silent' "
                                          "AND source = $1 AND ended_at IS NULL", source)
                changed |= done != "UPDATE 0"
        return changed


def _vi(x: float) -> str:
    """1234.5 -> '1.234,5': the way the operators read numbers."""
    text = f"{x:,.2f}".rstrip("0").rstrip(".")
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
