"""What one OpenCV RTSP client costs: run in a process of its own, prints one JSON line.

    python -m tests.rigs.rtsp.cv_measure rtsp://127.0.0.1:8554/street-1080p \
        --options 'rtsp_transport;tcp|avdiscard;nonkey' --seconds 5 [--threads 1]

Opens the stream as the camera service will (FFmpeg backend, open/read timeouts), reads
for ``--warmup`` seconds, then counts frames and this process's CPU time (all threads:
demux, decode, colour conversion) over ``--seconds``.  ``cpu_pct`` is of one core.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--options", default="rtsp_transport;tcp", help="OPENCV_FFMPEG_CAPTURE_OPTIONS")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=0, help="CAP_PROP_N_THREADS (0: OpenCV's default)")
    ap.add_argument("--timeout-ms", type=int, default=5000)
    args = ap.parse_args()
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = args.options
    import cv2  # after the environment is set

    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, args.timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, args.timeout_ms]
    if args.threads:
        params += [cv2.CAP_PROP_N_THREADS, args.threads]
    t_open = time.monotonic()
    cap = cv2.VideoCapture(args.url, cv2.CAP_FFMPEG, params)
    opened = cap.isOpened()
    open_s = time.monotonic() - t_open
    out: dict[str, object] = {"url": args.url, "options": args.options, "opened": opened,
                              "open_s": round(open_s, 3), "threads": cap.get(cv2.CAP_PROP_N_THREADS)}
    if opened:
        end_warm = time.monotonic() + args.warmup
        shape = None
        while time.monotonic() < end_warm:
            ok, frame = cap.read()
            if not ok:
                break
            shape = frame.shape
        c0, t0, n, failed = cpu_seconds(), time.monotonic(), 0, 0
        while time.monotonic() - t0 < args.seconds:
            ok, frame = cap.read()
            if ok:
                n += 1
                shape = frame.shape
            else:
                failed += 1
                if failed > 3:
                    break
        wall, cpu = time.monotonic() - t0, cpu_seconds() - c0
        out.update(frames=n, failed_reads=failed, wall_s=round(wall, 3), fps=round(n / wall, 2),
                   cpu_pct=round(100 * cpu / wall, 1), shape=list(shape) if shape else None)
        cap.release()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
