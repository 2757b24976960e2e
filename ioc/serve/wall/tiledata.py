"""What a tile shows, from what arrived on the broker: pure functions, easy to test.

The hub keeps the raw live messages; these turn them into the `data` of a tile message
(dashboards/PROTOCOL.md), so a page never has to know the catalogue or the camera
service's status format.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ioc.serve.wall.layout import Tile

PROBLEMS = ("offline", "black", "uniform", "frozen", "blurred", "scene_changed")


@dataclass(frozen=True)
class KpiMeta:
    id: str
    name_vi: str
    name_en: str
    unit: str
    target: float | None
    better: str
    unit_en: str = ""
    kind: str = "gauge"  # counter | gauge | ratio: a counter's reading is its period's count so far


def meta_of(definition: dict[str, Any]) -> KpiMeta:
    """What a tile shows of an indicator, from its whole definition (a `KpiDef` as JSON, as
    the audit log keeps each version of it)."""
    d = definition
    return KpiMeta(str(d["id"]), str(d["name_vi"]), str(d["name_en"]), str(d.get("unit", "")),
                   None if d.get("target") is None else float(d["target"]), str(d.get("better", "higher")),
                   str(d.get("unit_en", "")), str(d.get("kind", "gauge")))


def target_status(meta: KpiMeta | None, value: float) -> str:
    if meta is None or meta.target is None:
        return "none"
    met = value >= meta.target if meta.better == "higher" else value <= meta.target
    return "met" if met else "missed"


def trend(value: float, previous: float | None) -> str | None:
    if previous is None:
        return None
    if abs(value - previous) <= 1e-9 * max(1.0, abs(previous)):
        return "flat"
    return "up" if value > previous else "down"


def kpi_data(meta: KpiMeta | None, live: dict[str, Any], previous: float | None) -> dict[str, Any]:
    value = float(live["value"])
    return {
        "kpi": live["kpi"], "area": live["area"],
        "name_vi": meta.name_vi if meta else live["kpi"], "name_en": meta.name_en if meta else live["kpi"],
        "unit": meta.unit if meta else "", "unit_vi": meta.unit if meta else "",
        "unit_en": (meta.unit_en or meta.unit) if meta else "", "value": value, "ts": live.get("ts"),
        "target": meta.target if meta else None, "better": meta.better if meta else "higher",
        "status": target_status(meta, value), "trend": trend(value, previous), "previous": previous,
        "kind": meta.kind if meta else "gauge", "received_at": live.get("received_at"),
    }


def chart_data(tile: Tile, live: dict[str, Any] | None) -> dict[str, Any]:
    """The chart's settings and the newest live reading of its KPI (or nulls): the page loads
    the series once and puts each reading into its last bucket itself, instead of every
    reading making every page query `/series` again (dashboards/PROTOCOL.md, "chart")."""
    live = live or {}
    return {"kpi": tile.kpi, "area": tile.area, "bucket": tile.bucket, "hours": tile.hours,
            "changed_at": live.get("received_at"), "ts": live.get("ts"),
            "value": float(live["value"]) if "value" in live else None, "rev": int(live.get("rev") or 0)}


def ranking_data(tile: Tile, changed_at: Any) -> dict[str, Any]:
    """The ranking's settings and when a reading of its KPI last arrived (any unit): the page
    reloads the breakdown on a new `changed_at`, at most every few seconds, instead of
    polling (dashboards/PROTOCOL.md, "ranking")."""
    return {"kpi": tile.kpi, "area": tile.area, "level": tile.level, "period": tile.period, "top": tile.top,
            "changed_at": changed_at}


def newest_received(lives: Iterable[dict[str, Any]]) -> float | None:
    """When the newest of these live readings was received, as epoch seconds (the ingest
    sends a number; an ISO string is read too)."""
    best: float | None = None
    for live in lives:
        at = live.get("received_at")
        if isinstance(at, str):
            try:
                at = datetime.fromisoformat(at).timestamp()
            except ValueError:
                continue
        if isinstance(at, (int, float)) and (best is None or at > best):
            best = float(at)
    return best


def problems_of(status: dict[str, Any]) -> list[str]:
    out = ["offline"] if status.get("state") != "online" else []
    flags = status.get("flags") or {}
    out.extend(k for k in PROBLEMS if k != "offline" and flags.get(k))
    return out


SILENT = {"state": "offline", "healthy": False, "reason": "no status from the camera service"}
#: a camera a layout names that the registry does not know: no camera service will ever
#: report on it, so it is a fault of its own (not "offline", which an operator would chase
#: on the street)
UNKNOWN = "unknown_camera"


def camera_data(camera: str, name: str | None, status: dict[str, Any] | None, *, known: bool = True) -> dict[str, Any]:
    if not known:
        return {"camera": camera, "name": camera, "state": UNKNOWN, "online": False, "healthy": False,
                "mode": None, "fps": None, "since": None, "problems": [UNKNOWN],
                "reason": "not in the camera registry"}
    if status is None:
        # nothing heard from the camera service: never show it as healthy
        return {"camera": camera, "name": name or camera, "state": "unknown", "online": False, "healthy": False,
                "mode": None, "fps": None, "since": None, "problems": ["offline"], "reason": "no status yet"}
    online = status.get("state") == "online"
    return {
        "camera": camera, "name": name or camera, "state": status.get("state"), "online": online,
        "healthy": bool(status.get("healthy")) and online, "mode": status.get("mode"), "fps": status.get("fps"),
        "keyframe_interval_s": status.get("keyframe_interval_s"),
        "since": status.get("since"), "problems": problems_of(status), "reason": status.get("reason"),
    }


def health_summary(statuses: dict[str, dict[str, Any]], names: dict[str, str],
                   unknown: frozenset[str] = frozenset(), shown: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Every camera a camera service reports on, with its worst state (names from the registry),
    every camera the wall shows (`shown`; without a status: offline) and every one it shows
    that the registry does not know (`unknown`): a problem of its own."""
    ids = sorted(set(statuses) | unknown | shown)
    counts = {p: 0 for p in PROBLEMS if p != "offline"}
    counts[UNKNOWN] = 0
    cameras = []
    online = offline = 0
    for cam in ids:
        st = statuses.get(cam)
        probs = [UNKNOWN] if cam in unknown else problems_of(st) if st is not None else ["offline"]
        if "offline" in probs:
            offline += 1
        elif UNKNOWN not in probs:
            online += 1
        for p in probs:
            if p in counts:
                counts[p] += 1
        cameras.append({"id": cam, "name": names.get(cam, cam), "state": probs[0] if probs else "ok"})
    return {"total": len(ids), "online": online, "offline": offline, "problems": counts, "cameras": cameras}


def static_data(tile: Tile) -> dict[str, Any]:
    if tile.kind == "clock":
        return {"tz": tile.tz}
    return {"text_vi": tile.text_vi, "text_en": tile.text_en}


def map_data(tile: Tile, live: dict[str, Any] | None, health: dict[str, Any], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """A map tile's settings, when its KPI last changed (the page then asks `/breakdown`
    again, at most every few seconds: dashboards/PROTOCOL.md, "map"), the cameras' health
    and the open alerts that name a camera or an area (markers)."""
    live = live or {}
    marked = [a for a in alerts if not a.get("ended_at") and (a.get("camera") or a.get("area"))]
    return {"kpi": tile.kpi, "area": tile.area, "level": tile.level, "period": tile.period,
            "changed_at": live.get("received_at"),
            "cameras": [{"id": c["id"], "name": c["name"], "state": c["state"]} for c in health.get("cameras", [])],
            "alerts": [{k: a.get(k) for k in ("id", "severity", "camera", "area", "message_vi", "message_en", "started_at")}
                       for a in marked]}
