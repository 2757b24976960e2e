#!/usr/bin/env python3
"""Live video, glass to glass: the RTSP rig sends frame N -> the page paints frame N, through ioc
(rig -> `ioc cameras` -> Mosquitto -> `ioc serve`'s hub -> Chromium's WebCodecs), and through
the peers that run on this machine, in the same run, to the same Chromium.

Everything on 127.0.0.1. The rig (tests/rigs/rtsp/) streams ten cameras, each a 1080p25 main
stream and a 360p25 sub-stream of the counter clips (the frame number burnt in as a bar code),
their keyframes spread over the GOP. The real `ioc cameras` reads them (tiles from the
sub-streams) and forwards live video; a wall node's demand for every camera's main stream
keeps all ten forwarding (the cost figure); `ioc serve` (with PostgreSQL and its hub) serves
the wall pages to Chromium (Playwright, Debian's chromium): screen 5 of the `overview` layout
plays pl-01's main stream full screen, screen 4 plays pl-02..pl-05's sub-streams.

The load (`--load-clients 9+50`, on by default): while the pages are measured, nine screens
and 50 tablets are raw websocket clients of the same hub (bench/video_load.py), reading every
video frame it writes and checking each stream's order (the figures: frames received, out of
order, skips to a keyframe). Then (`--stall-s 20`) one of those tablets, with a 64 KB receive
buffer, stops reading for 20 s while screen 4 is measured: its glass to glass before, during
and after, the hub process's RSS in each phase, and how long after reading again the tablet
gets a keyframe captured after that moment (back on live video; at most one GOP is the aim).
The clients are on the layout the pages show (`overview`: screens 4 and 5 play video, the
tablets every camera tile's sub-stream); bench/wall_video_cost.py loads the hub alone with
the `phu-ly-cameras` layout.

In the page, at every animation frame, each camera tile's canvas is read (the counter's 16
blocks) and each new frame number stamped with the page's clock (performance.timeOrigin +
now); the rig's clock says when it sent that frame (CLOCK_MONOTONIC, the same clock as
time.monotonic() here). Latency = painted - sent, per frame shown.

Peers, each to the same Chromium, from the same rig mount (pl-01's main stream):
- ffmpeg writing HLS (`-c copy -f hls`, 1 s segments: the path ThingsBoard's video widget
  takes), played natively by Chromium's <video> (Chromium 156 plays HLS itself; no hls.js);
  frames read from the video with requestVideoFrameCallback. Also the moment each frame is
  first listed in the playlist (the floor for any HLS player).
- Janus (Debian `janus`, its streaming plugin pulling the RTSP mount), played over WebRTC by a
  small local page speaking Janus's HTTP API (no janus.js needed). Skipped, with the reason,
  when it does not come up.
- aiortc (PyPI `aiortc`, in a venv of its own: it pins its own PyAV, so never in the project's
  environment), relaying the H.264 without decoding: bench/peer_aiortc.py, run by
  `--aiortc-python` (or $IOC_BENCH_AIORTC_PYTHON), pulls the RTSP mounts with
  MediaPlayer(url, decode=False) through a MediaRelay and answers the page's offer; played and
  measured exactly as Janus is. Skipped, with the reason, without that interpreter.

    python -m venv /work/venv-aiortc && /work/venv-aiortc/bin/pip install aiortc   # once
    python bench/video.py --aiortc-python /work/venv-aiortc/bin/python  # 3 runs of 15 s, peers included
    python bench/video.py --runs 1 --seconds 5 --peers aiortc --aiortc-python /work/venv-aiortc/bin/python
    python bench/video.py --runs 1 --seconds 10 --no-peers --stall-s 10
    python bench/video.py --load-clients 0 --stall-s 0  # the pages alone
    python bench/video.py --camera-cost-only --hub-seconds 0 --runs 3 --seconds 10  # the camera service alone

Prints figures, never passes or fails; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from playwright.async_api import Page, async_playwright  # noqa: E402

from bench.video_load import Load  # noqa: E402
from bench.wall import World, parse_args as wall_args  # noqa: E402
from ioc.core.contracts import topics  # noqa: E402
from ioc.core.contracts.wall import Demand, encode_demand  # noqa: E402
from tests.rigs import children  # noqa: E402
from tests.rigs.mqtt_clients import Client  # noqa: E402
from tests.rigs.rtsp.rig import Mount, RtspRig  # noqa: E402

CAMERAS = [f"pl-{i:02d}" for i in range(1, 11)]
CHROMIUM = os.environ.get("IOC_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-timer-throttling",
                 "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
                 "--autoplay-policy=no-user-gesture-required"]
SCREEN_TILES = {5: 1, 4: 4}  # camera tiles of the overview layout on screens 5 and 4
TILE_CAMERA = {"cam-main": "pl-01", "cam-a": "pl-02", "cam-b": "pl-03", "cam-c": "pl-04", "cam-d": "pl-05"}

# The counter's 16 blocks (tests/rigs/rtsp/README.md) read from a 2D context holding the
# picture at its own size at (0, 0); null when it is not there whole.
READ_JS = """
window.__counter = (ctx) => {
  const px = ctx.getImageData(0, 0, 512, 64).data;
  let v = 0;
  for (let b = 0; b < 16; b++) {
    const at = (y, x) => { const i = (y * 512 + x) * 4; return (px[i] + px[i + 1] + px[i + 2]) / 3; };
    const bit = at(16, b * 32 + 16), inv = at(48, b * 32 + 16);
    if (!(bit >= 175 || bit <= 80) || (bit >= 175) !== (inv <= 80)) return null;
    v = v * 2 + (bit >= 175 ? 1 : 0);
  }
  return v;
};
window.__recs = [];
// the page's canvases kept in memory, as the readings here need (otherwise each getImageData
// is a slow readback)
const getContext = HTMLCanvasElement.prototype.getContext;
HTMLCanvasElement.prototype.getContext = function (kind, opts) {
  return getContext.call(this, kind, kind === "2d" ? { ...opts, willReadFrequently: true } : opts);
};
"""

# ioc's wall page: every camera tile's canvas, at every animation frame
TILES_JS = READ_JS + """
(() => {
  const last = new Map();
  const step = () => {
    const t = performance.timeOrigin + performance.now();
    for (const slot of document.querySelectorAll(".slot[data-tile]")) {
      const c = slot.querySelector("canvas.cam-video");
      if (!c || c.width < 512 || c.height < 64) continue;
      const v = window.__counter(c.getContext("2d", { willReadFrequently: true }));
      const tile = slot.dataset.tile;
      if (v === null || last.get(tile) === v) continue;
      last.set(tile, v);
      const ds = slot.querySelector(".tile").dataset;
      window.__recs.push([tile, ds.videoStream || "", v, t, Number(ds.videoCapturedAt) * 1000]);
    }
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
})();
"""

# a <video> (HLS, WebRTC): every frame it presents, its top-left corner read
VIDEO_JS = READ_JS + """
window.__watch = (video) => {
  const c = document.createElement("canvas");
  c.width = 512; c.height = 64;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  let last = null;
  const step = (now) => {
    ctx.drawImage(video, 0, 0, 512, 64, 0, 0, 512, 64);
    const v = window.__counter(ctx);
    if (v !== null && v !== last) { last = v; window.__recs.push(["video", "", v, performance.timeOrigin + now]); }
    video.requestVideoFrameCallback(step);
  };
  video.requestVideoFrameCallback(step);
};
"""

HLS_PAGE = """<!doctype html><meta charset="utf-8"><body style="margin:0">
<video id="v" muted autoplay playsinline src="live.m3u8" style="width:960px"></video></body>"""

# The WebRTC peers' pages: the <video> the stream plays in, and ICE gathering awaited (neither
# peer trickles candidates).
WEBRTC_PAGE = """<!doctype html><meta charset="utf-8"><body style="margin:0">
<video id="v" muted autoplay playsinline style="width:960px"></video>
<script>
const peerConnection = () => {
  const pc = new RTCPeerConnection();
  pc.ontrack = (e) => { const v = document.getElementById("v"); v.srcObject = e.streams[0] || new MediaStream([e.track]); };
  window.__pc = pc;
  return pc;
};
const gathered = (pc) => new Promise((r) => { if (pc.iceGatheringState === "complete") r(); else pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r(); setTimeout(r, 3000); });
const streamId = new URLSearchParams(location.search).get("id");
%(script)s
</script></body>"""

# Janus's HTTP API by hand: a session, the streaming plugin, "watch" the mountpoint, answer its
# offer; the video element then plays the WebRTC stream.
JANUS_SCRIPT = """
const api = "http://127.0.0.1:%(port)d/janus";
const tx = () => Math.random().toString(36).slice(2);
const post = async (url, body) => (await fetch(url, { method: "POST", body: JSON.stringify({ transaction: tx(), ...body }) })).json();
window.__peer = (async () => {
  const session = (await post(api, { janus: "create" })).data.id;
  const sapi = `${api}/${session}`;
  const handle = (await post(sapi, { janus: "attach", plugin: "janus.plugin.streaming" })).data.id;
  const hapi = `${sapi}/${handle}`;
  await post(hapi, { janus: "message", body: { request: "watch", id: Number(streamId) } });
  let offer = null;
  for (let i = 0; i < 100 && !offer; i++) {
    const ev = await (await fetch(`${sapi}?maxev=1&rid=${Date.now()}`)).json();
    for (const e of [].concat(ev)) if (e.jsep) offer = e.jsep;
  }
  if (!offer) throw new Error("no offer from Janus");
  const pc = peerConnection();
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  await post(hapi, { janus: "message", body: { request: "start" }, jsep: pc.localDescription });
  setInterval(() => post(sapi, { janus: "keepalive" }), 20000);
  return "ok";
})().catch((e) => String(e));
"""

# bench/peer_aiortc.py: the page offers to receive video, aiortc answers (text/plain: no preflight).
AIORTC_SCRIPT = """
window.__peer = (async () => {
  const pc = peerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const res = await fetch("http://127.0.0.1:%(port)d/offer", { method: "POST",
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type, id: streamId }) });
  const answer = await res.json();
  if (!res.ok) throw new Error(answer.error);
  await pc.setRemoteDescription(answer);
  return "ok";
})().catch((e) => String(e));
"""


def webrtc_page(script: str, port: int) -> str:
    return WEBRTC_PAGE.replace("%(script)s", script % {"port": port})


def say(msg: str) -> None:
    print(f"[video] {msg}", file=sys.stderr, flush=True)


def pctl(values: list[float], q: float) -> float | None:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1) if s else None


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chromium_cpu_s() -> float:
    """CPU seconds of this process's Chromium (browser, renderers, GPU and utility processes)."""
    total = 0.0
    todo = [os.getpid()]
    while todo:
        p = todo.pop()
        try:
            if "chrom" in Path(f"/proc/{p}/comm").read_text():
                total += cpu_s(p)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(k) for k in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


