"""One MP4 file from recorded segments: a remux (no decode, no re-encode), run off the loop.

The span is cut on keyframes: the file starts at the last keyframe at or before `start`
(a player could not show anything before it) and ends before the first packet at or after
`end`. Timestamps are the capture times, so a gap in the recording stays a jump in the
file rather than being closed up. The SHA-256 is taken of the file as written, which is
what the audit log records and the answer's header repeats.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import av

from ioc.core.recordings import inside

MOVFLAGS = {"movflags": "+faststart"}  # a single file to hand over: moov first, plays while it downloads


@dataclass(frozen=True)
class Exported:
    path: Path
    bytes: int
    sha256: str
    start: float  # capture time of the first packet written
    end: float
    packets: int


class NothingToExport(ValueError):
    """The segments hold no packet inside the span."""


def export(root: Path, segments: list[tuple[str, float]], start: float, end: float, out_path: Path) -> Exported:
    """`segments`: (relative path, capture start) oldest first."""
    out = av.open(str(out_path), "w", format="mp4", options=MOVFLAGS)
    ostream = None
    t0: float | None = None
    last_dts = -1
    first_at = last_at = 0.0
    count = 0
    try:
        for rel, seg_start in segments:
            with av.open(str(inside(root, rel))) as inp:
                stream = inp.streams.video[0]
                tb = stream.time_base
                assert tb is not None
                if ostream is None:
                    ostream = out.add_stream_from_template(stream)
                first_dts: int | None = None
                pending: list[tuple[av.Packet, float]] = []  # the GOP that holds `start`, until it is reached
                for packet in inp.demux(stream):
                    if packet.dts is None or packet.size == 0:
                        continue
                    if first_dts is None:
                        first_dts = packet.dts
                    at = seg_start + float((packet.dts - first_dts) * tb)
                    if at >= end:
                        break
                    if at < start:
                        if packet.is_keyframe:
                            pending = []
                        if pending or packet.is_keyframe:
                            pending.append((packet, at))
                        continue
                    for held, held_at in [*pending, (packet, at)]:
                        if count == 0 and not held.is_keyframe:
                            continue  # a file starts on a keyframe
                        if t0 is None:
                            t0, first_at = held_at, held_at
                        shift = (held.pts - held.dts) if held.pts is not None else 0
                        dts = max(round((held_at - t0) / float(tb)), last_dts + 1)
                        held.dts, held.pts = dts, dts + shift
                        held.stream = ostream
                        out.mux(held)
                        last_dts, last_at = dts, held_at
                        count += 1
                    pending = []
    finally:
        out.close()
    if count == 0:
        out_path.unlink(missing_ok=True)
        raise NothingToExport("no recorded picture in that span")
    digest = hashlib.sha256()
    with open(out_path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return Exported(out_path, os.path.getsize(out_path), digest.hexdigest(), first_at, last_at, count)
