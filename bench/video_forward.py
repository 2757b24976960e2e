#!/usr/bin/env python3
"""What forwarding live video costs the camera service, alone, with and without it in one run.

N rig mounts of the 1080p25 counter clip (2.3 Mbit/s, keyframes spread over the 1 s GOP, as
in bench/cameras.py), each read by a video-only `camera.capture.CaptureThread` (our RTSP
reader, nothing decoded: the service's reader of a camera's main stream while its tiles come
from the sub-stream), its units framed by the service's forwarder and published through an
`MqttLink` to a private Mosquitto, as `ioc cameras` does. The readers run throughout; the
video is switched on and off (the wall's demand) in alternating windows, so both sides see
the same machine at the same minute. CPU is read per thread from /proc: the readers
(`cap:<camera>`) and the event loop. No picture is decoded, so the figures are the video
path's own, without the keyframe decoding that dominates (and blurs) bench/cameras.py.

    python bench/video_forward.py                          # 10 cameras, 3 rounds of 6 s each way
    python bench/video_forward.py --cameras 10 --rounds 5 --seconds 8

To measure a tree from before the outbox (4111f63 and older), copy this file into it: it
falls back to that forwarder. Prints figures, never passes or fails; the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from camera.capture import CaptureThread  # noqa: E402
from camera import video  # noqa: E402
from ioc.core.mqtt.broker_files import BrokerAccount  # noqa: E402
from ioc.core.mqtt.link import MqttLink  # noqa: E402
from ioc.core.passwords import hash_password  # noqa: E402
from ioc.core.settings import parse_mqtt_url  # noqa: E402
from tests.rigs.mosquitto import MosquittoRig  # noqa: E402
from tests.rigs.rtsp.rig import Mount, RtspRig  # noqa: E402

CLIP = "counter-1080p.mp4"
GOP = 25
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's readers and of its main thread."""
    out = {"readers": 0.0, "loop": 0.0, "other": 0.0}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # a thread that ended
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        group = "readers" if name.startswith("cap:") else "loop" if tid == str(os.getpid()) else "other"
        out[group] += (int(fields[11]) + int(fields[12])) / TICK
    return out


def forwarders(loop: asyncio.AbstractEventLoop, link: MqttLink, cameras: list[str]) -> tuple[list[Any], Any]:
    """The cameras' forwarders and their outbox (None before there was one)."""
    outbox_class = getattr(video, "VideoOutbox", None)
    if outbox_class is None:  # the forwarder before the outbox: one hand-over and one paho publish per unit
        return [video.VideoForwarder(loop, lambda t, p: link.publish(t, p, qos=0, retain=False),  # type: ignore[arg-type]
                                     cam, "main") for cam in cameras], None
    outbox = outbox_class(loop, link.publish_many)
    return [video.VideoForwarder(outbox, cam, "main") for cam in cameras], outbox


async def measure(rig: RtspRig, broker: MosquittoRig, password: str, args: argparse.Namespace) -> dict[str, Any]:
    link = MqttLink(parse_mqtt_url(broker.url_for("bench-camera", password)), "cameras-bench-forward")
    link_task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 10)
    cameras = list(rig.mounts)
    readers = []
    sinks, outbox = forwarders(asyncio.get_running_loop(), link, cameras)
    for cam, fwd in zip(cameras, sinks):
        t = CaptureThread(cam, rig.url(cam), "main-keyframes", stream="main", decode=False)
        t.on_video = fwd
        t.start()
        readers.append(t)
    windows: dict[str, list[dict[str, float]]] = {"video": [], "none": []}
    try:
        await asyncio.sleep(3.0)  # every reader open and past its first keyframe
        if not all(t.opened.is_set() and t.is_alive() for t in readers):
            raise SystemExit(f"readers did not open: {[t.error for t in readers if t.error]}")
        for _ in range(args.rounds):
            for side in ("video", "none"):
                for t in readers:
                    t.want_video = side == "video"
                await asyncio.sleep(1.0)  # settle: the forwarder starts on a keyframe
                c0, f0, w0 = thread_cpu_s(), sum(t.frames for t in readers), time.monotonic()
                await asyncio.sleep(args.seconds)
                c1, f1, w1 = thread_cpu_s(), sum(t.frames for t in readers), time.monotonic()
                fig = {g: 100.0 * (c1[g] - c0[g]) / (w1 - w0) for g in c1}
                fig["all"] = sum(fig.values())
                fig["units_per_s"] = (f1 - f0) / (w1 - w0)
                windows[side].append(fig)
                print(f"  {side:<5} all {fig['all']:5.1f}%  readers {fig['readers']:5.1f}  loop {fig['loop']:5.1f}"
                      f"  other {fig['other']:4.1f}  units/s {fig['units_per_s']:5.0f}"
                      f"  load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for t in readers:
            t.stop()
        for t in readers:
            t.join(3.0)
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
    out: dict[str, Any] = {}
    for side, figs in windows.items():
        out[side] = {k: round(statistics.median(f[k] for f in figs), 2) for k in figs[0]}
    out["forwarding_pct"] = round(out["video"]["all"] - out["none"]["all"], 2)
    handed = sum(getattr(f, "handed", getattr(f, "_handed", 0)) for f in sinks)
    wakeups = outbox.wakeups if outbox is not None else handed  # before the outbox: one per unit
    out["units_per_wakeup"] = round(handed / max(wakeups, 1), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3, help="windows each way; figures are medians")
    p.add_argument("--seconds", type=float, default=6.0, help="length of each window")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ioc-bench-forward-"))
    password = secrets.token_urlsafe(16)
    broker = MosquittoRig(tmp / "mosquitto", [BrokerAccount("bench-camera", hash_password(password), "camera")])
    broker.start()
    mounts = [Mount(f"cam{i + 1:02d}", CLIP, offset=(i * GOP) // args.cameras) for i in range(args.cameras)]
    try:
        with RtspRig(mounts, log_dir=tmp / "rtsp") as rig:
            print(f"{args.cameras} video-only readers of {CLIP}; {args.rounds} windows of {args.seconds:g} s "
                  "each way, % of one core", flush=True)
            result = asyncio.run(measure(rig, broker, password, args))
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"medians: with video {result['video']['all']:.1f}% (readers {result['video']['readers']:.1f}, "
          f"loop {result['video']['loop']:.1f}), without {result['none']['all']:.1f}% "
          f"(readers {result['none']['readers']:.1f}); forwarding {result['forwarding_pct']:.1f}% of a core "
          f"for {result['video']['units_per_s']:.0f} units/s, {result['units_per_wakeup']:.1f} units per wake-up "
          f"of the loop; load {os.getloadavg()}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