class Latency:
    """Turns the page's (frame number, painted at) into ms after the rig sent that frame."""

    def __init__(self, rig: RtspRig) -> None:
        self.rig = rig
        self.offset = time.time() - time.monotonic()  # epoch - CLOCK_MONOTONIC, same machine

    def of(self, mount: str, recs: list[list[Any]], at_service: bool = False) -> list[float]:
        """ms from the rig sending each frame to its painting (or, `at_service`, to the camera
        service's reader handing it on: the header's captured_at, a wall-clock time)."""
        out = []
        for _, _, value, painted_ms, *service in recs:
            if at_service:
                if not service or not service[0]:
                    continue
                painted_ms = service[0]
            at = painted_ms / 1000.0 - self.offset
            try:
                out.append(1000.0 * (at - self.rig.sent_time(mount, int(value), at=at)))
            except ValueError:
                continue
        return out


def summary(lat: list[float]) -> dict[str, Any]:
    return {"frames": len(lat), "p50_ms": pctl(lat, 0.5), "p95_ms": pctl(lat, 0.95)}


async def sample(page: Page, seconds: float) -> list[list[Any]]:
    await page.evaluate("() => { window.__recs = []; }")
    await asyncio.sleep(seconds)
    return await page.evaluate("() => window.__recs.splice(0)")


