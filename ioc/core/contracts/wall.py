"""The walls' shared state between API nodes, and their demand for HD pictures.

- `topics.WALL_STATE` (retained): the layout in force, its version, when it takes effect,
  the pins, and the layout's document (so a node that never saw a saved layout can show it).
- `topics.WALL_ALERTS` (retained): the open alerts, as every hub shows them.
- `topics.wall_demand(node)` (retained, empty will): cameras a node's screens show large, and
  those whose video they play, per stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class WallState:
    layout: str
    version: int
    at: float
    pins: dict[str, str] = field(default_factory=dict)


def encode_state(state: WallState, layout_doc: dict[str, Any] | None) -> bytes:
    return orjson.dumps({"layout": state.layout, "version": state.version, "at": state.at,
                         "pins": state.pins, "layout_doc": layout_doc})


def decode_state(payload: bytes | bytearray) -> tuple[WallState, dict[str, Any] | None]:
    doc = orjson.loads(payload)
    state = WallState(str(doc["layout"]), int(doc["version"]), float(doc["at"]),
                      {str(k): str(v) for k, v in (doc.get("pins") or {}).items()})
    return state, doc.get("layout_doc") or None


def encode_alerts(alerts: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"alerts": alerts})


def decode_alerts(payload: bytes | bytearray) -> list[dict[str, Any]]:
    alerts = orjson.loads(payload)["alerts"]
    if not isinstance(alerts, list):
        raise ValueError("alerts is not a list")
    return alerts


@dataclass(frozen=True)
class Demand:
    """What one API node's clients show: cameras large enough for HD tiles, and the cameras
    whose video they play live, per stream (main for large tiles, sub for small ones)."""

    hd: frozenset[str] = frozenset()
    video_main: frozenset[str] = frozenset()
    video_sub: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.hd or self.video_main or self.video_sub)


def encode_demand(demand: Demand, at: float) -> bytes:
    """Empty when the node wants nothing: the same as its will, so the topic clears."""
    if not demand:
        return b""
    return orjson.dumps({"hd": sorted(demand.hd), "at": at,
                         "video": {"main": sorted(demand.video_main), "sub": sorted(demand.video_sub)}})


def decode_demand(payload: bytes | bytearray) -> Demand:
    if not payload:
        return Demand()
    doc = orjson.loads(payload)
    video = doc.get("video") or {}  # nodes of an earlier version ask for HD tiles only
    parts = (doc["hd"], video.get("main", []), video.get("sub", []))
    if not all(isinstance(p, list) for p in parts):
        raise ValueError("demand lists are not lists")
    return Demand(*(frozenset(str(c) for c in p) for p in parts))
