"""Where recordings live on disk, and the one way to turn an index path into a file.

Layout: `<IOC_RECORDINGS_DIR>/<camera>/<YYYY-MM-DD (UTC)>/<start ms>-<end ms>.mp4` for the
main stream, and the same names one directory lower, in `<day>/sub/`, for the sub-stream: a
sub segment can never be taken for a main one (the day directory holds only main files, and
"sub" is not a day), and the directory it is found in says which stream it is. The
name carries the segment's capture times, so a file that was renamed into place but not yet
indexed when the service was killed is indexed at the next start from its name alone. A
segment being written is `<start ms>.mp4.part` and only becomes `.mp4` once closed: a
`.part` file found at start is what a kill interrupted, and is removed.

Every path that comes from the index (or, through it, from a request) is resolved by
`inside`: relative, no `..`, no symlink anywhere below the root, and inside the root once
resolved. Nothing else is ever opened or deleted.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, get_args

from ioc.core.contracts.video_frame import STREAMS, Stream

RecordingMode = Literal["continuous", "events", "off"]
RECORDING_MODES: tuple[str, ...] = get_args(RecordingMode)
CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,63}$")  # the registry's rule (ioc.core.cameras)
_SEGMENT = re.compile(r"^(\d{10,14})-(\d{10,14})\.mp4$")
PART_SUFFIX = ".mp4.part"
SUB_DIR = "sub"  # inside a day's directory: that day's sub-stream segments


class UnsafePath(ValueError):
    """A path that would reach outside the recordings directory (or through a symlink)."""


def day_of(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%d")


def stream_dir(camera: str, day: str, stream: Stream = "main") -> str:
    """The relative directory of a camera's segments of one stream and day."""
    _check_camera(camera)
    if stream not in STREAMS:
        raise UnsafePath(f"not a stream: {str(stream)[:20]!r}")
    return f"{camera}/{day}" if stream == "main" else f"{camera}/{day}/{SUB_DIR}"


def part_path(camera: str, start_s: float, stream: Stream = "main") -> str:
    """The relative path of a segment while it is written."""
    return f"{stream_dir(camera, day_of(start_s), stream)}/{round(start_s * 1000)}{PART_SUFFIX}"


def segment_path(camera: str, start_s: float, end_s: float, stream: Stream = "main") -> str:
    """The relative path of a closed segment (its day is the day it started, UTC)."""
    return f"{stream_dir(camera, day_of(start_s), stream)}/{round(start_s * 1000)}-{round(end_s * 1000)}.mp4"


def parse_segment_name(name: str) -> tuple[float, float] | None:
    """(start, end) in epoch seconds from a closed segment's file name, None if it is not one."""
    m = _SEGMENT.match(name)
    if not m:
        return None
    start, end = int(m.group(1)) / 1000, int(m.group(2)) / 1000
    return (start, end) if end > start else None


def _check_camera(camera: str) -> None:
    if not CAMERA_ID.match(camera):
        raise UnsafePath(f"not a camera id: {camera[:80]!r}")


def inside(root: Path, relative: str) -> Path:
    """`root/relative`, refused unless it stays inside `root` without following a symlink."""
    if not relative or "\x00" in relative or relative.startswith(("/", "\\")) or "\\" in relative:
        raise UnsafePath("not a relative path")
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath("path with empty, . or .. parts")
    base = root.resolve()
    path = base
    for part in parts:
        path = path / part
        if stat.S_ISLNK(os.lstat(path).st_mode):  # FileNotFoundError: nothing there
            raise UnsafePath("a symlink in the recordings directory")
    if os.path.commonpath([base, path.resolve()]) != str(base):
        raise UnsafePath("outside the recordings directory")
    return path


def check_dir(root: Path) -> None:
    """Create the recordings directory if needed and prove it is writable (at start, so a
    wrong setting stops the service with a clear message instead of every segment failing)."""
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".write-test-{os.getpid()}"
    probe.write_bytes(b"ok")
    probe.unlink()
