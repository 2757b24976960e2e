"""The H.264 depacketiser (camera/rtp_h264.py) on real RTP: packets captured from the RTSP
rig's GStreamer payloader (tests/rigs/rtsp), replayed packet by packet, and every access unit
it gives decoded by FFmpeg with the burnt-in frame number read back. Losses are made by
leaving real packets out, not by forging any."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from camera.rtp_h264 import FU_A, NAL_IDR, STAP_A, AccessUnit, Depacketizer, RtpError, parse_rtp
from camera.rtsp_client import RtspSession
from tests.rigs.rtsp.counter import CounterError, decode_counter
from tests.rigs.rtsp.rig import Mount, RtspRig, check_setup, media_path

SECONDS = 2.6  # two keyframes at least (an IDR every second)


@dataclass
class Capture:
    packets: list[bytes]
    payload_type: int
    reads: int  # calls of `read_packets` that gave packets


def _slices_clip(path: Path) -> None:
    """The counter clip re-encoded with 4 slices per picture (as many cameras encode)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(media_path("counter-360p.mp4")),
         "-t", "4", "-an", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
         "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-bf", "0",
         "-x264-params", "slices=4:open_gop=0:scenecut=0", str(path)], check=True, timeout=120)


def _capture(url: str) -> Capture:
    """As the reader reads (camera/rtp_reader.py): every packet already in, per call."""
    session = RtspSession(url)
    track = session.open()
    packets = []
    reads = 0
    try:
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            got = session.read_packets(1.0)
            if got is not None:
                packets += [bytes(p) for p in got[0]]
                reads += 1
    finally:
        session.close()
    return Capture(packets, track.payload_type, reads)


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Capture]]:
    check_setup()
    clip = tmp_path_factory.mktemp("slices") / "counter-slices.mp4"
    _slices_clip(clip)
    mounts = [Mount("fu", "counter-1080p.mp4"), Mount("stap", "counter-360p.mp4", aggregate=True),
              Mount("slices", str(clip))]
    with RtspRig(mounts, log_dir=tmp_path_factory.mktemp("rtsp")) as rig:
        yield {m.name: _capture(rig.url(m.name)) for m in mounts}


def _units(capture: Capture, packets: list[bytes] | None = None) -> tuple[list[AccessUnit], Depacketizer]:
    d = Depacketizer(capture.payload_type)
    out: list[AccessUnit] = []
    for i, raw in enumerate(capture.packets if packets is None else packets):
        out += d.push(raw, float(i))
    return out, d


def _frame_numbers(units: list[AccessUnit]) -> list[int]:
    """The burnt-in number of each unit's picture; fails on a picture FFmpeg had to conceal."""
    decoder = av.CodecContext.create("h264", "r")
    numbers = []
    for unit in units:
        for picture in decoder.decode(av.Packet(unit.data)):
            assert not picture.is_corrupt
            try:
                numbers.append(decode_counter(picture.to_ndarray(format="gray")))
            except CounterError as exc:
                pytest.fail(f"a damaged picture came out of a whole access unit: {exc}")
    return numbers


def _consecutive(numbers: list[int]) -> bool:
    """Each the one after the last; the rig's first unit is the IDR it held at DESCRIBE, the
    live stream follows from the next IDR (tests/rigs/rtsp/README.md): it is left out."""
    live = numbers[1:]
    return len(live) > 10 and all(b == a + 1 or b == 0 for a, b in zip(live, live[1:]))


def _kinds(capture: Capture) -> set[int]:
    return {parse_rtp(p).payload[0] & 0x1F for p in capture.packets}


def _markers(capture: Capture) -> list[int]:
    return [i for i, p in enumerate(capture.packets) if parse_rtp(p).marker]


def test_fu_a_fragments_make_whole_pictures(captures: dict[str, Capture]) -> None:
    c = captures["fu"]
    assert FU_A in _kinds(c)  # a 1080p picture never fits one packet
    # a picture's packets come in one burst, and one read takes what is in
    assert len(c.packets) > 2 * c.reads, (len(c.packets), c.reads)
    units, d = _units(c)
    assert units[0].key and d.lost == 0 and d.dropped == 0
    # one unit per marker (the first ones, before the first IDR, wait for it)
    assert len(units) == len(_markers(c)) - d.dropped
    numbers = _frame_numbers(units)
    assert len(numbers) == len(units) and _consecutive(numbers)


