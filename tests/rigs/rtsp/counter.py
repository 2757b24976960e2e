"""The frame counter burnt into ``counter-*.mp4`` (see setup.sh), read back with NumPy alone.

Geometry, in pixels of the decoded frame, the same at every resolution (the pattern is drawn
after scaling), origin at the top-left corner:

* a patch of 512 x 64 px: two rows of 16 square blocks, 32 x 32 px each;
* row 0 (y 0..31): the frame index in binary, most significant bit first: bit 15 is the block
  at x 0..31, bit 0 the block at x 480..511; white (255) = 1, black (0) = 0;
* row 1 (y 32..63): the same bits inverted (white = 0), so a damaged or missing pattern is
  detected instead of being read as a wrong number.

The index is the frame number within the file (0 for its first frame), so it wraps to 0 when
the server loops the file (at ``frames`` in the server's status, 1495 for the street clips).
Reading samples the central 16 x 16 px of each block, which H.264 at 360p keeps far from the
threshold.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BITS", "BLOCK", "PATCH_W", "PATCH_H", "decode_counter", "draw_counter", "CounterError"]

BITS = 16
BLOCK = 32
PATCH_W = BITS * BLOCK  # 512
PATCH_H = 2 * BLOCK  # 64
_MARGIN = BLOCK // 4  # sample the central 16 x 16 of each block
_LOW, _HIGH = 80.0, 175.0  # a block must be clearly dark or clearly light


class CounterError(ValueError):
    """No valid counter pattern in this frame."""


def _luma(frame: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    patch = np.asarray(frame)[:PATCH_H, :PATCH_W]
    if patch.shape[0] < PATCH_H or patch.shape[1] < PATCH_W:
        raise CounterError(f"frame {np.asarray(frame).shape} is smaller than the {PATCH_W}x{PATCH_H} pattern")
    patch = patch.astype(np.float32)
    if patch.ndim == 3:  # BGR, RGB or with alpha: the pattern is grey, so a plain mean will do
        patch = patch[..., :3].mean(axis=2)
    return patch


def _block_means(luma: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Mean of the centre of each block: shape (2, 16)."""
    blocks = luma.reshape(2, BLOCK, BITS, BLOCK)[:, _MARGIN : BLOCK - _MARGIN, :, _MARGIN : BLOCK - _MARGIN]
    return blocks.mean(axis=(1, 3))


def decode_counter(frame: npt.NDArray[np.generic]) -> int:
    """The frame index burnt into ``frame`` (H x W x 3 BGR/RGB or H x W grey, uint8).

    Raises ``CounterError`` (a ``ValueError``) if the pattern is absent or inconsistent.
    """
    means = _block_means(_luma(frame))
    ambiguous = (means > _LOW) & (means < _HIGH)
    if ambiguous.any():
        raise CounterError(f"blocks {np.flatnonzero(ambiguous.ravel()).tolist()} are neither black nor white")
    bits = means[0] >= _HIGH
    if not np.array_equal(bits, means[1] <= _LOW):
        raise CounterError("the complement row does not match: no counter pattern here")
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def draw_counter(frame: npt.NDArray[np.uint8], index: int) -> npt.NDArray[np.uint8]:
    """Burn ``index`` into ``frame`` in place, exactly as setup.sh's ffmpeg filter does."""
    if not 0 <= index < (1 << BITS):
        raise ValueError(f"index {index} does not fit in {BITS} bits")
    frame[:PATCH_H, :PATCH_W] = 0
    for b in range(BITS):
        bit = (index >> (BITS - 1 - b)) & 1
        row = 0 if bit else 1
        frame[row * BLOCK : (row + 1) * BLOCK, b * BLOCK : (b + 1) * BLOCK] = 255
    return frame
