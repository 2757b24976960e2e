"""What a frame says about its camera: black, uniform, frozen, blurred, turned, moving.

Each sampled frame is reduced once to a small grey thumbnail and a few numbers
(`analyse`, run in a worker thread); `HealthTracker` keeps what it needs across frames
and answers with the camera's states. Offline is not decided here: that comes from the
time of the last new frame (a hung camera's reader keeps returning, see capture.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

THUMB_SIZE = (160, 90)  # width, height
SCENE_SIZE = (32, 18)


@dataclass(frozen=True, slots=True)
class FrameStats:
    mean: float  # mean luminance 0..255
    std: float  # spread of luminance: near 0 for a black or uniform picture
    sharpness: float  # variance of the Laplacian at 320x180: low when blurred or defocused
    thumb: np.ndarray  # 90x160 uint8 grey, for frozen and motion
    scene: np.ndarray  # 18x32 float32 grey, zero-mean, for turned/covered


def analyse(frame: np.ndarray) -> FrameStats:
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    mid = cv2.resize(grey, (320, 180), interpolation=cv2.INTER_AREA)
    thumb = cv2.resize(mid, THUMB_SIZE, interpolation=cv2.INTER_AREA)
    scene = cv2.resize(mid, SCENE_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    scene -= scene.mean()
    return FrameStats(
        mean=float(thumb.mean()),
        std=float(thumb.std()),
        sharpness=float(cv2.Laplacian(mid, cv2.CV_32F).var()),
        thumb=thumb,
        scene=scene,
    )


@dataclass(frozen=True)
class Thresholds:
    black_mean: float = 25.0  # and uniform: a black picture is a dark uniform one
    uniform_std: float = 6.0
    frozen_diff: float = 0.25  # mean absolute change of the thumbnail, grey levels
    frozen_after_s: float = 3.0
    blur_sharpness: float = 25.0
    scene_corr: float = 0.5  # correlation with the reference picture below this: turned or covered
    motion_scale: float = 4.0  # mean absolute change (grey levels) counted as motion 100


@dataclass
class HealthTracker:
    thresholds: Thresholds = field(default_factory=Thresholds)
    last: FrameStats | None = None
    last_change_at: float | None = None
    reference: np.ndarray | None = None
    motion: float = 0.0  # 0..100
    diff: float = 0.0

    def update(self, stats: FrameStats, at: float) -> None:
        th = self.thresholds
        if self.last is None:
            self.last_change_at = at
        else:
            self.diff = float(cv2.absdiff(stats.thumb, self.last.thumb).mean())
            if self.diff > th.frozen_diff:
                self.last_change_at = at
            self.motion = min(100.0, 100.0 * self.diff / th.motion_scale)
        self.last = stats
        if self.reference is None and not self._uniform(stats):
            self.reference = stats.scene

    def set_reference(self, stats: FrameStats) -> None:
        """An operator accepts the current view as the camera's normal one."""
        self.reference = stats.scene

    def _uniform(self, s: FrameStats) -> bool:
        return s.std < self.thresholds.uniform_std

    def states(self, now: float) -> dict[str, bool]:
        """The picture's states now; all False before the first frame."""
        s = self.last
        th = self.thresholds
        if s is None:
            return {"black": False, "uniform": False, "frozen": False, "blurred": False, "scene_changed": False}
        uniform = self._uniform(s)
        black = uniform and s.mean < th.black_mean
        frozen = (not uniform and self.last_change_at is not None
                  and now - self.last_change_at >= th.frozen_after_s)
        blurred = not uniform and s.sharpness < th.blur_sharpness
        scene_changed = False
        if self.reference is not None and not uniform:
            a, b = self.reference, s.scene
            denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
            scene_changed = denom > 0 and float((a * b).sum()) / denom < th.scene_corr
        return {"black": black, "uniform": uniform and not black, "frozen": frozen,
                "blurred": blurred, "scene_changed": scene_changed}


@dataclass
class Debouncer:
    """A state shows only once it has held for a while, and clears only once it has been gone
    for a while: one dark frame or a passing bus is not an event, and a flickering fault is
    one event with a start and an end, not twenty. Frozen needs no raise delay: it is
    already defined by time.
    """

    raise_after_s: dict[str, float] = field(default_factory=lambda: {
        "black": 1.0, "uniform": 1.0, "frozen": 0.0, "blurred": 2.0, "scene_changed": 2.0})
    clear_after_s: float = 2.0
    shown: dict[str, bool] = field(default_factory=dict)
    _differs_since: dict[str, float] = field(default_factory=dict)

    def update(self, raw: dict[str, bool], now: float) -> dict[str, bool]:
        for k, v in raw.items():
            if v == self.shown.get(k, False):
                self._differs_since.pop(k, None)
                continue
            since = self._differs_since.setdefault(k, now)
            if now - since >= (self.raise_after_s.get(k, 1.0) if v else self.clear_after_s):
                self.shown[k] = v
                self._differs_since.pop(k, None)
        return {k: self.shown.get(k, False) for k in raw}

    def reset(self) -> None:
        self.shown.clear()
        self._differs_since.clear()