# -- ioc --------------------------------------------------------------------------------

def start_cameras(world: World, rig: RtspRig, tmp: Path) -> subprocess.Popen[bytes]:
    registry = tmp / "cameras.toml"
    registry.write_text("".join(
        f'[[camera]]\nid = "{c}"\nname = "Camera {c}"\nmain_url = "{rig.url(c + "-main")}"\nsub_url = "{rig.url(c + "-sub")}"\n'
        for c in CAMERAS), encoding="utf-8")
    env = world.env("svc-camera", IOC_CAMERA_REGISTRY=str(registry), IOC_CAMERA_WORKER_ID="bench-video")
    env.pop("IOC_DATABASE_URL")  # no status history: the registry is the list
    log = open(tmp / "cameras.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "cameras"], env=env, cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, preexec_fn=children.preexec())
    children.track(proc)
    return proc


async def open_screen(world: World, ctx: Any, n: int) -> Page:
    """Wall screen n in Chromium, once all its camera tiles play video."""
    page = await ctx.new_page()
    page.on("console", lambda m: m.type == "warning" and say(f"screen {n}: {m.text[:160]}"))
    await page.goto(f"{world.serve.base}/wall/screen.html?screen={n}#token={world.tokens['screen']}")
    deadline = time.monotonic() + 60
    while (playing := await page.evaluate("() => document.querySelectorAll('.tile[data-video=playing]').length")) \
            < SCREEN_TILES[n]:
        if time.monotonic() > deadline:
            states = await page.evaluate("() => [...document.querySelectorAll('.tile[data-video]')].map("
                                         "(t) => `${t.dataset.video}:${t.dataset.videoReason}`)")
            await page.close()
            raise SystemExit(f"bench: only {playing} of screen {n}'s camera tiles play video after 60 s: {states}")
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)
    return page


def screen_latency(lat: Latency, n: int, recs: list[list[Any]]) -> list[float]:
    stream = "main" if n == 5 else "sub"
    return [x for tile, cam in TILE_CAMERA.items()
            for x in lat.of(f"{cam}-{stream}", [r for r in recs if r[0] == tile and r[1] == stream])]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def stall_run(world: World, lat: Latency, ctx: Any, load: Load, n: int, seconds: float,
                    stall_s: float) -> dict[str, Any]:
    """Issue 11's "one tablet stalled": screen n's glass to glass before, during and after one
    load tablet stops reading for `stall_s`, and the hub process's memory (RSS, sampled every
    0.25 s) in each phase."""
    page = await open_screen(world, ctx, n)
    pid = world.serve.proc.pid
    rss: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    phase = "before"
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            rss[phase].append(rss_mb(pid))
            time.sleep(0.25)

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    out: dict[str, Any] = {"screen": n, "stall_s": stall_s}
    try:
        for phase, window in (("before", seconds), ("during", stall_s), ("after", seconds)):
            if phase == "during":
                load.stall(stall_s)
            out[phase] = summary(screen_latency(lat, n, await sample(page, window)))
    finally:
        stop.set()
        watcher.join()
        await page.close()
    out["hub_rss_mb"] = {k: {"min": round(min(v), 1), "max": round(max(v), 1)} for k, v in rss.items() if v}
    say(f"stall: screen {n} p50/p95 before {out['before']['p50_ms']}/{out['before']['p95_ms']}, during "
        f"{out['during']['p50_ms']}/{out['during']['p95_ms']}, after {out['after']['p50_ms']}/{out['after']['p95_ms']} ms; "
        f"hub RSS MB {out['hub_rss_mb']}")
    return out


