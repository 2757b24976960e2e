#!/usr/bin/env python3
"""How fast a replay of the whole wall starts (issue 12's target: <= 1 s).

Set up like bench/wall.py (a fresh database, a private Mosquitto, `ioc serve` with the wall
hub, switches announced with no delay): the ten Phủ Lý cameras are "recorded" (the rig's
counter clip remuxed into fMP4 segments, as the camera service writes them, indexed: its
1080p clip as the main stream, its 360p clip as the sub-stream, as a camera with both records
them), the wall shows the `phu-ly-cameras` layout, and nine Chromium pages are the nine screens. Each
run: an operator's `POST /api/v1/wall/replay {"action": "start"}` at a past instant, then the
time until every screen has its replay on and every camera tile of it shows the recorded
picture (the <video> on show has a frame: readyState >= 2); the figure is that time for the
last of the nine screens. Each replay tile plays the stream its size calls for (the live
rule: wider than the HD threshold, main; else sub, where recorded), a large one showing its
sub-stream's picture first; the second figure is the time until every tile shows the stream
its size calls for, and the run says how many played which. Then back to live, and again.

With `--announce S` the replay is announced S seconds ahead (as the wall announces every
change, `IOC_WALL_SWITCH_DELAY_S`, 1.5 s by default): the screens make it ready out of sight
meanwhile, and both figures count from the instant they change.

    python bench/replay.py [--runs 5] [--clip counter-1080p.mp4] [--sub-clip counter-360p.mp4]
                           [--screens 1,2,...,9] [--announce 1.5] [--timings]

`--sub-clip ""` records no sub-stream (every tile plays the main one).

Prints the figures and a final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:1] = [str(REPO)]

import httpx  # noqa: E402

from bench.wall import World, parse_args as wall_args, say  # noqa: E402
from ioc.core.contracts.video_frame import Stream  # noqa: E402
from ioc.core.recordings import segment_path  # noqa: E402
from tests.rigs.rtsp.rig import media_path  # noqa: E402
from tests.test_wall_pages import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

LAYOUT = "phu-ly-cameras"
SEGMENT_S = 4
SEGMENTS = 8  # 32 s recorded per camera

READY = """(cams) => document.body.dataset.replay === "on"
  && document.querySelectorAll("#past .tile-camera").length === cams
  && document.querySelectorAll("#past .tile-camera video.rec-active").length === cams
  && [...document.querySelectorAll("#past .tile-camera video.rec-active")].every((v) => v.readyState >= 2)"""
# and each tile plays the stream its size calls for (a large one shows its sub-stream's picture first)
FULL = READY + """
  && [...document.querySelectorAll("#past .tile-camera")].every((t) => t.dataset.stream === t.dataset.wants)"""
# when the page took the replay message, and each request it made since the timings were cleared
TIMINGS = """() => [["message", window.__ioc.replayChanged || 0, 0],
  ...performance.getEntriesByType("resource").map((e) => [e.name.includes("/wall/at") ? "wall/at"
    : `segment ${e.name.split("/").pop()}`, (performance.timeOrigin + e.startTime) / 1000,
    (performance.timeOrigin + e.responseEnd) / 1000])]"""
STREAMS_SHOWN = """() => [...document.querySelectorAll("#past .tile-camera")].map((t) => t.dataset.stream)"""


def record(world: World, root: Path, clips: dict[Stream, Path], start: float) -> None:
    """Every camera's segments of each stream from `start` on: its clip cut at its keyframes,
    remuxed to fMP4."""
    import asyncpg

    from ioc.core.storage import recordings as store

    rows: dict[Stream, list[tuple[str, float, float, int, str]]] = {stream: [] for stream in clips}
    for stream, clip in clips.items():
        for i in range(SEGMENTS):
            part = root / f"seg-{stream}-{i}.mp4"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(i * SEGMENT_S), "-i", str(clip),
                            "-t", str(SEGMENT_S), "-an", "-c", "copy", "-f", "mp4",
                            "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(part)], check=True)
            for cam in (f"pl-{n:02d}" for n in range(1, 11)):
                s, e = start + i * SEGMENT_S, start + (i + 1) * SEGMENT_S
                rel = segment_path(cam, s, e, stream)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(part.read_bytes())
                rows[stream].append((cam, s, e, part.stat().st_size, rel))

    async def index() -> None:
        conn = await asyncpg.connect(world.db_url)
        try:
            for stream, batch in rows.items():
                await store.add_segments(conn, batch, stream)
        finally:
            await conn.close()

    asyncio.run(index())


async def measure(world: World, runs: int, start: float, screens: list[int], announce: float,
                  timings: bool) -> tuple[list[float], list[float], dict[str, int]]:
    from playwright.async_api import async_playwright

    from ioc.serve.wall.layout import load_presets
    from dashboards import LAYOUTS

    layout = load_presets(LAYOUTS)[LAYOUT]
    cams = {n: sum(1 for t in layout.tiles_for(n) if t.kind == "camera") for n in range(1, 10)}
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}
    out, full = [], []
    since = "the screens changed" if announce else "the command"
    shown: dict[str, int] = {}
    async with async_playwright() as p, httpx.AsyncClient(base_url=world.serve.base, timeout=30) as http:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = await browser.new_context(viewport={"width": 1920, "height": 1080})
        pages = {}
        for n in screens:
            page = await ctx.new_page()
            await page.goto(f"{world.serve.base}/wall/screen.html?screen={n}#token={world.tokens['screen']}")
            await page.wait_for_function(f"() => document.body.dataset.layout === {LAYOUT!r}", timeout=30000)
            pages[n] = page
        for run in range(runs):
            t = start + 2 + run * 2.5  # another instant each run: nothing cached in the pages
            if timings:
                await asyncio.gather(*(page.evaluate("() => performance.clearResourceTimings()")
                                       for page in pages.values()))
            t0, e0 = time.perf_counter(), time.time()
            r = await http.post("/api/v1/wall/replay", json={"action": "start", "t": _iso(t), "speed": 1,
                                                             "delay_s": announce}, headers=admin)
            r.raise_for_status()
            if announce:  # counted from the instant the screens change
                t0 += r.json()["at"] - e0
            await asyncio.gather(*(page.wait_for_function(READY, arg=cams[n], timeout=30000, polling=10)
                                   for n, page in pages.items()))
            took = time.perf_counter() - t0
            out.append(took)
            for n, page in pages.items() if timings else ():
                spans = " ".join(f"{name} {(a - e0) * 1000:.0f}" + (f"-{(b - e0) * 1000:.0f}" if b else "")
                                 for name, a, b in await page.evaluate(TIMINGS))
                say(f"  screen {n}, ms after the command: {spans}")
            await asyncio.gather(*(page.wait_for_function(FULL, arg=cams[n], timeout=30000, polling=10)
                                   for n, page in pages.items()))
            full.append(time.perf_counter() - t0)
            if run == 0:
                for page in pages.values():
                    for stream in await page.evaluate(STREAMS_SHOWN):
                        shown[str(stream)] = shown.get(str(stream), 0) + 1
                say(f"camera tiles playing each stream: {shown}")
            say(f"run {run + 1}: screens {screens} replaying, every camera tile showing its recording, "
                f"{took * 1000:.0f} ms after {since}; each in the stream its size calls for: "
                f"{full[-1] * 1000:.0f} ms")
            r = await http.post("/api/v1/wall/replay", json={"action": "live"}, headers=admin)
            r.raise_for_status()
            await asyncio.gather(*(page.wait_for_function("() => document.body.dataset.replay === 'off'",
                                                          timeout=30000) for page in pages.values()))
        await browser.close()
    return out, full, shown


def _iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--clip", default="counter-1080p.mp4", help="the rig's clip each camera's main stream 'recorded'")
    p.add_argument("--sub-clip", default="counter-360p.mp4",
                   help="the rig's clip each camera's sub-stream 'recorded' ('': no sub-stream recording)")
    p.add_argument("--announce", type=float, default=0.0,
                   help="announce the replay this many seconds ahead (delay_s; the wall's default is 1.5): "
                        "the screens get ready meanwhile, and the figures count from the instant they change")
    p.add_argument("--timings", action="store_true",
                   help="print, per run and screen, when its replay message came and its requests ran")
    p.add_argument("--screens", default="1,2,3,4,5,6,7,8,9",
                   help="which screens Chromium opens (all nine in one browser share this box's cores)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ioc-bench-replay-"))
    root = tmp / "recordings"
    root.mkdir()
    wargs = wall_args(["--scenario", "agency", "--serve-env", f"IOC_RECORDINGS_DIR={root}"])
    world = World(wargs, tmp)
    try:
        world.setup()
        world.switch(LAYOUT)
        start = time.time()
        clips: dict[Stream, Path] = {"main": media_path(args.clip)}
        if args.sub_clip:
            clips["sub"] = media_path(args.sub_clip)
        record(world, root, clips, start - 1)
        while time.time() < start + 2 + args.runs * 2.5 + 1:  # every instant replayed is in the past
            time.sleep(0.2)
        screens = [int(x) for x in args.screens.split(",")]
        times, full, shown = asyncio.run(measure(world, args.runs, start, screens, args.announce, args.timings))
    finally:
        world.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    figs = {"runs": len(times), "start_ms_median": round(statistics.median(times) * 1000),
            "start_ms_max": round(max(times) * 1000), "right_stream_ms_median": round(statistics.median(full) * 1000),
            "right_stream_ms_max": round(max(full) * 1000), "clip": args.clip, "sub_clip": args.sub_clip,
            "screens": args.screens, "announce_s": args.announce, "tiles_by_stream": shown}
    say(f"a replay of the wall (screens {args.screens}, 10 cameras) starts in {figs['start_ms_median']} ms "
        f"(median of {len(times)}), {figs['start_ms_max']} ms at worst; every tile in the stream its size calls "
        f"for in {figs['right_stream_ms_median']} ms, {figs['right_stream_ms_max']} ms at worst")
    print(json.dumps(figs))


if __name__ == "__main__":
    main()
