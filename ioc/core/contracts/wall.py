"""The walls' shared state between API nodes, and their demand for HD pictures.

- `topics.WALL_STATE` (retained): the layout in force, its version, when it takes effect,
  the pins, and the layout's document (so a node that never saw a saved layout can show it).
- `topics.WALL_ALERTS` (retained): the open alerts, as every hub shows them.
- `topics.wall_demand(node)` (retained, empty will): cameras a node's screens show large.
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


def encode_demand(hd: set[str] | frozenset[str], at: float) -> bytes:
    """Empty when the node wants nothing: the same as its will, so the topic clears."""
    return orjson.dumps({"hd": sorted(hd), "at": at}) if hd else b""


def decode_demand(payload: bytes | bytearray) -> frozenset[str]:
    if not payload:
        return frozenset()
    hd = orjson.loads(payload)["hd"]
    if not isinstance(hd, list):
        raise ValueError("hd is not a list")
    return frozenset(str(c) for c in hd)
