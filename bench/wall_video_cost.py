#!/usr/bin/env python3
"""What the wall hub spends per delivered video frame (issue 11's target: <= 15 us).

The hub runs in this process with its real websocket server; its clients (9 screens and
50 tablets on the `phu-ly-cameras` layout, as in issue 11's benchmark) run in a child
process that does the websocket handshake and the hello by hand and then only drains its
sockets, so their cost is not counted here. Ten cameras' main (1080p) and sub (360p)
streams, the rig's counter clips as IOCV frames, are handed to `Hub.on_message` at 25 fps
each, as the MQTT link would; the time inside those calls (header check, framing once,
GOP cache, one write per client) over the frames written is the figure. The process CPU
per delivered frame (everything else in this process included: the feeder, the server's
pings) is printed beside it. No broker, no database: this measures the fan-out alone.

    python bench/wall_video_cost.py [--seconds 15] [--tablets 50]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import selectors
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:1] = [str(REPO)]

from bench.ws_drain import ws_client  # noqa: E402
from dashboards import LAYOUTS  # noqa: E402
from ioc.core.contracts import topics  # noqa: E402
from ioc.core.contracts.video_frame import VideoHeader, encode_video  # noqa: E402
from ioc.serve.wall.hub import Hub  # noqa: E402
from ioc.serve.wall.layout import load_presets  # noqa: E402
from ioc.serve.wall.server import start_server  # noqa: E402
from ioc.core.contracts.wall import WallState  # noqa: E402
from tests.rigs.rtsp.rig import media_path  # noqa: E402
from tests.rigs.video_replay import load_clip  # noqa: E402

CAMERAS = [f"pl-{i:02d}" for i in range(1, 11)]


def clients_main(port: int, tablets: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    socks = [ws_client(port, {"type": "hello", "token": "x", "role": "screen", "screen": n})[0] for n in range(1, 10)]
    socks += [ws_client(port, {"type": "hello", "token": "x", "role": "tablet"})[0] for _ in range(tablets)]
    out.put("ready")
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    received = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in sel.select(0.1):
            try:
                received += len(key.fileobj.recv(1 << 20))  # type: ignore[union-attr]
            except BlockingIOError:
                pass
    out.put(received)


async def run(seconds: float, tablets: int) -> None:
    clips = {"main": load_clip(media_path("counter-1080p.mp4")), "sub": load_clip(media_path("counter-360p.mp4"))}
    presets = load_presets(LAYOUTS)
    hub = Hub(presets)
    hub.apply_state(WallState("phu-ly-cameras", 1, time.time()))

    async def authorize(token: str) -> tuple[str, str]:
        return "bench", "admin"

    server = await start_server(hub, authorize, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    child = ctx.Process(target=clients_main, args=(port, tablets, seconds + 8, out))
    child.start()
    await asyncio.to_thread(out.get)
    while len(hub.clients) < 9 + tablets:
        await asyncio.sleep(0.1)
    # every camera's keyframes at a different moment, as real cameras have them
    payloads = {(cam, stream): [] for cam in CAMERAS for stream in ("main", "sub")}
    for (cam, stream), frames in payloads.items():
        clip = clips[stream]
        offset = CAMERAS.index(cam) * 2
        for i in range(250):
            unit, key = clip.units[(i + offset) % len(clip.units)]
            head: VideoHeader = {"camera": cam, "stream": stream, "seq": i + 1, "captured_at": 0.0, "key": key,
                                 "codec": clip.codec, "width": clip.width, "height": clip.height}
            frames.append((topics.live_camera(cam, "video/main" if stream == "main" else "video/sub"),
                           bytearray(encode_video(head, unit))))
    spent = spent_cpu = 0  # ns inside the hub: wall clock, and this thread's CPU
    calls = 0
    delivered0, skipped0 = hub.video_delivered, hub.video_skipped
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    tick = 0
    on_message = hub.on_message
    while time.monotonic() - t0 < seconds:
        for frames in payloads.values():
            topic, payload = frames[tick % len(frames)]
            a, ca = time.perf_counter_ns(), time.thread_time_ns()
            on_message(topic, payload, 0, 0, False, 0)
            spent += time.perf_counter_ns() - a
            spent_cpu += time.thread_time_ns() - ca
            calls += 1
        tick += 1
        if tick % 25 == 0:
            hub.tick()
        await asyncio.sleep(max(0.0, t0 + tick / 25 - time.monotonic()))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    delivered = hub.video_delivered - delivered0
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    received = await asyncio.to_thread(out.get)
    child.join(5)
    server.close()
    print(f"{len(hub.clients)} clients ({tablets} tablets), {seconds:.0f} s, {calls} IOCV messages in, "
          f"{delivered} frames written, {hub.video_skipped - skipped0} skipped; clients read {received / 1e6:.0f} MB")
    print(f"hub, inside on_message: {spent_cpu / 1000 / max(delivered, 1):.2f} us CPU per delivered frame "
          f"({spent_cpu / 1e9 / seconds * 100:.1f}% of a core; {spent / 1000 / max(delivered, 1):.2f} us wall clock, "
          f"the machine is shared)")
    print(f"this process, all CPU:  {cpu * 1e6 / max(delivered, 1):.2f} us per delivered frame "
          f"({cpu / seconds * 100:.1f}% of a core)")
    print(f"GOP cache: {hub.video_buffered() / 1e6:.1f} MB for {len(hub.videos)} streams")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--tablets", type=int, default=50)
    args = ap.parse_args()
    asyncio.run(run(args.seconds, args.tablets))
