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
from dataclasses import dataclass
from zoneinfo import ZoneInfo
from typing import Any

import asyncpg

from ioc.core.silence import is_silent
from ioc.core.storage import alerts as alert_store
from ioc.core.storage import catalogue
from ioc.core.contracts import topics
from ioc.core.contracts import wall as wall_contract
from ioc.serve.wall.tiledata import KpiMeta, target_status

log = logging.getLogger("ioc.wall.alerts")
SHOWN = 50
UNKNOWN_CAMERA = "camera_unknown"


@dataclass(frozen=True)
class UnknownCamera:
    """A camera tile of the layout shown whose camera the registry does not have."""

    layout: str
    tile: str
    camera: str

CAMERA_TEXT = {
    "offline": ("mất tín hiệu", "offline"), "black": ("màn hình đen", "black picture"),
    "uniform": ("hình một màu", "uniform picture"), "frozen": ("hình bị đứng", "frozen picture"),
    "blurred": ("hình bị mờ", "blurred picture"), "scene_changed": ("bị xoay hoặc che", "turned or covered"),
    "recording": ("ngừng ghi hình", "recording stopped"),
}

_FAULT_VI = {k: v[0] for k, v in CAMERA_TEXT.items()}
_FAULT_EN = {k: v[1] for k, v in CAMERA_TEXT.items()}


async def recent(conn: asyncpg.Connection, *, open_only: bool = False, limit: int = SHOWN) -> list[dict[str, Any]]:
    return await alert_store.recent(conn, open_only=open_only, limit=limit)


class AlertKeeper:
    def __init__(self, pool: asyncpg.Pool, publish: Callable[[str, bytes], None],
                 show: Callable[[list[dict[str, Any]]], None], *, watched_kpis: Callable[[], set[tuple[str, str]]],
                 unknown_cameras: Callable[[], list[UnknownCamera]] = lambda: [], every_s: float = 10.0, timezone: str = "Asia/Ho_Chi_Minh") -> None:
        self.tz = ZoneInfo(timezone)
        self.pool = pool
        self.publish = publish
        self.show = show
        self.watched_kpis = watched_kpis
        self.unknown_cameras = unknown_cameras
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
            changed |= await alert_store.follow_camera_events(conn, _FAULT_VI, _FAULT_EN)
            while not self._queue.empty():
                _, (meta, live, missed) = self._queue.get_nowait()
                changed |= await self._kpi_alert(conn, meta, live, missed)
            changed |= await self._silent_agencies(conn)
            changed |= await self._unknown_cameras(conn)
        return changed

    async def _unknown_cameras(self, conn: asyncpg.Connection) -> bool:
        """A layout on the wall names a camera the registry lacks: its tile can never show a
        picture, so an operator must hear of it (one alert per camera, ended once the
        registry has it or the wall no longer shows it)."""
        changed = False
        now = {u.camera: u for u in self.unknown_cameras()}
        for cam, u in now.items():
            changed |= await alert_store.raise_alert(
                conn, UNKNOWN_CAMERA, cam,
                message_vi=f"Camera {cam} (ô {u.tile}, bố cục {u.layout}) không có trong danh mục camera",
                message_en=f"Camera {cam} (tile {u.tile}, layout {u.layout}) is not in the camera registry",
                details={"camera": cam, "tile": u.tile, "layout": u.layout})
        for cam in await alert_store.open_sources(conn, UNKNOWN_CAMERA) - now.keys():
            changed |= await alert_store.end_alert(conn, UNKNOWN_CAMERA, cam)
        return changed

    async def _kpi_alert(self, conn: asyncpg.Connection, meta: KpiMeta, live: dict[str, Any], missed: bool) -> bool:
        source = f"{live['kpi']}/{live['area']}"
        if not missed:
            return await alert_store.end_alert(conn, "kpi_target", source)
        # area names, never codes: an operator reads "Phủ Lý", not "(347)"
        area_vi, area_en = await catalogue.area_names(conn, live["area"]) or (live["area"], live["area"])
        value = float(live["value"])
        word_vi, word_en = ("dưới", "below") if meta.better == "higher" else ("trên", "above")
        target = meta.target or 0
        return await alert_store.raise_alert(
            conn, "kpi_target", source,
            message_vi=f"{meta.name_vi} ({area_vi}): {_vi(value)} {meta.unit}, {word_vi} mục tiêu {_vi(target)}",
            message_en=f"{meta.name_en} ({area_en}): {_en(value)} {meta.unit_en or meta.unit}, "
                       f"{word_en} the target of {_en(target)}",
            details={"kpi": live["kpi"], "area": live["area"], "value": value, "target": meta.target})

    async def _silent_agencies(self, conn: asyncpg.Connection) -> bool:
        changed = False
        now, reports = await alert_store.agency_reports(conn)
        for r in reports:
            silent = is_silent(r["last"], now, r["every"])
            source = r["agency"]
            if silent:
                changed |= await alert_store.raise_alert(
                    conn, "agency_silent", source,
                    message_vi=f"{r['name_vi']}: chưa gửi số liệu từ {r['last'].astimezone(self.tz).strftime('%H:%M %d/%m/%Y')}",
                    message_en=f"{r['name_en'] or r['name_vi']}: no readings since "
                               f"{r['last'].astimezone(self.tz).strftime('%H:%M %d/%m/%Y')}",
                    details={"agency": source, "last": r["last"].isoformat()})
            else:
                changed |= await alert_store.end_alert(conn, "agency_silent", source)
        return changed


def _en(x: float) -> str:
    """1234.5 -> '1,234.5': English readers' separators."""
    return f"{x:,.2f}".rstrip("0").rstrip(".")


def _vi(x: float) -> str:
    """1234.5 -> '1.234,5': the way the operators read numbers."""
    return _en(x).replace(",", "\x00").replace(".", ",").replace("\x00", ".")