async def screen_run(world: World, lat: Latency, cams: subprocess.Popen[bytes], ctx: Any, n: int,
                     seconds: float) -> dict[str, Any]:
    """One wall screen in Chromium until its camera tiles play, then `seconds` of readings."""
    page = await open_screen(world, ctx, n)
    try:
        pids = {"cameras": cams.pid, "serve": world.serve.proc.pid, "mosquitto": world.broker.pid}
        cpu0 = {k: cpu_s(pid) for k, pid in pids.items()}
        chromium0 = chromium_cpu_s()
        delivered0 = video_delivered(world)
        t0 = time.monotonic()
        recs = await sample(page, seconds)
        wall = time.monotonic() - t0
        cpu = {k: round(100 * (cpu_s(pid) - cpu0[k]) / wall, 1) for k, pid in pids.items()}
        cpu["chromium"] = round(100 * (chromium_cpu_s() - chromium0) / wall, 1)
        delivered1 = video_delivered(world)
        delivered = delivered1 - delivered0 if delivered0 is not None and delivered1 is not None else None
        states = await page.evaluate("() => [...document.querySelectorAll('.tile[data-video]')].map("
                                     "(t) => `${t.dataset.video}${t.dataset.videoReason ? ':' + t.dataset.videoReason : ''}`)")
    finally:
        await page.close()
    stream = "main" if n == 5 else "sub"
    values = screen_latency(lat, n, recs)
    reader = [x for tile, cam in TILE_CAMERA.items()
              for x in lat.of(f"{cam}-{stream}", [r for r in recs if r[0] == tile and r[1] == stream], at_service=True)]
    fell_back = any(not t.startswith("playing") for t in states)
    if fell_back:  # pictures instead part of the time: the latency of what was played is not the figure
        values = reader = []
    return {**summary(values), "fell_back": fell_back, "to_service_reader": summary(reader), "cpu_pct": cpu, "tiles": states, "hub_frames_delivered": delivered,
            "serve_us_cpu_per_delivered_frame": round(cpu["serve"] / 100 * wall * 1e6 / delivered, 1) if delivered else None}


async def ioc_runs(world: World, rig: RtspRig, cams: subprocess.Popen[bytes], args: argparse.Namespace,
                   browser: Any) -> dict[str, Any]:
    """Screen 5 (pl-01's 1080p main stream, full screen), then screen 4 (four 360p sub-streams),
    one page at a time: two cores do not decode both in software while the rest runs."""
    lat = Latency(rig)
    ctx = await browser.new_context(viewport={"width": 1920, "height": 1080})
    await ctx.add_init_script(TILES_JS)
    runs: list[dict[str, Any]] = []
    load = None
    extra: dict[str, Any] = {}
    if args.load_clients:
        screens, tablets = args.load_clients
        load = Load(world.serve.wall_port, world.tokens, screens, tablets)
        say(f"load: {screens} screens and {tablets} tablets connected, draining every video frame")
    try:
        for run in range(args.runs):
            fig = {}
            for n in args.screens:
                fig[f"screen_{n}"] = f = await screen_run(world, lat, cams, ctx, n, args.seconds)
                say(f"ioc run {run + 1}, screen {n}: p50/p95 {f['p50_ms']}/{f['p95_ms']} ms ({f['frames']} frames; "
                    f"to the reader {f['to_service_reader']['p50_ms']}/{f['to_service_reader']['p95_ms']}); "
                    f"CPU % of a core {f['cpu_pct']}; tiles {f['tiles']}")
            runs.append(fig)
        if load is not None and args.stall_s > 0:
            n = 4 if 4 in args.screens else args.screens[0]
            extra["stall"] = await stall_run(world, lat, ctx, load, n, args.seconds, args.stall_s)
    finally:
        await ctx.close()
        if load is not None:
            extra["load"] = load.stop()
            say(f"load clients: {extra['load']}")
    if "stall" in extra:
        extra["stall"]["stalled_tablet"] = extra["load"].pop("stalled_tablet", None)
        extra["stall"]["gop_ms_median"] = extra["load"].get("gop_ms_median")
    every = [f for r in runs for f in r.values()]
    return {**extra, "runs": runs, "median": {
        **{f"screen_{n}_{q}": med(r[f"screen_{n}"][q] for r in runs) for n in args.screens for q in ("p50_ms", "p95_ms")},
        **{f"screen_{n}_to_reader_{q}": med(r[f"screen_{n}"]["to_service_reader"][q] for r in runs)
           for n in args.screens for q in ("p50_ms", "p95_ms")},
        "runs_fallen_back_to_pictures": sum(f["fell_back"] for f in every),
        "camera_service_cpu_pct": med(f["cpu_pct"]["cameras"] for f in every),
        "serve_cpu_pct": med(f["cpu_pct"]["serve"] for f in every),
        "mosquitto_cpu_pct": med(f["cpu_pct"]["mosquitto"] for f in every),
        **{f"screen_{n}_chromium_cpu_pct": med(r[f"screen_{n}"]["cpu_pct"]["chromium"] for r in runs) for n in args.screens},
        "serve_us_cpu_per_delivered_frame": med(f["serve_us_cpu_per_delivered_frame"] for f in every),
    }}


def med(values: Any) -> float | None:
    v = [x for x in values if x is not None]
    return round(statistics.median(v), 1) if v else None


