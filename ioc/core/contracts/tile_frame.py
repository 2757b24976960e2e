"""A camera tile on the broker: a JPEG with a small header saying what and when.

The camera service publishes it on `topics.live_camera(id, "tile" | "tile/hd")`; hubs and the
API read the header without touching the JPEG, so a screen can show the picture's age and
the hub can forward the JPEG as is.

    b"IOCT" | u16 big-endian header length | header (UTF-8 JSON) | JPEG bytes

header: {"camera", "seq", "captured_at" (epoch s, float), "width", "height", "variant"}.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from ioc.core.contracts import framing

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
    return framing.pack(MAGIC, header, jpeg)


def decode_tile(payload: bytes | bytearray | memoryview) -> tuple[TileHeader, bytes]:
    """The header and a copy of the JPEG; ValueError for anything that is not a whole tile."""
    head, body = framing.unpack(MAGIC, payload, "camera tile")
    if not isinstance(head.get("camera"), str):
        raise ValueError("camera tile header has no camera")
    return head, bytes(body)
