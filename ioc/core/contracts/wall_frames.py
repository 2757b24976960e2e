"""Websocket frames the hub sends: camera pictures as binary, everything else as JSON text.

The pages' side of this contract is `dashboards/PROTOCOL.md`:

    b"IOCW" | u16 big-endian header length | header (UTF-8 JSON) | JPEG bytes

header: {"tile", "camera", "seq", "captured_at", "width", "height"}.

A camera frame is built once per tile and picture, then written to every client that shows
the tile, so its cost does not grow with the number of clients. The JPEG from the camera
service is reused as is (no decode, no re-encode).
"""

from __future__ import annotations

from typing import Any

import orjson

from ioc.core.contracts import framing

MAGIC = b"IOCW"


def picture_frame(tile: str, camera: str, header: dict[str, Any], jpeg: bytes | memoryview) -> bytes:
    return framing.pack(MAGIC, {
        "tile": tile, "camera": camera, "seq": header.get("seq"), "captured_at": header.get("captured_at"),
        "width": header.get("width"), "height": header.get("height"),
    }, jpeg)


def parse_picture_frame(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """For clients written in Python (tests, benchmarks, integrators' scripts)."""
    head, jpeg = framing.unpack(MAGIC, frame, "wall picture frame")
    return head, bytes(jpeg)


def tile_message(tile: str, kind: str, seq: int, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "tile", "tile": tile, "kind": kind, "seq": seq, "data": data})


def message(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, **fields})
