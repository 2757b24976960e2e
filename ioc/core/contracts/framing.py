"""The one binary layout our frames share (camera tiles, wall pictures, video):

    4-byte magic | u16 big-endian header length | header (UTF-8 JSON) | body

Each frame type names its magic and checks its own header; the cutting and the refusals of
truncated or non-JSON input live here once.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import orjson


def pack(magic: bytes, header: Mapping[str, Any], body: bytes | memoryview) -> bytes:
    head = orjson.dumps(header)
    return b"".join((magic, struct.pack(">H", len(head)), head, body))


def unpack(magic: bytes, payload: bytes | bytearray | memoryview, what: str) -> tuple[Any, memoryview]:
    """The parsed header and a view of the body (no copy); ValueError naming `what` otherwise."""
    view = memoryview(payload)
    if len(view) < 6 or bytes(view[:4]) != magic:
        raise ValueError(f"not a {what} (no {magic.decode()} magic)")
    (n,) = struct.unpack(">H", view[4:6])
    if len(view) < 6 + n:
        raise ValueError(f"{what} header cut short")
    try:
        head = orjson.loads(view[6 : 6 + n])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} header is not JSON: {exc}") from None
    if not isinstance(head, dict):
        raise ValueError(f"{what} header is not an object")
    return head, view[6 + n :]
