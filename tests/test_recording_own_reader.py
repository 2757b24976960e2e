"""Recording from our own RTSP reader (camera/rtp_reader.py): a recorded camera's stream is
read by the same reader as any other, so its live video is not a frame later, and its
segments hold every picture the camera sent, timed by the camera's RTP clock.

The rig's counter clip carries its frame number in the picture: each segment decoded with
PyAV must give consecutive numbers, and one segment must continue where the last ended.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import av
import pytest

from camera.capture import CaptureThread
from camera.h264 import AccessUnits
from camera.recorder import Recorder, SegmentDone
from camera.rtp_reader import RtpClock, _Recording
from tests.rigs.rtsp.counter import CounterError, decode_counter
from tests.rigs.rtsp.rig import Mount, RtspRig, media_path
from tests.test_recording import assert_plays


def _decoded(path: Path) -> tuple[list[int], list[float], tuple[int, int]]:
    """The counter values, presentation times (s) and size of a segment's pictures."""
    values: list[int] = []
    times: list[float] = []
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        for frame in src.decode(stream):
            times.append(float(frame.pts * stream.time_base))
            try:
                values.append(decode_counter(frame.to_ndarray(format="bgr24")))
            except CounterError:
                values.append(-1)
    return values, times, size


def test_a_recorded_stream_is_read_by_our_reader_and_every_picture_is_kept(tmp_path: Path) -> None:
    done: list[SegmentDone] = []
    rec = Recorder("own-cam", tmp_path, segment_s=2.0, on_segment=done.append, on_state=lambda *_: None)
    rec.mode = "continuous"
    with RtspRig([Mount("own-rec", "counter-360p.mp4")]) as rig:
        reader = CaptureThread("own-cam", rig.url("own-rec"), "main-keyframes", decode=False)
        reader.recorder = rec
        reader.start()
        deadline = time.monotonic() + 40
        while len(done) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        reader.stop()
        reader.join(10)
    assert reader.reader == "own", reader.reader_note
    assert len(done) >= 3, (done, reader.error)
    last: int | None = None
    for n, seg in enumerate(sorted(done, key=lambda d: d.start)):
        path = tmp_path / seg.path
        assert_plays(path)
        values, times, size = _decoded(path)
        if n == 0 and values[:2] == [0, 25]:
            # the rig's server sends a new session the clip's first picture, then goes on from
            # its timeline's next keyframe (the same through FFmpeg's reader)
            values, times = values[1:], times[1:]
        assert size == (640, 360)
        assert -1 not in values, (seg.path, values)
        steps = {b - a for a, b in zip(values, values[1:])}
        assert steps <= {1} or steps <= {1, -(max(values))}, (seg.path, values)  # the clip may loop
        gaps = {round(b - a, 3) for a, b in zip(times, times[1:])}
        assert gaps == {0.04}, (seg.path, gaps)  # the camera's 25 fps clock, not arrival jitter
        assert 0 < seg.end - seg.start <= 3.0, seg
        if last is not None and values[0] != 0:
            assert values[0] == last + 1, (seg.path, last, values[:3])  # nothing lost between segments
        last = values[-1]


def _units(name: str, seconds: float) -> list[tuple[bytes, bool, int]]:
    """A clip's access units as our reader hands them on: Annex B, SPS and PPS before each
    IDR, with 90 kHz times."""
    out: list[tuple[bytes, bool, int]] = []
    with av.open(str(media_path(name))) as src:
        stream = src.streams.video[0]
        units = AccessUnits(stream.codec_context.extradata)
        for packet in src.demux(stream):
            if packet.pts is None or not packet.size:
                continue
            t = float(packet.pts * stream.time_base)
            if t >= seconds:
                break
            data, key = units.convert(bytes(packet), packet.is_keyframe)
            out.append((data, key, round(t * 90000)))
    return out


def test_a_new_sps_starts_a_segment_with_the_new_size(tmp_path: Path) -> None:
    """The camera changes resolution mid-stream (a new SPS): the open segment closes and the
    next one is made from the new parameters, so both play at their own size."""
    done: list[SegmentDone] = []
    rec = Recorder("sps-cam", tmp_path, segment_s=60.0, on_segment=done.append, on_state=lambda *_: None)
    rec.mode = "continuous"
    thread: Any = type("T", (), {"camera_id": "sps-cam"})()
    recording = _Recording(rec, thread)
    units = AccessUnits(None)
    wall = time.time() - 60
    small, large = _units("counter-360p.mp4", 2.0), _units("counter-1080p.mp4", 2.0)
    for i, (data, key, ts) in enumerate(small + large):
        data, key = units.convert(data, key)
        recording.unit(units, data, key, (ts + (180000 if i >= len(small) else 0)) & 0xFFFFFFFF, wall + i * 0.04)
    rec.end()
    assert len(done) == 2, done
    sizes = [_decoded(tmp_path / d.path)[2] for d in sorted(done, key=lambda d: d.start)]
    assert sizes == [(640, 360), (1920, 1080)]
    for d in done:
        assert_plays(tmp_path / d.path)


@pytest.mark.parametrize(("stamps", "want"), [
    ([0xFFFFF000, 0xFFFFFE10, 0x00000C20], [0xFFFFF000, 0xFFFFFE10, 0x100000C20]),  # the clock turns
    ([0x00000C20, 0xFFFFFE10], [0x00000C20, 0xFFFFFE10 - (1 << 32)]),  # a unit from before the turn
    ([9000, 3600, 5400, 12600], [9000, 3600, 5400, 12600]),  # B-frames: small steps back stay
])
def test_rtp_clock_unwraps_the_32_bit_timestamps(stamps: list[int], want: list[int]) -> None:
    clock = RtpClock()
    assert [clock(s) for s in stamps] == want
