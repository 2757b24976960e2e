#!/usr/bin/env python3
"""What recording costs: ten 1080p25 rig cameras recorded continuously (issue 12's targets:
<= 3% of one core in total for recording, seek-to-first-frame p95 <= 300 ms).

Ten RTSP cameras (the rig's `street-1080p` clip, one shared server) are read by ten reader
threads as the camera service reads a main stream it only forwards and records (PyAV,
`main-keyframes`, no decoding: the recorder's cost is what changes). Runs alternate with the
recorders on and off, `--runs` times each; the process CPU of each run is measured, and the
recording's cost is the difference of the medians. The rig's server runs in another
process and is not counted.

Then: the disk each camera uses per day at this bit rate (the bytes of the closed segments
over the seconds they cover, times 86400), and seek-to-first-frame: for random instants in
what was recorded, find the segment that holds it (the index's question, answered here from
the list of closed segments), open it, seek to the keyframe before the instant and decode
the first picture; p50 and p95 over `--seeks` instants.

    python bench/recording.py [--seconds 20] [--runs 3] [--seeks 200]

Prints the figures and a final JSON line.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:1] = [str(REPO)]

import av  # noqa: E402

from camera.capture import CaptureThread  # noqa: E402
from camera.recorder import Recorder, SegmentDone  # noqa: E402
from tests.rigs.rtsp.rig import CameraFleet  # noqa: E402


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(urls: dict[str, str], seconds: float, root: Path | None, segment_s: float,
        done: list[SegmentDone]) -> tuple[float, int]:
    """One run: the readers (with recorders when `root` is given) for `seconds`; (CPU s, frames)."""
    threads = []
    for name, url in urls.items():
        t = CaptureThread(name, url, "main-keyframes", stream="main", decode=False)
        if root is not None:
            rec = Recorder(name, root, segment_s=segment_s, on_segment=done.append, on_state=lambda s, why: None)
            rec.mode = "continuous"
            t.recorder = rec
        threads.append(t)
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not all(t.frames > 25 for t in threads):  # every camera open and streaming
        if time.monotonic() > deadline:
            raise SystemExit(f"cameras did not stream: {[t.error for t in threads if t.frames <= 25]}")
        time.sleep(0.2)
    c0, f0 = cpu_s(), sum(t.frames for t in threads)
    time.sleep(seconds)
    c1, f1 = cpu_s(), sum(t.frames for t in threads)
    for t in threads:
        t.stop()
    for t in threads:
        t.join(10)
    return c1 - c0, f1 - f0


def seek_first_frame(root: Path, segments: list[SegmentDone], at: float) -> float:
    """Seconds from the instant to the first decoded picture at (or just before) it."""
    t0 = time.perf_counter()
    starts = [s.start for s in segments]
    seg = segments[bisect.bisect_right(starts, at) - 1]
    with av.open(str(root / seg.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        offset = max(0.0, at - seg.start)
        assert stream.time_base is not None
        container.seek(int(offset / float(stream.time_base)), stream=stream, backward=True, any_frame=False)
        for _ in container.decode(stream):
            break
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0, help="each measured run")
    ap.add_argument("--runs", type=int, default=3, help="runs with and without recording, alternating")
    ap.add_argument("--segment-s", type=float, default=4.0)
    ap.add_argument("--seeks", type=int, default=200)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ioc-rec-bench-"))
    try:
        with CameraFleet(args.cameras, "street-1080p.mp4") as fleet:
            urls = fleet.urls()
            on: list[float] = []
            off: list[float] = []
            frames = 0
            done: list[SegmentDone] = []
            for i in range(args.runs):
                for recording in (False, True) if i % 2 == 0 else (True, False):
                    root = work / f"run{i}" if recording else None
                    cpu, n = run(urls, args.seconds, root, args.segment_s, done if i == 0 and recording else [])
                    (on if recording else off).append(cpu / args.seconds)
                    frames = max(frames, n)
                    print(f"run {i + 1} {'recording' if recording else 'reading  '}: "
                          f"{100 * cpu / args.seconds:.1f}% of a core, {n / args.seconds / args.cameras:.1f} fps per camera",
                          flush=True)
        root = work / "run0"
        segments = sorted(done, key=lambda s: s.start)
        per_camera: dict[str, tuple[int, float]] = {}
        for s in segments:
            b, secs = per_camera.get(s.camera, (0, 0.0))
            per_camera[s.camera] = (b + s.bytes, secs + s.end - s.start)
        day_bytes = statistics.median(b / secs * 86400 for b, secs in per_camera.values())
        mbit = statistics.median(b * 8 / secs / 1e6 for b, secs in per_camera.values())
        durations = [s.end - s.start for s in segments]
        # seeks: one camera's segments at a time (the index answers per camera)
        rng = random.Random(12)
        times = []
        by_cam: dict[str, list[SegmentDone]] = {}
        for s in segments:
            by_cam.setdefault(s.camera, []).append(s)
        cams = sorted(by_cam)
        for k in range(args.seeks):
            segs = by_cam[cams[k % len(cams)]]
            at = rng.uniform(segs[0].start, segs[-1].end - 0.05)
            times.append(seek_first_frame(root, segs, at))
        times.sort()
        p50 = times[len(times) // 2]
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        cost = statistics.median(on) - statistics.median(off)
        print(f"{args.cameras} cameras, 1080p25, {len(segments)} segments of {statistics.median(durations):.1f} s "
              f"(median) in the first recorded run")
        print(f"CPU, median of {args.runs} runs: reading {100 * statistics.median(off):.1f}% of a core, "
              f"reading + recording {100 * statistics.median(on):.1f}% -> recording costs {100 * cost:.2f}% of one "
              f"core for all {args.cameras} cameras (target <= 3%)")
        print(f"disk: {day_bytes / 1e9:.1f} GB per camera-day ({mbit:.2f} Mbit/s, the clip's own bit rate)")
        print(f"seek to first frame over {len(times)} instants: p50 {1000 * p50:.0f} ms, p95 {1000 * p95:.0f} ms "
              f"(target p95 <= 300 ms)")
        print(json.dumps({"bench": "recording", "cameras": args.cameras, "seconds": args.seconds, "runs": args.runs,
                          "cpu_reading_pct": round(100 * statistics.median(off), 2),
                          "cpu_recording_pct": round(100 * statistics.median(on), 2),
                          "recording_cost_pct_of_core": round(100 * cost, 2),
                          "disk_gb_per_camera_day": round(day_bytes / 1e9, 2), "mbit_s": round(mbit, 2),
                          "segments": len(segments), "seek_p50_ms": round(1000 * p50, 1),
                          "seek_p95_ms": round(1000 * p95, 1)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
