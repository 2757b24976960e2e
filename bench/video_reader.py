#!/usr/bin/env python3
"""How late the camera service's reader hands each H.264 access unit on, against when the RTSP
rig sent that frame: FFmpeg's RTSP demuxer and H.264 parser, with the FFmpeg options tried to
make them emit a picture as soon as its last RTP packet (the marker bit) is in, and our own
RTSP/RTP reader (camera/rtp_reader.py, IOC_CAMERA_RTSP_READER=own), which does.

`--readers` compares only FFmpeg's reader (as the service runs it) and ours: the delay from the
rig sending a frame, the delay from the unit's last RTP packet arriving to its hand-over (own
reader only: FFmpeg does not tell when a packet arrived), and the CPU each costs per camera,
as the service reads a main stream (every unit forwarded, keyframes decoded for the tiles).

One RTSP rig mount of the counter clip (tests/rigs/rtsp/); per option set, one
`camera.capture.CaptureThread` reading it as the service does (video-only, nothing decoded
while reading), its units recorded with the time each was handed to the video sink. The units
are decoded afterwards, the burnt-in frame number read, and the rig's clock says when that
frame was sent. Alongside, `tests/rigs/rtsp/probe.py` (a pure-Python RTSP client) times each
frame's last RTP packet: the floor any reader could reach.

    python bench/video_reader.py                      # 360p and 1080p, every option set, 3 runs
    python bench/video_reader.py --clip counter-360p.mp4 --runs 1 --seconds 8
    python bench/video_reader.py --readers --clip counter-1080p.mp4    # ours against FFmpeg's
    python bench/video_reader.py --per-packet --seconds 4               # our Python path's CPU

Prints figures, never passes or fails; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402

import camera.capture as capture  # noqa: E402
from tests.rigs.rtsp.counter import CounterError, decode_counter  # noqa: E402
from tests.rigs.rtsp.probe import RtspProbe  # noqa: E402
from tests.rigs.rtsp.rig import Mount, RtspRig  # noqa: E402

BASE = dict(capture.RTSP_OPTIONS)
OPTION_SETS: dict[str, dict[str, str]] = {
    "service (today)": {},
    "fflags nobuffer": {"fflags": "nobuffer"},
    "flags low_delay": {"flags": "low_delay"},
    "max_delay 0": {"max_delay": "0"},
    "reorder_queue_size 0": {"reorder_queue_size": "0"},
    "all four": {"fflags": "nobuffer", "flags": "low_delay", "max_delay": "0", "reorder_queue_size": "0"},
}  # FFmpeg's reader, whatever IOC_CAMERA_RTSP_READER says
OWN = "own RTP reader"


def pctl(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def reader_delays(rig: RtspRig, mount: str, options: dict[str, str], seconds: float,
                  reader: str = "ffmpeg", after_arrival: list[float] | None = None) -> list[float]:
    """ms from the rig sending each frame to the reader handing its unit to the video sink;
    `after_arrival` gets the ms from each unit's capture time (for our reader: its last RTP
    packet's arrival) to the hand-over."""
    units: list[tuple[float, bytes]] = []

    def sink(header: capture.VideoHeader, data: bytes) -> None:
        units.append((time.monotonic(), data))
        if after_arrival is not None:
            after_arrival.append(1000.0 * (time.time() - header["captured_at"]))

    capture.RTSP_OPTIONS = {**BASE, **options}
    before = capture.RTSP_READER
    capture.use_rtsp_reader(reader)  # type: ignore[arg-type]
    try:
        thread = capture.CaptureThread("bench", rig.url(mount), "main-keyframes", decode=False)
        thread.want_video = True
        thread.on_video = sink
        thread.start()
        time.sleep(seconds)
        thread.stop()
        thread.join(10)
    finally:
        capture.RTSP_OPTIONS = dict(BASE)
        capture.use_rtsp_reader(before)
    if thread.error and not units:
        raise RuntimeError(f"the reader failed: {thread.error}")
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    delays = []
    skip = 2  # the rig's first unit is the latest IDR, sent at DESCRIBE: not a live frame
    for i, (t, data) in enumerate(units):
        for picture in decoder.decode(av.Packet(data)):
            if i < skip:
                continue
            try:
                index = decode_counter(picture.to_ndarray(format="gray"))
            except CounterError:
                continue
            delays.append(1000.0 * (t - rig.sent_time(mount, index, at=t)))
    return delays