def video_delivered(world: World) -> int | None:
    """The hub's video frames written to clients so far (its /metrics); None when the hub does
    not answer in time (a machine busy with other work): that run's µs per frame is left out,
    not the whole benchmark."""
    try:
        text = httpx.get(world.serve.base + "/metrics", timeout=30,
                         headers={"Authorization": f"Bearer {world.tokens['admin']}"}).text
    except httpx.HTTPError as e:
        say(f"the hub's /metrics did not answer: {e!r}")
        return None
    m = re.search(r"^ioc_wall_video_frames_total\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def hub_cost(seconds: float) -> float | None:
    """bench/wall_video_cost.py: the hub alone, µs of CPU per delivered frame (10 cameras, 9 screens, 50 tablets)."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "wall_video_cost.py"), "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 120, cwd=REPO)
    m = re.search(r"inside on_message: ([\d.]+) us CPU per delivered frame", out.stdout)
    return float(m.group(1)) if m else None


# -- peers ------------------------------------------------------------------------------

class Static(threading.Thread):
    """A quiet static file server for a directory (the HLS files, the Janus page)."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        handler = partial(_Quiet, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]

    def run(self) -> None:
        self.httpd.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def segment_times(hls: Path, stop: threading.Event, out: dict[str, float]) -> None:
    """When each segment first appears in the playlist (monotonic)."""
    playlist = hls / "live.m3u8"
    while not stop.is_set():
        try:
            for line in playlist.read_text().splitlines():
                if line.endswith(".ts") and line not in out:
                    out[line] = time.monotonic()
        except FileNotFoundError:
            pass
        time.sleep(0.005)


def listed_latency(rig: RtspRig, hls: Path, listed: dict[str, float]) -> list[float]:
    """ms from the rig sending each frame to the playlist listing the segment that holds it."""
    import av

    from tests.rigs.rtsp.counter import CounterError, decode_counter

    out = []
    for name, at in sorted(listed.items(), key=lambda kv: kv[1])[1:]:  # the first: joined mid-GOP
        try:
            with av.open(str(hls / name)) as c:
                for frame in c.decode(video=0):
                    try:
                        index = decode_counter(frame.to_ndarray(format="gray"))
                    except CounterError:
                        continue
                    out.append(1000.0 * (at - rig.sent_time("pl-01-main", index, at=at)))
        except (FileNotFoundError, av.FFmpegError):
            continue  # deleted from the playlist's window already
    return out


async def hls_runs(rig: RtspRig, args: argparse.Namespace, browser: Any, tmp: Path) -> dict[str, Any]:
    hls = tmp / "hls"
    hls.mkdir(exist_ok=True)
    (hls / "index.html").write_text(HLS_PAGE)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", rig.url("pl-01-main"), "-an", "-c", "copy",
         "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "delete_segments+omit_endlist",
         str(hls / "live.m3u8")], stdin=subprocess.DEVNULL, preexec_fn=children.preexec())
    children.track(ffmpeg)
    server = Static(hls)
    server.start()
    stop = threading.Event()
    listed: dict[str, float] = {}
    watcher = threading.Thread(target=segment_times, args=(hls, stop, listed), daemon=True)
    watcher.start()
    lat = Latency(rig)
    runs = []
    try:
        deadline = time.monotonic() + 30
        while len(listed) < 3:
            if time.monotonic() > deadline or ffmpeg.poll() is not None:
                return {"skipped": "ffmpeg wrote no HLS playlist within 30 s"}
            await asyncio.sleep(0.2)
        ctx = await browser.new_context()
        await ctx.add_init_script(VIDEO_JS)
        for run in range(args.runs):
            page = await ctx.new_page()
            cpu0, t0, ch0 = cpu_s(ffmpeg.pid), time.monotonic(), chromium_cpu_s()
            await page.goto(f"http://127.0.0.1:{server.port}/index.html")
            await page.evaluate("() => window.__watch(document.getElementById('v'))")
            await page.wait_for_function("() => window.__recs.length > 10", timeout=60000)
            recs = await sample(page, args.seconds)
            cpu = round(100 * (cpu_s(ffmpeg.pid) - cpu0) / (time.monotonic() - t0), 1)
            fig = {**summary(lat.of("pl-01-main", recs)), "ffmpeg_cpu_pct": cpu,
                   "chromium_cpu_pct": round(100 * (chromium_cpu_s() - ch0) / (time.monotonic() - t0), 1)}
            say(f"HLS run {run + 1}: played p50/p95 {fig['p50_ms']}/{fig['p95_ms']} ms ({fig['frames']} frames)")
            runs.append(fig)
            await page.close()
        await ctx.close()
        seg = listed_latency(rig, hls, listed)
    finally:
        stop.set()
        children.end(ffmpeg)
        server.stop()
    return {"runs": runs, "median": {k: med(r[k] for r in runs) for k in ("p50_ms", "p95_ms", "ffmpeg_cpu_pct",
                                                                           "chromium_cpu_pct")},
            "segment_listed": summary(seg)}


JANUS_CONFIG = {
    "janus.jcfg": """general: {{ configs_folder = "{cfg}" plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins"
  transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports" events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
  loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers" debug_level = 3 admin_secret = "bench" }}
nat: {{ ice_lite = true nice_debug = false ignore_mdns = true }}
media: {{ rtp_port_range = "40000-40100" }}
plugins: {{ disable = "libjanus_audiobridge.so,libjanus_echotest.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_videoroom.so,libjanus_voicemail.so,libjanus_duktape.so,libjanus_lua.so" }}
transports: {{ disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so" }}
events: {{ broadcast = false }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
""",
    "janus.transport.http.jcfg": """general: {{ base_path = "/janus" http = true port = {port} ip = "127.0.0.1" https = false }}
admin: {{ admin_http = false }}
cors: {{ allow_origin = "*" }}
""",
    "janus.plugin.streaming.jcfg": """general: {{ }}
main: {{ type = "rtsp" id = 1 description = "pl-01 main" audio = false video = true url = "{url}"
  rtsp_reconnect_delay = 1 rtsp_session_timeout = 0 rtsp_timeout = 10 rtsp_conn_timeout = 5 }}
sub: {{ type = "rtsp" id = 2 description = "pl-02 sub" audio = false video = true url = "{sub_url}"
  rtsp_reconnect_delay = 1 rtsp_session_timeout = 0 rtsp_timeout = 10 rtsp_conn_timeout = 5 }}
""",
}


