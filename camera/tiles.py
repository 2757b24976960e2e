"""Camera tiles for the wall: JPEG snapshots with a small header saying what and when.

Wire format of a tile (MQTT payload, and later the websocket binary frame), so a screen
can show the picture's age without parsing the JPEG:

    b"IOCT" | u16 big-endian header length | header (UTF-8 JSON) | JPEG bytes

header: {"camera", "seq", "captured_at" (epoch s, float), "width", "height", "variant"}.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import orjson

MAGIC = b"IOCT"
VARIANTS: dict[str, tuple[int, int]] = {"sd": (640, 360), "hd": (1920, 1080)}


def encode_tile(image: np.ndarray, *, camera: str, seq: int, captured_at: float, variant: str,
                quality: int = 80) -> bytes:
    """Scale to the variant's size (never up) and JPEG-encode; call from a worker thread."""
    w, h = VARIANTS[variant]
    src_h, src_w = image.shape[:2]
    scale = min(w / src_w, h / src_h, 1.0)
    if scale < 1.0:
        image = cv2.resize(image, (round(src_w * scale), round(src_h * scale)), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    header = orjson.dumps({"camera": camera, "seq": seq, "captured_at": captured_at,
                           "width": image.shape[1], "height": image.shape[0], "variant": variant})
    return MAGIC + struct.pack(">H", len(header)) + header + jpeg.tobytes()


def decode_tile(payload: bytes) -> tuple[dict[str, object], bytes]:
    if payload[:4] != MAGIC:
        raise ValueError("not a tile")
    (n,) = struct.unpack(">H", payload[4:6])
    return orjson.loads(payload[6 : 6 + n]), payload[6 + n :]