def probe_delays(rig: RtspRig, mount: str, seconds: float, gop: int = 25) -> list[float]:
    """ms from the rig sending each frame to its last RTP packet arriving (no parser at all).
    The probe does not decode: a keyframe's tick is the latest one before it arrived that shows
    a keyframe of the clip (every `gop` frames from 0), the others follow by RTP timestamp."""
    with RtspProbe(rig.url(mount)) as probe:
        frames = probe.read_frames(seconds)[1:]  # the first: the IDR held since DESCRIBE
    info = rig.ready["mounts"][mount]
    fps, n, t0 = float(info["fps"]), int(info["frames"]), float(info["t0"])
    key = next(f for f in frames if f.keyframe)
    tick = int((key.arrival - t0) * fps)
    while (tick % n) % gop:
        tick -= 1
    step = 90000 / fps
    out = []
    for f in frames:
        k = tick + round(((f.rtp_ts - key.rtp_ts + (1 << 31)) % (1 << 32) - (1 << 31)) / step)
        out.append(1000.0 * (f.arrival - (t0 + k / fps)))
    return out


def reader_cpu(rig: RtspRig, mount: str, reader: str, seconds: float, decode: bool = True) -> float:
    """% of one core the reader takes for one camera, read as the service reads a main stream:
    every unit to a (no-op) video sink, keyframes decoded and reduced for the tiles (with
    `decode=False`: a video-only reader, nothing decoded). This process does nothing else
    meanwhile; the rig is another process."""
    before = capture.RTSP_READER
    capture.use_rtsp_reader(reader)  # type: ignore[arg-type]
    try:
        thread = capture.CaptureThread("bench", rig.url(mount), "main-keyframes", decode=decode)
        thread.want_video = True
        thread.on_video = lambda header, data: None
        thread.start()
        if not thread.opened.wait(10):
            raise RuntimeError(f"the {reader} reader did not open: {thread.error}")
        time.sleep(1.0)  # past the open and the first keyframe
        t0, c0 = time.monotonic(), os.times()
        time.sleep(seconds)
        c1, t1 = os.times(), time.monotonic()
        thread.stop()
        thread.join(10)
    finally:
        capture.use_rtsp_reader(before)
    if thread.error and thread.frames == 0:
        raise RuntimeError(f"the {reader} reader failed: {thread.error}")
    return 100.0 * ((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0)


class _Replay:
    """Stands in for the camera's socket: hands back captured interleaved RTP, `chunk` bytes
    a recv, so the cost of our Python RTP path is measured without the network's."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.at, self.chunk = data, 0, chunk

    def settimeout(self, _timeout: float) -> None:
        pass

    def setblocking(self, _flag: bool) -> None:
        pass

    def poll(self, _timeout_ms: float) -> list[tuple[int, int]]:
        """Stands in for the session's poll object too: data is always there."""
        return [(0, 1)]

    def recv(self, _size: int) -> bytes:
        self.at += self.chunk
        return self.data[self.at - self.chunk:self.at]


def per_packet_cost(clip: str, seconds: float) -> dict[str, float]:
    """CPU us per RTP packet of our reader's Python path (RTSP framing, depacketising, the
    contract conversion), on packets captured from the rig and replayed from memory."""
    from camera.h264 import AccessUnits
    from camera.rtp_h264 import AccessUnit, Depacketizer
    from camera.rtsp_client import RtspSession

    name = clip.split(".")[0]
    with RtspRig([Mount(name, clip)]) as rig:
        session = RtspSession(rig.url(name))
        session.open()
        packets = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            got = session.read(1.0)
            if got is not None:
                packets.append(got[0])
        session.close()
    wire = b"".join(b"$\x00" + len(p).to_bytes(2, "big") + p for p in packets)
    out = {}
    for chunk in (1500, 65536):  # one packet a recv, or whatever a frame's burst leaves
        t0 = time.process_time()
        for _ in range(10):
            replay = RtspSession("rtsp://127.0.0.1:1/replay")
            replay._sock = replay._poll = _Replay(wire, chunk)  # type: ignore[assignment]
            replay._last_request = time.monotonic()
            depacketizer, units = Depacketizer(96), AccessUnits(None)
            finished: list[AccessUnit] = []
            left = len(packets)
            while left:  # as camera/rtp_reader.py reads
                got = replay.read_packets(1.0)
                assert got is not None
                left -= len(got[0])
                for raw in got[0]:
                    depacketizer.feed(raw, got[1], finished)
                    for unit in finished:
                        units.convert(unit.data, unit.key)
                    finished.clear()
        us = 1e6 * (time.process_time() - t0) / 10 / len(packets)
        out[f"us_per_packet_recv_{chunk}"] = round(us, 2)
        out[f"core_pct_recv_{chunk}"] = round(us * len(packets) / seconds / 1e4, 3)
    print(f"\n{clip}: {len(packets) / seconds:.0f} RTP packets/s; our Python path "
          + ", ".join(f"{k} {v}" for k, v in out.items()))
    return out


def compare_readers(clips: list[str], runs: int, seconds: float) -> dict[str, Any]:
    """FFmpeg's reader (the service's options) against ours, on the same rig mount."""
    result: dict[str, Any] = {}
    for clip in clips:
        name = clip.split(".")[0]
        with RtspRig([Mount(name, clip)]) as rig:
            rows: dict[str, dict[str, list[float]]] = {}
            for _ in range(runs):
                d = probe_delays(rig, name, seconds)
                row = rows.setdefault("last RTP packet (probe)", {})
                row.setdefault("p50", []).append(statistics.median(d))
                row.setdefault("p95", []).append(pctl(d, 0.95))
                for reader in ("ffmpeg", "own"):
                    after: list[float] = []
                    d = reader_delays(rig, name, {}, seconds, reader, after)
                    row = rows.setdefault(reader, {})
                    row.setdefault("p50", []).append(statistics.median(d))
                    row.setdefault("p95", []).append(pctl(d, 0.95))
                    if reader == "own":
                        row.setdefault("after_p50", []).append(statistics.median(after))
                        row.setdefault("after_p95", []).append(pctl(after, 0.95))
                    row.setdefault("cpu", []).append(reader_cpu(rig, name, reader, seconds))
                    row.setdefault("cpu_video_only", []).append(reader_cpu(rig, name, reader, seconds, decode=False))
            late = rig.status()["mounts"][name].get("late_ms")
        print(f"\n{clip}: medians of {runs} runs of {seconds:g} s")
        print(f"  {'reader':<26} {'sent->handed p50':>16} {'p95':>6} {'last pkt->handed p50':>21} {'p95':>6}"
              f" {'CPU % core':>10} {'video-only':>10}")
        result[name] = {}
        for label, row in rows.items():
            fig = {k: round(statistics.median(v), 2) for k, v in row.items()}
            result[name][label] = fig
            after = (f"{fig['after_p50']:21.2f} {fig['after_p95']:6.2f}" if "after_p50" in fig
                     else f"{'-':>21} {'-':>6}")
            cpu = (f"{fig['cpu']:10.1f} {fig['cpu_video_only']:10.1f}" if "cpu" in fig
                   else f"{'-':>10} {'-':>10}")
            print(f"  {label:<26} {fig['p50']:16.1f} {fig['p95']:6.1f} {after} {cpu}")
        print(f"  (the rig's own lateness in sending: {late}; load: {os.getloadavg()})")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", action="append", help="counter clip(s) (default: 360p and 1080p)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--readers", action="store_true", help="FFmpeg's reader against ours (delays and CPU)")
    p.add_argument("--per-packet", action="store_true", help="CPU per RTP packet of our reader's Python path")
    args = p.parse_args()
    clips = args.clip or ["counter-360p.mp4", "counter-1080p.mp4"]
    if args.per_packet:
        print(json.dumps({c.split(".")[0]: per_packet_cost(c, args.seconds) for c in clips}))
        return
    if args.readers:
        print(json.dumps(compare_readers(clips, args.runs, args.seconds)))
        return
    result: dict[str, Any] = {}
    for clip in clips:
        name = clip.split(".")[0]
        with RtspRig([Mount(name, clip)]) as rig:
            runs: dict[str, list[tuple[float, float]]] = {
                k: [] for k in ["last RTP packet (probe)", *OPTION_SETS, OWN]}
            for _ in range(args.runs):
                d = probe_delays(rig, name, args.seconds)
                runs["last RTP packet (probe)"].append((statistics.median(d), pctl(d, 0.95)))
                for label, options in OPTION_SETS.items():
                    d = reader_delays(rig, name, options, args.seconds)
                    runs[label].append((statistics.median(d), pctl(d, 0.95)))
                d = reader_delays(rig, name, {}, args.seconds, "own")
                runs[OWN].append((statistics.median(d), pctl(d, 0.95)))
            print(f"\n{clip}: ms from the rig sending a frame (medians of {args.runs} runs of {args.seconds:g} s)")
            print(f"  {'reader':<28} {'p50':>6} {'p95':>6}")
            result[name] = {}
            for label, vals in runs.items():
                p50 = statistics.median(v[0] for v in vals)
                p95 = statistics.median(v[1] for v in vals)
                result[name][label] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1)}
                print(f"  {label:<28} {p50:6.1f} {p95:6.1f}")
            late = rig.status()["mounts"][name].get("late_ms")
            print(f"  (the rig's own lateness in sending: {late})")
    print(json.dumps(result))


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
