"""What the camera service says about a camera, and what operators tell it.

- status, retained on `topics.live_camera(id, "status")`: `CameraStatus.as_dict()`; an empty
  payload means the camera left the registry.
- events, on `topics.live_camera(id, "event")`: a fault starting or ending.
- reference command, on `topics.camera_reference(id)`: the payload is the operator's name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import orjson

CameraState = Literal["starting", "online", "offline"]


@dataclass
class CameraStatus:
    camera_id: str
    state: str = "starting"  # starting | online | offline
    reason: str | None = None
    mode: str = ""
    fps: float = 0.0
    keyframe_interval_s: float | None = None
    width: int = 0
    height: int = 0
    last_frame_at: float | None = None
    motion: float = 0.0
    flags: dict[str, bool] = field(default_factory=dict)
    # the codec forwarded as live video ("h264"), or None with the reason (e.g. an H.265
    # camera: browsers cannot decode it, the wall shows its snapshots)
    video: str | None = None
    video_reason: str | None = None
    # recording: "off", "continuous", "events" (the mode, working) or "stopped" with the
    # reason (disk full, the quota taken by kept evidence): a fault of its own, which does not
    # make the picture unhealthy
    recording: str = "off"
    recording_reason: str | None = None
    since: float = field(default_factory=time.time)

    @property
    def healthy(self) -> bool:
        return self.state == "online" and not any(self.flags.values())

    def faults(self) -> set[str]:
        """What is wrong now: {"offline"} or the picture flags raised, and "recording" while
        recording is stopped; or nothing."""
        recording = {"recording"} if self.recording == "stopped" else set()
        if self.state == "starting":
            return recording
        if self.state == "offline":
            return {"offline"} | recording
        return {k for k, v in self.flags.items() if v} | recording

    def as_dict(self) -> dict[str, object]:
        return {
            "camera": self.camera_id, "state": self.state, "healthy": self.healthy, "reason": self.reason,
            "mode": self.mode, "fps": round(self.fps, 2), "keyframe_interval_s": self.keyframe_interval_s,
            "width": self.width, "height": self.height,
            "last_frame_at": self.last_frame_at, "motion": round(self.motion, 1), "flags": dict(self.flags),
            "video": self.video, "video_reason": self.video_reason,
            "recording": self.recording, "recording_reason": self.recording_reason, "since": self.since,
        }


def encode_status(status: CameraStatus) -> bytes:
    return orjson.dumps(status.as_dict())


def decode_status(payload: bytes | bytearray) -> dict[str, Any]:
    """The status as the hub and pages use it (a dict, passed on to screens as is)."""
    doc = orjson.loads(payload)
    if not isinstance(doc, dict) or not isinstance(doc.get("camera"), str) or "state" not in doc:
        raise ValueError("camera status without camera or state")
    return doc


class CameraEvent(TypedDict):
    camera: str
    kind: str  # offline | black | frozen | ... (a fault)
    state: Literal["started", "ended"]
    at: float
    reason: str | None


def encode_event(camera: str, kind: str, state: Literal["started", "ended"], at: float, reason: str | None) -> bytes:
    return orjson.dumps({"camera": camera, "kind": kind, "state": state, "at": at, "reason": reason})


def decode_event(payload: bytes | bytearray) -> CameraEvent:
    doc = orjson.loads(payload)
    if not isinstance(doc, dict) or not isinstance(doc.get("camera"), str) or doc.get("state") not in ("started", "ended"):
        raise ValueError("camera event without camera or state")
    return doc  # type: ignore[return-value]


def encode_reference_command(operator: str) -> bytes:
    return operator.encode()


def decode_reference_command(payload: bytes | bytearray) -> str:
    return bytes(payload).decode("utf-8", "replace")[:100] or "?"


def encode_presence(online: bool, cameras: list[str] | None = None) -> bytes:
    """A camera worker's presence (`topics.camera_presence`): its birth says online with its
    cameras, its will says offline. The compose health check reads it."""
    if not online:
        return orjson.dumps({"state": "offline"})
    return orjson.dumps({"state": "online", "cameras": cameras or []})


def decode_presence(payload: bytes | bytearray) -> dict[str, Any]:
    doc = orjson.loads(payload) if payload else {}
    if not isinstance(doc, dict):
        raise ValueError("camera presence is not an object")
    return doc