async def janus_runs(rig: RtspRig, args: argparse.Namespace, browser: Any, tmp: Path) -> dict[str, Any]:
    exe = shutil.which("janus")
    if exe is None:
        return {"skipped": "janus is not installed (Debian package janus)"}
    cfg = tmp / "janus"
    cfg.mkdir(exist_ok=True)
    port = children.free_port()
    for name, text in JANUS_CONFIG.items():
        (cfg / name).write_text(text.format(cfg=cfg, port=port, url=rig.url("pl-01-main"), sub_url=rig.url("pl-02-sub")))
    log = open(tmp / "janus.log", "ab")
    janus = subprocess.Popen([exe, "-F", str(cfg), "-C", str(cfg / "janus.jcfg")], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, preexec_fn=children.preexec())
    children.track(janus)
    page_dir = tmp / "janus-page"
    page_dir.mkdir(exist_ok=True)
    (page_dir / "index.html").write_text(webrtc_page(JANUS_SCRIPT, port))
    server = Static(page_dir)
    server.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/janus/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if janus.poll() is not None or time.monotonic() > deadline:
                return {"skipped": "janus did not answer on its HTTP API: "
                        + (tmp / "janus.log").read_text(errors="replace")[-500:]}
            await asyncio.sleep(0.3)
        return await webrtc_runs("Janus", janus.pid, f"http://127.0.0.1:{server.port}/index.html",
                                 ((1, "pl-01-main"), (2, "pl-02-sub")), rig, args, browser)
    finally:
        children.end(janus)
        log.close()
        server.stop()


async def webrtc_runs(peer: str, pid: int, url: str, mounts: tuple[tuple[Any, str], ...], rig: RtspRig,
                      args: argparse.Namespace, browser: Any) -> dict[str, Any]:
    """A WebRTC peer's page (url?id=ID, which sets window.__peer to "ok" once it has the stream)
    for each (ID, rig mount), `args.runs` times: glass to glass read from its <video> as for
    every peer, the peer process's and Chromium's CPU over the window."""
    key = f"{peer.lower()}_cpu_pct"
    lat = Latency(rig)
    runs: list[dict[str, Any]] = []
    ctx = await browser.new_context()
    await ctx.add_init_script(VIDEO_JS)
    try:
        for run in range(args.runs):
            fig = {}
            for mount_id, mount in mounts:
                page = await ctx.new_page()
                cpu0, t0, ch0 = cpu_s(pid), time.monotonic(), chromium_cpu_s()
                # the page is served from 127.0.0.1: a secure-enough context for WebRTC
                await page.goto(f"{url}?id={mount_id}")
                state = await page.evaluate("() => window.__peer")
                if state != "ok":
                    return {"skipped": f"the page did not get a stream from {peer}: {state}", "runs": runs}
                await page.evaluate("() => window.__watch(document.getElementById('v'))")
                try:
                    await page.wait_for_function("() => window.__recs.length > 5", timeout=30000)
                except Exception:  # noqa: BLE001
                    return {"skipped": f"no frame painted from {peer} in 30 s: {await webrtc_stats(page)}", "runs": runs}
                recs = await sample(page, args.seconds)
                cpu = round(100 * (cpu_s(pid) - cpu0) / (time.monotonic() - t0), 1)
                fig[mount] = f = {**summary(lat.of(mount, recs)), key: cpu, "webrtc": await webrtc_stats(page),
                                  "chromium_cpu_pct": round(100 * (chromium_cpu_s() - ch0) / (time.monotonic() - t0), 1)}
                say(f"{peer} run {run + 1}, {mount}: p50/p95 {f['p50_ms']}/{f['p95_ms']} ms ({f['frames']} frames; "
                    f"{peer} {cpu}% of a core; {f['webrtc']})")
                # hang up (DTLS close) before the page goes: the peer stops sending to it at once
                # rather than after its consent checks fail, so the next run does not pay for it
                await page.evaluate("() => window.__pc.close()")
                await page.close()
            runs.append(fig)
    finally:
        await ctx.close()
    return {"runs": runs, "median": {f"{m}_{q}": med(r[m][q] for r in runs) for _, m in mounts
                                     for q in ("p50_ms", "p95_ms", key, "chromium_cpu_pct")}}


async def aiortc_runs(rig: RtspRig, args: argparse.Namespace, browser: Any, tmp: Path) -> dict[str, Any]:
    """bench/peer_aiortc.py under the aiortc venv's interpreter, measured as Janus is."""
    if not args.aiortc_python:
        return {"skipped": "no --aiortc-python (or IOC_BENCH_AIORTC_PYTHON): a venv's python with PyPI aiortc, "
                "e.g. python -m venv /work/venv-aiortc && /work/venv-aiortc/bin/pip install aiortc"}
    if not os.access(args.aiortc_python, os.X_OK):
        return {"skipped": f"--aiortc-python {args.aiortc_python} is not an executable"}
    log_path = tmp / "aiortc.log"
    log = open(log_path, "ab")
    peer = subprocess.Popen([args.aiortc_python, str(REPO / "bench" / "peer_aiortc.py"),
                             f"1={rig.url('pl-01-main')}", f"2={rig.url('pl-02-sub')}"],
                            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=children.preexec())
    children.track(peer)
    server = None
    try:
        ready = await asyncio.wait_for(asyncio.to_thread(peer.stdout.readline), 30)  # type: ignore[union-attr]
        if not ready:
            return {"skipped": "bench/peer_aiortc.py did not start: " + log_path.read_text(errors="replace")[-500:]}
        page_dir = tmp / "aiortc-page"
        page_dir.mkdir(exist_ok=True)
        (page_dir / "index.html").write_text(webrtc_page(AIORTC_SCRIPT, json.loads(ready)["port"]))
        server = Static(page_dir)
        server.start()
        out = await webrtc_runs("aiortc", peer.pid, f"http://127.0.0.1:{server.port}/index.html",
                                ((1, "pl-01-main"), (2, "pl-02-sub")), rig, args, browser)
        version = subprocess.run([args.aiortc_python, "-c", "import aiortc, av; print(aiortc.__version__, av.__version__)"],
                                 capture_output=True, text=True, timeout=30).stdout.split()
        return {**out, "aiortc_version": version[0] if version else None, "pyav_version": version[1] if version else None}
    except TimeoutError:
        return {"skipped": "bench/peer_aiortc.py did not listen within 30 s: " + log_path.read_text(errors="replace")[-500:]}
    finally:
        children.end(peer)
        log.close()
        if server is not None:
            server.stop()


