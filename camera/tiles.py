"""Camera tiles for the wall: a picture scaled and JPEG-encoded, framed by the tile contract.

The frame format itself (header, magic) is `ioc.core.contracts.tile_frame`; this module only
makes the JPEG, in a worker thread, from the reader's picture.
"""

from __future__ import annotations

import cv2
import numpy as np

from ioc.core.contracts.tile_frame import VARIANT_SIZES, TileHeader
from ioc.core.contracts.tile_frame import encode_tile as frame_tile


def encode_tile(image: np.ndarray, *, camera: str, seq: int, captured_at: float, variant: str,
                quality: int = 80) -> bytes:
    """Scale to the variant's size (never up) and JPEG-encode; call from a worker thread."""
    w, h = VARIANT_SIZES[variant]
    src_h, src_w = image.shape[:2]
    scale = min(w / src_w, h / src_h, 1.0)
    if scale < 1.0:
        image = cv2.resize(image, (round(src_w * scale), round(src_h * scale)), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    header: TileHeader = {"camera": camera, "seq": seq, "captured_at": captured_at,
                          "width": image.shape[1], "height": image.shape[0], "variant": variant}
    return frame_tile(header, jpeg.tobytes())
