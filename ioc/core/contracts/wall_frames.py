"""Websocket frames the hub sends: camera pictures as binary, everything else as JSON text.

The pages' side of this contract is `dashboards/PROTOCOL.md`:

    b"IOCW" | u16 big-endian header length | header (UTF-8 JSON) | JPEG bytes

header: {"tile", "camera", "seq", "captured_at", "width", "height"}.

A camera frame is built once per tile and picture, then written to every client that shows
the tile, so its cost does not grow with the number of clients. The JPEG from the camera
service is reused as is (no decode, no re-encode).
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

MAGIC = b"IOCW"


def picture_frame(tile: str, camera: str, header: dict[str, Any], jpeg: bytes | memoryview) -> bytes:
    head = orjson.dumps({
        "tile": tile, "camera": camera, "seq": header.get("seq"), "captured_at": header.get("captured_at"),
        "width": header.get("width"), "height": header.get("height"),
    })
    return b"".join((MAGIC, struct.pack(">H", len(head)), head, jpeg))


def parse_picture_frame(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """For clients written in Python (tests, benchmarks, integrators' scripts)."""
    if len(frame) < 6 or frame[:4] != MAGIC:
        raise ValueError("not a wall picture frame")
    (n,) = struct.unpack(">H", frame[4:6])
    if len(frame) < 6 + n:
        raise ValueError("wall picture header cut short")
    return orjson.loads(frame[6 : 6 + n]), frame[6 + n :]


def tile_message(tile: str, kind: str, seq: int, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "tile", "tile": tile, "kind": kind, "seq": seq, "data": data})


def message(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, **fields})