async def webrtc_stats(page: Page) -> dict[str, Any]:
    """What Chromium's WebRTC receiver says: frames received, decoded, dropped, packets lost."""
    return await page.evaluate("""async () => {
      const out = { state: window.__pc && window.__pc.connectionState };
      if (window.__pc) (await window.__pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video") Object.assign(out, { received: r.framesReceived,
          decoded: r.framesDecoded, dropped: r.framesDropped, lost: r.packetsLost, keyframes: r.keyFramesDecoded });
      });
      return out;
    }""")


def camera_cost(node: Client, cams: subprocess.Popen[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """The camera service's CPU for the ten cameras (tiles and health from the sub-streams),
    without video, then with every main stream forwarded (a wall showing all ten large); the
    demand is withdrawn after, so the browser phase has the CPU it needs."""
    time.sleep(10)  # every camera open and sending tiles
    topic = topics.wall_demand("bench-video")
    out: dict[str, Any] = {"no_video": [], "all_10_main_streams": []}
    for _ in range(args.runs):
        for label, demand in (("no_video", Demand()), ("all_10_main_streams", Demand(video_main=frozenset(CAMERAS)))):
            node.publish(topic, encode_demand(demand, time.time()), retain=True)
            time.sleep(3)
            c0, t0 = cpu_s(cams.pid), time.monotonic()
            time.sleep(args.seconds)
            out[label].append(round(100 * (cpu_s(cams.pid) - c0) / (time.monotonic() - t0), 1))
    node.publish(topic, b"", retain=True)
    say(f"camera service, % of a core: {out}")
    return {**out, "median": {k: med(v) for k, v in out.items()}}


# -- main -------------------------------------------------------------------------------

async def measure(world: World, rig: RtspRig, cams: subprocess.Popen[bytes], args: argparse.Namespace,
                  tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            out["ioc"] = await ioc_runs(world, rig, cams, args, browser)
            if "hls" in args.peers:
                out["hls"] = await hls_runs(rig, args, browser, tmp)
            if "janus" in args.peers:
                out["janus"] = await janus_runs(rig, args, browser, tmp)
            if "aiortc" in args.peers:
                out["aiortc"] = await aiortc_runs(rig, args, browser, tmp)
        finally:
            await browser.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15.0, help="sampling window per run")
    ap.add_argument("--peers", default="hls,janus,aiortc", help="the peers measured after ioc, comma separated "
                    "(hls, janus, aiortc; '' or --no-peers: none)")
    ap.add_argument("--no-peers", dest="peers", action="store_const", const="")
    ap.add_argument("--aiortc-python", default=os.environ.get("IOC_BENCH_AIORTC_PYTHON"),
                    help="python of a venv with PyPI aiortc (kept out of the project's environment: it pins its "
                    "own PyAV), which runs bench/peer_aiortc.py; without it the aiortc peer is skipped "
                    "(default: $IOC_BENCH_AIORTC_PYTHON)")
    ap.add_argument("--hub-seconds", type=float, default=10.0, help="bench/wall_video_cost.py's window (0: skip)")
    ap.add_argument("--load-clients", default="9+50", help="SCREENS+TABLETS: raw websocket clients that read every "
                    "video frame during the latency runs and check its order ('0' or '': none)")
    ap.add_argument("--stall-s", type=float, default=20.0, help="after the runs, one load tablet stops reading this "
                    "long while screen 4 (or the first screen) is measured (0: skip)")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--camera-cost-only", action="store_true", help="only the camera service's CPU without and "
                    "with the ten main streams forwarded (no pages, no peers: quick, and light on a shared machine)")
    ap.add_argument("--screens", default="5,4", help="wall screens Chromium shows: 5 (pl-01's main stream), "
                    "4 (four sub-streams)")
    args = ap.parse_args()
    args.screens = [int(n) for n in args.screens.split(",")]
    args.peers = {p.strip() for p in args.peers.split(",") if p.strip()}
    if args.peers - {"hls", "janus", "aiortc"}:
        ap.error(f"--peers: unknown {sorted(args.peers - {'hls', 'janus', 'aiortc'})}")
    args.load_clients = tuple(int(x) for x in args.load_clients.split("+")) if "+" in args.load_clients else None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    tmp = Path(tempfile.mkdtemp(prefix="ioc-bench-video-"))
    say(f"work dir {tmp}")
    world = World(wall_args(["--wait-quiet", "0"]), tmp)
    figs: dict[str, Any] = {}
    mounts = [Mount(f"{c}-{s}", f"counter-{'1080p' if s == 'main' else '360p'}.mp4", offset=2 * i)
              for i, c in enumerate(CAMERAS) for s in ("main", "sub")]
    cams = None
    node = None
    try:
        with RtspRig(mounts) as rig:
            world.setup()
            cams = start_cameras(world, rig, tmp)
            node = Client(world.broker.host, world.broker.service_port, "svc-api", world.passwords["svc-api"]).wait_connected()
            figs["camera_service"] = camera_cost(node, cams, args)
            if not args.camera_cost_only:
                figs.update(asyncio.run(measure(world, rig, cams, args, tmp)))
            figs["rig_late_ms"] = {m: v.get("late_ms") for m, v in rig.status()["mounts"].items() if m == "pl-01-main"}
    finally:
        if node is not None:
            node.publish(topics.wall_demand("bench-video"), b"", retain=True)
            node.close()
        if cams is not None:
            children.end(cams)
        world.cleanup()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.hub_seconds:
        figs["hub_us_cpu_per_delivered_frame"] = hub_cost(args.hub_seconds)
    figs["_meta"] = {"runs": args.runs, "seconds": args.seconds, "cores": os.cpu_count(),
                     "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    print_table(figs)
    print(json.dumps(figs, separators=(",", ":")), flush=True)
    return 0


def print_table(figs: dict[str, Any]) -> None:
    print("\nglass to glass, ms from the rig sending a frame to Chromium painting it (medians of the runs' p50 / p95)")
    m = figs.get("ioc", {}).get("median", {})
    print(f"  ioc, 1080p main, WebCodecs      {m.get('screen_5_p50_ms')} / {m.get('screen_5_p95_ms')}"
          f"   (to the camera service's reader: {m.get('screen_5_to_reader_p50_ms')} / {m.get('screen_5_to_reader_p95_ms')})")
    print(f"  ioc, 360p sub x4, WebCodecs     {m.get('screen_4_p50_ms')} / {m.get('screen_4_p95_ms')}"
          f"   (to the camera service's reader: {m.get('screen_4_to_reader_p50_ms')} / {m.get('screen_4_to_reader_p95_ms')})")
    print(f"  (screen runs where a tile fell back to pictures, left out: {m.get('runs_fallen_back_to_pictures')})")
    rows = {"hls": [("HLS (ffmpeg), 1080p, <video>", "p50_ms", "p95_ms")],
            "janus": [("Janus WebRTC, 1080p main", "pl-01-main_p50_ms", "pl-01-main_p95_ms"),
                      ("Janus WebRTC, 360p sub", "pl-02-sub_p50_ms", "pl-02-sub_p95_ms")],
            "aiortc": [("aiortc WebRTC, 1080p main", "pl-01-main_p50_ms", "pl-01-main_p95_ms"),
                       ("aiortc WebRTC, 360p sub", "pl-02-sub_p50_ms", "pl-02-sub_p95_ms")]}
    for peer, lines in rows.items():
        f = figs.get(peer)
        if f is None:
            continue
        for label, p50, p95 in lines:
            if "median" in f and f.get("runs"):
                print(f"  {label:<31} {f['median'].get(p50)} / {f['median'].get(p95)}")
            else:
                print(f"  {label:<31} not measured: {f.get('skipped')}")
    if "hls" in figs and "segment_listed" in figs["hls"]:
        s = figs["hls"]["segment_listed"]
        print(f"  HLS, frame listed in playlist   {s['p50_ms']} / {s['p95_ms']}")
    c = figs.get("camera_service", {}).get("median", {})
    print(f"camera service, 10 cameras, % of a core: tiles and health only {c.get('no_video')}, with all 10 main "
          f"streams forwarded {c.get('all_10_main_streams')}")
    print(f"while Chromium played: camera service {m.get('camera_service_cpu_pct')}%, ioc serve {m.get('serve_cpu_pct')}%, "
          f"mosquitto {m.get('mosquitto_cpu_pct')}% of a core")
    load = figs.get("ioc", {}).get("load")
    if load:
        if load.get("out_of_order_first"):
            print(f"  out of order, the first: {load['out_of_order_first']}")
        print(f"load during the runs: {load.get('screens')} screens + {load.get('tablets')} tablets (raw websocket "
              f"clients) received {load.get('video_frames_received')} video frames, {load.get('out_of_order')} out of "
              f"order, {load.get('seq_gaps')} skips to a keyframe, {load.get('stream_restarts')} streams begun anew (seq 1); {load.get('clients_with_no_video')} clients got none "
              f"(their screens show no camera)")
    st = figs.get("ioc", {}).get("stall")
    if st:
        print(f"one tablet stalled {st['stall_s']:.0f} s, screen {st['screen']} p50 / p95 ms: before "
              f"{st['before']['p50_ms']} / {st['before']['p95_ms']}, during {st['during']['p50_ms']} / "
              f"{st['during']['p95_ms']}, after {st['after']['p50_ms']} / {st['after']['p95_ms']}")
        print("  hub process RSS MB (min-max): " + ", ".join(
            f"{k} {v['min']}-{v['max']}" for k, v in st.get("hub_rss_mb", {}).items()))
        t = st.get("stalled_tablet") or {}
        back = t.get("back_on_live_keyframe", {})
        def worst(k: str) -> Any:
            return max((v[k] for v in back.values()), default=None)
        print(f"  stalled tablet, a keyframe captured after it read again: worst {worst('ms_after_reading_again')} ms "
              f"after reading again, over {len(back)} streams (GOP {st.get('gop_ms_median')} ms); before it, at most "
              f"{worst('frames_read_before_it')} older frames read, the oldest {worst('oldest_frame_read_age_ms')} ms old; "
              f"not recovered: {t.get('not_recovered')}")
    print(f"hub alone (bench/wall_video_cost.py, 10 cameras to 9 screens and 50 tablets): "
          f"{figs.get('hub_us_cpu_per_delivered_frame')} us CPU per delivered frame")


if __name__ == "__main__":
    sys.exit(main())
