"""A camera tile on the broker: a JPEG with a small header saying what and when.

The camera service publishes it on `topics.live_camera(id, "tile" | "tile/hd")`; hubs and the
API read the header without touching the JPEG, so a screen can show the picture's age and
the hub can forward the JPEG as is.

    b"IOCT" | u16 big-endian header length | header (UTF-8 JSON) | JPEG bytes

header: {"camera", "seq", "captured_at" (epoch s, float), "width", "height", "variant"}.
"""

from __future__ import annotations

import struct
from typing import Literal, TypedDict

import orjson

MAGIC = b"IOCT"
Variant = Literal["sd", "hd"]
#: the largest picture of each variant (a smaller source is never scaled up)
VARIANT_SIZES: dict[str, tuple[int, int]] = {"sd": (640, 360), "hd": (1920, 1080)}


class TileHeader(TypedDict):
    camera: str
    seq: int
    captured_at: float
    width: int
    height: int
    variant: str


def encode_tile(header: TileHeader, jpeg: bytes | memoryview) -> bytes:
    head = orjson.dumps(header)
    return b"".join((MAGIC, struct.pack(">H", len(head)), head, jpeg))


def decode_tile(payload: bytes | bytearray | memoryview) -> tuple[TileHeader, bytes]:
    """The header and a copy of the JPEG; ValueError for anything that is not a whole tile."""
    view = memoryview(payload)
    if len(view) < 6 or bytes(view[:4]) != MAGIC:
        raise ValueError("not a camera tile (no IOCT magic)")
    (n,) = struct.unpack(">H", view[4:6])
    if len(view) < 6 + n:
        raise ValueError("camera tile header cut short")
    try:
        head = orjson.loads(view[6 : 6 + n])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"camera tile header is not JSON: {exc}") from None
    if not isinstance(head, dict) or not isinstance(head.get("camera"), str):
        raise ValueError("camera tile header has no camera")
    return head, bytes(view[6 + n :])  # type: ignore[return-value]
