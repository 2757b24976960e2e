"""camera.capture.reduce: the one resize every 1080p frame goes through (tiles and analysis)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camera.capture import reduce
from tests.rigs.rtsp.rig import media_path


@pytest.mark.parametrize("shape,expected", [
    ((1080, 1920, 3), (360, 640, 3)), ((720, 1280, 3), (360, 640, 3)), ((2160, 3840, 3), (360, 640, 3)),
    ((576, 704, 3), (360, 440, 3)), ((1080, 1440, 3), (360, 480, 3)), ((360, 640, 3), (360, 640, 3)),
    ((240, 320, 3), (240, 320, 3)),
])
def test_sizes(shape: tuple[int, int, int], expected: tuple[int, int, int]) -> None:
    image = np.zeros(shape, np.uint8)
    out = reduce(image)
    assert out.shape == expected
    if shape == expected:
        assert out is image  # never copied, never enlarged


def test_street_footage_matches_an_area_resize() -> None:
    cap = cv2.VideoCapture(str(media_path("street-1080p.mp4")))
    frames = [cap.read()[1] for _ in range(40)][10::10]
    cap.release()
    assert frames and all(f is not None and f.shape == (1080, 1920, 3) for f in frames)
    for f in frames:
        ref = cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA).astype(np.float32)
        diff = np.abs(reduce(f).astype(np.float32) - ref)
        plain = np.abs(cv2.resize(f, (640, 360), interpolation=cv2.INTER_LINEAR).astype(np.float32) - ref)
        assert diff.mean() < 1.0, diff.mean()
        assert diff.mean() < 0.6 * plain.mean()  # clearly less aliasing than one bilinear step