def test_stap_a_packets_are_split_into_their_nal_units(captures: dict[str, Capture]) -> None:
    c = captures["stap"]
    assert STAP_A in _kinds(c)
    units, _ = _units(c)
    keys = [u for u in units if u.key]
    assert keys and all({7, 8, NAL_IDR} <= set(u.nal_types) for u in keys)  # SPS+PPS came in a STAP-A
    numbers = _frame_numbers(units)
    assert len(numbers) == len(units) and _consecutive(numbers)


def test_the_marker_bit_ends_the_unit_at_its_own_packet(captures: dict[str, Capture]) -> None:
    c = captures["fu"]
    d = Depacketizer(c.payload_type)
    ended_at = []
    for i, raw in enumerate(c.packets):
        for unit in d.push(raw, float(i)):
            ended_at.append(int(unit.arrived))
    markers = _markers(c)
    assert ended_at and set(ended_at) <= set(markers)
    assert ended_at == markers[len(markers) - len(ended_at):]


def test_without_marker_bits_a_new_timestamp_ends_the_unit(captures: dict[str, Capture]) -> None:
    c = captures["fu"]
    unmarked = [p[:1] + bytes((p[1] & 0x7F,)) + p[2:] for p in c.packets]
    with_marker, _ = _units(c)
    without, d = _units(c, unmarked)
    assert d.without_marker > 0
    # the same pictures, each one packet later (the last one waits for a next that never came)
    assert [u.data for u in without] == [u.data for u in with_marker][:len(without)]
    assert len(without) >= len(with_marker) - 1
    assert [u.arrived for u in without] == [u.arrived + 1 for u in with_marker][:len(without)]


def _key_after(units: list[AccessUnit], index: int) -> int:
    """Index of the first keyframe after `units[index]`."""
    return next(i for i, u in enumerate(units) if u.key and i > index)


@pytest.mark.parametrize("kind", ["P slice", "IDR fragment"])
def test_a_lost_packet_drops_pictures_until_the_next_keyframe(captures: dict[str, Capture], kind: str) -> None:
    c = captures["fu"]
    whole, _ = _units(c)
    # the packet to lose: in the 5th picture after the first IDR, or inside the first IDR
    d = Depacketizer(c.payload_type)
    unit_of = []  # for each packet, how many units were out before it
    count = 0
    for i, raw in enumerate(c.packets):
        unit_of.append(count)
        count += len(d.push(raw, float(i)))
    target = 4 if kind == "P slice" else 0
    candidates = [i for i, n in enumerate(unit_of) if n == target and not parse_rtp(c.packets[i]).marker]
    lost = candidates[len(candidates) // 2]
    units, d = _units(c, c.packets[:lost] + c.packets[lost + 1:])
    assert d.lost == 1
    second = _key_after(whole, target)
    # everything from the damaged picture up to the next IDR is gone; from there on, all
    assert [u.data for u in units] == [u.data for u in whole[:target]] + [u.data for u in whole[second:]]
    numbers = _frame_numbers(units)
    assert _consecutive(numbers[max(target - 1, 0):])


def test_a_multi_slice_keyframe_is_kept_whole(captures: dict[str, Capture]) -> None:
    c = captures["slices"]
    units, d = _units(c)
    keys = [u for u in units if u.key]
    assert keys and all(u.nal_types.count(NAL_IDR) == 4 for u in keys)
    assert all(u.nal_types.count(1) == 4 for u in units if not u.key)
    assert len(units) == len(_markers(c)) - d.dropped
    numbers = _frame_numbers(units)
    assert len(numbers) == len(units) and _consecutive(numbers)


def test_repeated_and_late_packets_are_ignored(captures: dict[str, Capture]) -> None:
    c = captures["fu"]
    whole, _ = _units(c)
    p = c.packets
    shuffled = p[:30] + [p[29], p[25]] + p[30:]  # one repeated, one late (already passed)
    units, d = _units(c, shuffled)
    assert [u.data for u in units] == [u.data for u in whole] and d.lost == 0


def test_not_rtp_is_refused_clearly() -> None:
    with pytest.raises(RtpError, match="shorter than its header"):
        Depacketizer().push(b"\x80\x60", 0.0)
    with pytest.raises(RtpError, match="version 0"):
        Depacketizer().push(bytes(20), 0.0)
