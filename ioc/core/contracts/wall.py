"""The walls' shared state between API nodes, and their demand for HD pictures.

- `topics.WALL_STATE` (retained): the layout in force, its version, when it takes effect,
  the pins, the layout's document (so a node that never saw a saved layout can show it),
  and the replay the screens show instead of live, if any (`Replay`), with the wall as it
  was at the replay's instant (`past`, as `GET /wall/at` gives it for the whole wall, plus
  each screen's part), so the screens start showing the past without asking for it first.
- `topics.WALL_ALERTS` (retained): the open alerts, as every hub shows them.
- `topics.wall_demand(node)` (retained, empty will): cameras a node's screens show large, and
  those whose video they play, per stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Replay:
    """The wall showing the past: at server time `at` it shows instant `t` (epoch seconds,
    UTC), and from then on `t + (now - at) * speed` unless paused. Every screen computes the
    instant from these four numbers and its hub's clock, so all nine move together."""

    t: float
    at: float
    speed: float = 1.0
    paused: bool = False
    by: str = ""

    def position(self, now: float) -> float:
        return self.t if self.paused or now < self.at else self.t + (now - self.at) * self.speed

    def as_dict(self) -> dict[str, Any]:
        return {"t": self.t, "at": self.at, "speed": self.speed, "paused": self.paused, "by": self.by}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Replay:
        return cls(float(doc["t"]), float(doc["at"]), float(doc.get("speed", 1.0)), bool(doc.get("paused", False)),
                   str(doc.get("by", "")))


@dataclass(frozen=True)
class WallState:
    layout: str
    version: int
    at: float
    pins: dict[str, str] = field(default_factory=dict)
    replay: Replay | None = None
    #: the wall at `replay.t` for the screens (not stored: a node that loads the state from
    #: the database has none, and its screens ask `/wall/at` as they do every few seconds)
    past: dict[str, Any] | None = field(default=None, compare=False, repr=False)


def encode_state(state: WallState, layout_doc: dict[str, Any] | None) -> bytes:
    return orjson.dumps({"layout": state.layout, "version": state.version, "at": state.at,
                         "pins": state.pins, "layout_doc": layout_doc,
                         "replay": state.replay.as_dict() if state.replay else None,
                         "past": state.past if state.replay else None})


def decode_state(payload: bytes | bytearray) -> tuple[WallState, dict[str, Any] | None]:
    doc = orjson.loads(payload)
    replay = doc.get("replay")  # nodes of an earlier version send none: live
    past = doc.get("past")
    state = WallState(str(doc["layout"]), int(doc["version"]), float(doc["at"]),
                      {str(k): str(v) for k, v in (doc.get("pins") or {}).items()},
                      Replay.from_dict(replay) if isinstance(replay, dict) else None,
                      past if isinstance(replay, dict) and isinstance(past, dict) else None)
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
