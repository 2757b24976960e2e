#!/usr/bin/env python3
"""Camera benchmark: N cameras on the local RTSP server -> `ioc cameras` -> Mosquitto -> tiles,
and the usual alternative, one `ffmpeg ... -vf fps=1,scale=640:-1 -f image2pipe` per camera,
side by side in the same run.

Prints figures, never passes or fails. Everything runs on 127.0.0.1: the RTSP rig's server
(tests/rigs/rtsp/server.py, GStreamer, pre-encoded H.264, no re-encoding) with one mount per
camera, a private Mosquitto started from the configuration we generate, and then, one after
the other on the same server:

1. `ioc cameras` (the real service, a child process) with a registry of N cameras; the bench
   subscribes to their tiles on the broker;
2. N `ffmpeg` processes reading the same mounts and writing JPEGs to pipes the bench reads.

The test clips carry their frame number burnt in as a bar code (tests/rigs/rtsp/counter.py)
and the server paces frames by CLOCK_MONOTONIC, so every tile says which frame it shows and
the server's clock says when that frame was sent: glass-to-tile latency is the tile's arrival
at the bench (broker subscriber, or the end of the JPEG on ffmpeg's pipe) minus that time.

    python bench/cameras.py                                   # 10, 30, 60 cameras, both sides
    python bench/cameras.py --cameras 10 --runs 3 --seconds 25
    python bench/cameras.py --cameras 10 --modes sub-full --no-ffmpeg
    python bench/cameras.py --cameras 10 --runs 1 --profile   # py-spy on the service

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.ingest, camera, tests: this checkout's, ahead of bench/ itself

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from bench.ingest import (  # noqa: E402
    CLK_TCK, CpuMeter, MqttError, finish_profiler, fmt, machine_busy, median_figures, mqtt_connect, mstr,
    pctl, proc_rss, read_varint, recv_packet, say, varint,
)
from ioc.core.contracts import topics  # noqa: E402
from ioc.core.contracts.tile_frame import decode_tile  # noqa: E402
from ioc.core.mqtt.broker_files import BrokerAccount  # noqa: E402
from ioc.core.passwords import hash_password  # noqa: E402
from tests.rigs import children  # noqa: E402
from tests.rigs.mosquitto import MosquittoRig  # noqa: E402
from tests.rigs.rtsp.counter import PATCH_H, PATCH_W, CounterError, decode_counter  # noqa: E402
from tests.rigs.rtsp.rig import Mount, RtspRig  # noqa: E402

# mode -> (clip the mounts stream, its width); the service reads the 1080p main stream on
# keyframes only, or the 360p sub-stream in full
CLIPS = {"main-keyframes": ("counter-1080p.mp4", 1920), "sub-full": ("counter-360p.mp4", 640)}
GOP = 25  # frames between IDRs in the rig's clips (setup.sh)
LIVE = topics.LIVE_PREFIX + "camera"
SAMPLE_S = 1.0
FFMPEG_FILTER = "fps=1,scale=640:-1"


# =====================================================================================
# The frame counter in a JPEG tile
# =====================================================================================
def read_counter(jpeg: bytes, source_width: int, reduced: bool = False) -> int:
    """The frame number burnt into a (possibly scaled) picture of the clip.

    The pattern is 512x64 px in the source's pixels; in a 640 px tile of a 1920 px source
    it is a third of that, so the corner is scaled back before it is read.
    """
    flag = cv2.IMREAD_REDUCED_GRAYSCALE_2 if reduced else cv2.IMREAD_GRAYSCALE
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)
    if img is None:
        raise CounterError("not a JPEG")
    scale = img.shape[1] / source_width
    if scale != 1.0:
        h = min(img.shape[0], math.ceil(PATCH_H * scale) + 2)
        w = min(img.shape[1], math.ceil(PATCH_W * scale) + 2)
        img = cv2.resize(img[:h, :w], None, fx=1 / scale, fy=1 / scale, interpolation=cv2.INTER_LINEAR)
    return decode_counter(img)


# =====================================================================================
# Tiles on the broker: a raw MQTT v5 subscriber (bench only), in a thread
# =====================================================================================
class TileListener(threading.Thread):
    """Subscribes to every camera's tiles and status; keeps (arrival time, payload) per camera."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        super().__init__(daemon=True, name="tile-listener")
        # keepalive 0: the broker expects no PINGREQ (a run lasts minutes; the reader only reads)
        self.sock, _ = mqtt_connect(host, port, f"bench-wall-{secrets.token_hex(3)}", username, password,
                                    keepalive=0)
        filters = [f"{LIVE}/+/tile", f"{LIVE}/+/tile/hd", f"{LIVE}/+/status"]
        body = b"\x00\x01\x00" + b"".join(mstr(f.encode()) + b"\x00" for f in filters)  # id 1, no props, QoS 0
        self.sock.sendall(b"\x82" + varint(len(body)) + body)
        first, ack = recv_packet(self.sock)
        if first >> 4 != 9 or any(rc >= 0x80 for rc in ack[3:]):
            raise MqttError(f"SUBACK refused: {ack!r}")
        self.sd: dict[str, list[tuple[float, bytes]]] = defaultdict(list)
        self.hd: dict[str, list[tuple[float, bytes]]] = defaultdict(list)
        self.status: dict[str, dict[str, Any]] = {}
        self.error: str | None = None
        self._halt = threading.Event()

    def want_hd(self, cams: list[str], video: dict[str, list[str]] | None = None) -> None:
        """Say, as a wall node would, that these cameras are shown large (retained, QoS 0), and
        whose video its screens play (`video`: stream -> cameras; the bench does not read it)."""
        topic = topics.wall_demand(f"bench-{secrets.token_hex(3)}")
        body = mstr(topic.encode()) + b"\x00" + orjson.dumps({"hd": cams, "video": video or {}})
        self.sock.sendall(b"\x31" + varint(len(body)) + body)

    def stop(self) -> None:
        self._halt.set()
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader
        except OSError:
            pass
        self.join(5)
        self.sock.close()

    def run(self) -> None:
        try:
            while True:
                first, body = recv_packet(self.sock)
                now = time.monotonic()
                if first >> 4 == 3:  # PUBLISH at QoS 0: topic, properties, payload
                    tl = body[0] << 8 | body[1]
                    plen, k = read_varint(body, 2 + tl) or (0, len(body))
                    self._publish(body[2 : 2 + tl].decode(), body[k + plen :], now)
                elif first >> 4 == 14:
                    raise MqttError("the broker sent DISCONNECT to the tile subscriber")
        except (OSError, MqttError) as exc:
            if not self._halt.is_set():
                self.error = f"tile listener: {exc}"

    def _publish(self, topic: str, payload: bytes, now: float) -> None:
        parts = topic.split("/")  # ioc/v1/live/camera/<id>/tile[/hd] | status
        cam, kind = parts[4], "/".join(parts[5:])
        if kind == "tile":
            self.sd[cam].append((now, payload))
        elif kind == "tile/hd":
            self.hd[cam].append((now, payload))
        elif kind == "status":
            self.status[cam] = orjson.loads(payload)


# =====================================================================================
# The usual alternative: one ffmpeg process per camera, JPEGs on a pipe
# =====================================================================================
@dataclass
class FfmpegPeer:
    cam: str
    url: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    jpegs: list[tuple[float, bytes]] = field(default_factory=list)
    thread: threading.Thread | None = None

    def command(self) -> list[str]:
        return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
                "-i", self.url, "-an", "-vf", FFMPEG_FILTER, "-f", "image2pipe", "-c:v", "mjpeg", "-"]

    def start(self) -> None:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, preexec_fn=children.preexec())
        children.track(self.proc)
        self.thread = threading.Thread(target=self._read, name=f"ffmpeg-{self.cam}", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        """Split the pipe into JPEGs (each ends with EOI, FF D9, which cannot occur inside one
        lavc writes) and stamp each with the time its last byte arrived."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while True:
            try:
                data = os.read(fd, 1 << 17)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            buf += data
            start = 0
            while True:
                end = buf.find(b"\xff\xd9", start)
                if end < 0:
                    break
                self.jpegs.append((now, buf[start : end + 2]))
                start = end + 2
            buf = buf[start:]

    def stop(self) -> None:
        if self.proc is not None:
            children.end(self.proc, signal.SIGTERM, 5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self.thread is not None:
            self.thread.join(2)


# =====================================================================================
# /proc: memory and per-thread CPU
# =====================================================================================
def proc_pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split between the processes sharing them)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (thread name, user+sys seconds)."""
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        name = data[data.index(b"(") + 1 : data.rindex(b")")].decode(errors="replace")
        fields = data[data.rindex(b")") + 2 :].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def thread_groups(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                  wall: float) -> list[tuple[str, int, float]]:
    """(thread name, threads, % of one core) between two thread_cpu() snapshots, busiest first."""
    pct: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for tid, (name, cpu) in after.items():
        name = name.split(":")[0]  # the service names its readers cap:<camera>
        pct[name] += 100.0 * (cpu - before.get(tid, (name, 0.0))[1]) / wall
        count[name] += 1
    return [(name, count[name], round(p, 1)) for name, p in pct.most_common()]


def other_load(seconds: float = 1.0) -> float:
    """% of one core the box spends on work that is not this bench's (nothing of ours runs)."""
    own0, busy0, t0 = sum(os.times()[:2]), machine_busy(), time.monotonic()
    time.sleep(seconds)
    own1, busy1, t1 = sum(os.times()[:2]), machine_busy(), time.monotonic()
    return max(0.0, 100.0 * ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))


def wait_quiet(args: argparse.Namespace) -> float:
    """Before a run, up to --wait-quiet s for two quiet seconds in a row; returns the last load seen."""
    load = other_load()
    if load <= args.quiet_pct or args.wait_quiet <= 0:
        return load
    say(f"the box is busy with other work ({load:.0f}% of a core): waiting up to {args.wait_quiet:g} s")
    deadline, in_row = time.monotonic() + args.wait_quiet, 0
    while in_row < 2 and time.monotonic() < deadline:
        load = other_load()
        in_row = in_row + 1 if load <= args.quiet_pct else 0
    if in_row < 2:
        say(f"still busy ({load:.0f}% of a core); running anyway: expect noisier figures")
    return load


# =====================================================================================
# One run: a server, a broker, the service, then the ffmpeg peers
# =====================================================================================
@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    n: int
    mode: str
    accounts: list[BrokerAccount]
    passwords: dict[str, str]
    rig: RtspRig | None = None
    broker: MosquittoRig | None = None
    cams: list[str] = field(default_factory=list)
    mount_of: dict[str, str] = field(default_factory=dict)

    @property
    def source_width(self) -> int:
        return CLIPS[self.mode][1]

    def start_rig(self) -> None:
        clip = CLIPS[self.mode][0]
        width = max(2, len(str(self.n)))
        self.cams = [f"cam{i:0{width}d}" for i in range(1, self.n + 1)]
        mounts = []
        for i, cam in enumerate(self.cams):
            # real cameras are not in step: spread the keyframes over the GOP (--aligned: all at once)
            offset = 0 if self.args.aligned else (i * GOP) // self.n
            mounts.append(Mount(cam, clip, offset=offset))
            self.mount_of[cam] = cam
        self.rig = RtspRig(mounts, log_dir=self.tmp / "rtsp").start()
        self.broker = MosquittoRig(self.tmp / "mosquitto", self.accounts)
        self.broker.start()
        say(f"RTSP server pid {self.rig.pid} ({self.n} mounts of {clip}, "
            f"{'keyframes aligned' if self.args.aligned else 'keyframes staggered'}), "
            f"mosquitto pid {self.broker.pid}")

    def stop(self) -> None:
        if self.rig is not None:
            self.rig.close()
        if self.broker is not None:
            self.broker.stop()

    def server_lateness(self) -> dict[str, float]:
        """The server's pacing: how late its clock threads ran (worst mount), over the last minute."""
        assert self.rig is not None
        mounts = self.rig.status()["mounts"].values()
        return {"server_late_p95_ms": max(m["late_ms"]["p95"] for m in mounts),
                "server_late_max_ms": max(m["late_ms"]["max"] for m in mounts),
                "server_late_resyncs": sum(m["late_resyncs"] for m in mounts)}

    # -- measuring a window ------------------------------------------------------------
    def measure(self, groups: dict[str, list[int]], subject: str, check: Any) -> dict[str, Any]:
        """CPU, memory and (for the service) per-thread CPU over the measurement window."""
        assert self.rig is not None and self.broker is not None
        groups = {**groups, "server": [self.rig.pid or 0], "mosquitto": [self.broker.pid or 0]}
        subject_pids = groups[subject]
        meter = CpuMeter()
        threads0 = thread_cpu(subject_pids[0]) if subject == "service" else {}
        bench0 = sum(os.times()[:2])
        meter.start(groups)
        w0 = time.monotonic()
        rss_max = pss_max = 0
        end = w0 + self.args.seconds
        while True:
            now = time.monotonic()
            if now >= end:
                break
            time.sleep(min(SAMPLE_S, end - now))
            check()
            meter.sample(groups)
            rss_max = max(rss_max, sum(proc_rss(p) for p in subject_pids))
            pss_max = max(pss_max, sum(proc_pss(p) for p in subject_pids))
        meter.stop(groups)
        w1 = time.monotonic()
        bench1 = sum(os.times()[:2])
        wall = w1 - w0
        cpu = meter.pct()
        fig: dict[str, Any] = {
            "w0": w0, "w1": w1,
            "cpu_pct": cpu.get(f"{subject}_cpu_pct"),
            "cpu_pct_per_camera": round((cpu.get(f"{subject}_cpu_pct") or 0.0) / self.n, 2),
            "rss_mb": round(rss_max / 2**20, 1),
            "pss_mb": round(pss_max / 2**20, 1),
            "server_cpu_pct": cpu.get("server_cpu_pct"),
            "mosquitto_cpu_pct": cpu.get("mosquitto_cpu_pct"),
            "bench_cpu_pct": round(100.0 * (bench1 - bench0) / wall, 1),
            "machine_cpu_pct": cpu["machine_cpu_pct"],
        }
        ours = sum(fig[k] or 0.0 for k in ("cpu_pct", "server_cpu_pct", "mosquitto_cpu_pct", "bench_cpu_pct"))
        fig["other_cpu_pct"] = round(max(0.0, fig["machine_cpu_pct"] - ours), 1)
        fig.update(self.server_lateness())
        if threads0:
            fig["_threads"] = thread_groups(threads0, thread_cpu(subject_pids[0]), wall)
        return fig

    # -- 1. the service ----------------------------------------------------------------
    def service_phase(self) -> dict[str, Any]:
        assert self.rig is not None and self.broker is not None
        registry = self.tmp / "cameras.toml"
        lines = []
        for cam in self.cams:
            url = self.rig.url(self.mount_of[cam])
            lines.append(f'[[camera]]\nid = "{cam}"\nname = "Bench {cam}"\nmain_url = "{url}"\n')
            if self.mode == "sub-full":
                lines.append(f'sub_url = "{url}"\n')  # the mount is the 360p clip
            else:
                lines.append('tile_stream = "main"\n')
        registry.write_text("".join(lines), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update({"IOC_MQTT_URL": self.broker.url_for("bench-camera", self.passwords["bench-camera"]),
                    "IOC_CAMERA_REGISTRY": str(registry), "IOC_CAMERA_WORKER_ID": "bench-cameras",
                    "IOC_LOG_FORMAT": "json", "PYTHONPATH": str(self.args.service_src)})
        for item in self.args.service_env:
            key, _, value = item.partition("=")
            env[key] = value
        listener = TileListener(self.broker.host, self.broker.service_port, "bench-wall", self.passwords["bench-wall"])
        listener.start()
        if self.args.hd or self.args.video:
            listener.want_hd(self.cams[: self.args.hd], {self.args.video: self.cams} if self.args.video else None)
        log_path = self.tmp / "cameras.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "cameras"], env=env, cwd=self.args.service_src,
                                    stdout=log, stderr=subprocess.STDOUT, preexec_fn=children.preexec())
        children.track(proc)
        profiler = None

        def check() -> None:
            if proc.poll() is not None:
                raise SystemExit(f"bench: ioc cameras exited with {proc.returncode}:\n"
                                 + log_path.read_text(errors="replace")[-3000:])
            if listener.error:
                raise SystemExit(f"bench: {listener.error}")

        try:
            t_start = time.monotonic()
            ready = self._wait(lambda: sum(1 for c in self.cams if listener.sd.get(c)), check, "service")
            fig_open = {"startup_s": round(time.monotonic() - t_start, 1), "cameras_started": ready}
            time.sleep(self.args.warmup)
            if self.args.profile:
                profiler = start_py_spy(proc.pid, self.tmp / f"py-spy-{self.mode}-{self.n}.txt", self.args.seconds,
                                        native=self.args.profile == "native")
            fig = self.measure({"service": [proc.pid]}, "service", check)
            online = sum(1 for c in self.cams if listener.status.get(c, {}).get("state") == "online")
            healthy = sum(1 for c in self.cams if listener.status.get(c, {}).get("healthy"))
            profile = finish_profiler(profiler, self.args.seconds) if profiler else None
            profiler = None
        finally:
            if profiler is not None and profiler.poll() is None:
                profiler.kill()
            children.end(proc, signal.SIGTERM, 10)
            listener.stop()
        fig.update(fig_open)
        fig["online_at_end"] = online
        fig["healthy_at_end"] = healthy
        fig.update(self.tiles_figures({c: listener.sd.get(c, []) for c in self.cams}, fig["w0"], fig["w1"],
                                      header=True))
        hd = self.tiles_figures({c: listener.hd.get(c, []) for c in self.cams}, fig["w0"], fig["w1"],
                                header=True, reduced=True)
        fig.update({"hd_tiles_per_s": hd["tiles_per_s"], "hd_p50_ms": hd["p50_ms"], "hd_p95_ms": hd["p95_ms"]})
        if profile:
            fig["_profile"] = profile
        return fig

    # -- 2. the usual alternative ------------------------------------------------------
    def ffmpeg_phase(self) -> dict[str, Any]:
        assert self.rig is not None
        peers = [FfmpegPeer(c, self.rig.url(self.mount_of[c]), self.tmp / "ffmpeg.log") for c in self.cams]

        def check() -> None:
            pass  # an ffmpeg that dies shows as a camera without tiles

        try:
            t_start = time.monotonic()
            for p in peers:
                p.start()
            ready = self._wait(lambda: sum(1 for p in peers if p.jpegs), check, "ffmpeg")
            fig_open = {"startup_s": round(time.monotonic() - t_start, 1), "cameras_started": ready}
            time.sleep(self.args.warmup)
            fig = self.measure({"ffmpeg": [p.proc.pid for p in peers if p.proc]}, "ffmpeg", check)
            alive = sum(1 for p in peers if p.proc and p.proc.poll() is None)
        finally:
            for p in peers:
                p.stop()
        fig.update(fig_open)
        fig["online_at_end"] = alive
        fig.update(self.tiles_figures({p.cam: p.jpegs for p in peers}, fig["w0"], fig["w1"], header=False))
        return fig

    def _wait(self, count: Any, check: Any, what: str) -> int:
        """Until every camera has given a first tile (or the start timeout); returns how many did."""
        deadline = time.monotonic() + self.args.start_timeout + 2.0 * self.n
        while time.monotonic() < deadline:
            check()
            if count() >= self.n:
                return self.n
            time.sleep(0.2)
        got = count()
        say(f"{what}: only {got} of {self.n} cameras gave a tile within the start timeout; measuring anyway")
        return got

    # -- tiles -> figures ----------------------------------------------------------------
    def tiles_figures(self, tiles: dict[str, list[tuple[float, bytes]]], w0: float, w1: float, *,
                      header: bool, reduced: bool = False) -> dict[str, Any]:
        assert self.rig is not None
        wall = w1 - w0
        clock_offset = time.time() - time.monotonic()  # tile headers carry wall-clock capture times
        lat: list[float] = []
        cap_lat: list[float] = []
        pub_lat: list[float] = []
        rates: list[float] = []
        gaps: list[float] = []
        total = bad = 0
        for cam, items in tiles.items():
            inside = [(t, p) for t, p in items if w0 <= t < w1]
            total += len(inside)
            if len(inside) >= 2:
                rates.append((len(inside) - 1) / (inside[-1][0] - inside[0][0]))
            else:
                rates.append(len(inside) / wall)
            times = [w0] + [t for t, _ in inside] + [w1]
            gaps.append(max(b - a for a, b in zip(times, times[1:])))
            for t, payload in inside:
                jpeg = payload
                hdr: dict[str, Any] = {}
                if header:
                    hdr, jpeg = decode_tile(payload)
                try:
                    idx = read_counter(jpeg, self.source_width, reduced)
                    sent = self.rig.sent_time(self.mount_of[cam], idx, at=t)
                except (CounterError, ValueError):
                    bad += 1
                    continue
                lat.append(1000.0 * (t - sent))
                if hdr:
                    captured = float(hdr["captured_at"]) - clock_offset
                    cap_lat.append(1000.0 * (captured - sent))
                    pub_lat.append(1000.0 * (t - captured))
        rates.sort()
        fig = {
            "tiles": total,
            "tiles_per_s": round(total / wall, 2),
            "tiles_per_s_per_camera": round(statistics.median(rates), 3) if rates else 0.0,
            "tiles_per_s_per_camera_min": round(rates[0], 3) if rates else 0.0,
            "cameras_with_tiles": sum(1 for c in tiles.values() if any(w0 <= t < w1 for t, _ in c)),
            "max_gap_s": round(max(gaps), 2) if gaps else None,
            **quantiles("", lat, (50, 95, 99, 100)),
            "latency_samples": len(lat),
            "unreadable": bad,
        }
        if header:
            fig.update(quantiles("capture_", cap_lat, (50, 95)))
            fig.update(quantiles("tile_", pub_lat, (50, 95)))
        return fig


def quantiles(prefix: str, values: list[float], percents: tuple[int, ...]) -> dict[str, float | None]:
    """{prefix + "p50_ms": ..., ...} (p100 is called max_ms), rounded to 0.1 ms."""
    values = sorted(values)
    out: dict[str, float | None] = {}
    for q in percents:
        v = pctl(values, q / 100) if q < 100 else (values[-1] if values else None)
        out[f"{prefix}{'max' if q == 100 else f'p{q}'}_ms"] = None if v is None else round(v, 1)
    return out


def start_py_spy(pid: int, out: Path, seconds: float, native: bool = False) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy")
    if exe is None:
        say("--profile: py-spy not found (pip install py-spy); profiling skipped")
        return None
    cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--rate", "100",
           "--duration", str(max(1, int(seconds)))]
    # --native shows where time goes inside FFmpeg/OpenCV, but pauses the process for each sample
    cmd += ["--native"] if native else ["--nonblocking"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.out_path = out  # type: ignore[attr-defined]
    return proc


def run_once(args: argparse.Namespace, tmp: Path, n: int, mode: str, accounts: list[BrokerAccount],
             passwords: dict[str, str]) -> dict[str, dict[str, Any]]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-{n}-", dir=tmp))
    run = Run(args, run_dir, n, mode, accounts, passwords)
    others = wait_quiet(args)
    out: dict[str, dict[str, Any]] = {}
    try:
        run.start_rig()
        time.sleep(1.0)
        out["service"] = run.service_phase()
        out["service"]["other_cpu_pct_before"] = round(others, 1)
        if not args.no_ffmpeg:
            time.sleep(2.0)  # the service's connections are gone; the server idles again
            out["ffmpeg"] = run.ffmpeg_phase()
    finally:
        run.stop()
    return out


# =====================================================================================
# Output
# =====================================================================================
ROWS: list[tuple[str, tuple[str, ...], str]] = [
    # label, figures shown as "a / b / c", unit
    ("cameras giving tiles / started", ("cameras_with_tiles", "cameras_started"), ""),
    ("CPU, % of one core (all threads)", ("cpu_pct",), ""),
    ("  per camera", ("cpu_pct_per_camera",), ""),
    ("resident memory, MB (RSS / PSS)", ("rss_mb", "pss_mb"), ""),
    ("tiles/s in all", ("tiles_per_s",), ""),
    ("tiles/s per camera (median / min)", ("tiles_per_s_per_camera", "tiles_per_s_per_camera_min"), ""),
    ("longest gap between tiles", ("max_gap_s",), " s"),
    ("glass-to-tile p50 / p95 / p99", ("p50_ms", "p95_ms", "p99_ms"), " ms"),
    ("  of which: to decoded p50 / p95", ("capture_p50_ms", "capture_p95_ms"), " ms"),
    ("  then: to the subscriber p50 / p95", ("tile_p50_ms", "tile_p95_ms"), " ms"),
    ("HD tiles/s in all", ("hd_tiles_per_s",), ""),
    ("HD glass-to-tile p50 / p95", ("hd_p50_ms", "hd_p95_ms"), " ms"),
    ("RTSP server CPU %", ("server_cpu_pct",), ""),
    ("server pacing late p95 / max", ("server_late_p95_ms", "server_late_max_ms"), " ms"),
    ("mosquitto CPU %", ("mosquitto_cpu_pct",), ""),
    ("bench CPU % / machine % of 200", ("bench_cpu_pct", "machine_cpu_pct"), ""),
    ("other work on the box, % of a core", ("other_cpu_pct",), ""),
    ("start-up (all cameras' first tile)", ("startup_s",), " s"),
]


def cell(fig: dict[str, Any] | None, keys: tuple[str, ...], unit: str) -> str:
    if not fig or not any(k in fig for k in keys):
        return "-"
    return " / ".join(fmt(fig.get(k)) for k in keys) + unit


def print_side_by_side(n: int, mode: str, figs: dict[str, dict[str, Any]], label: str, seconds: float) -> None:
    svc, ff = figs.get("service"), figs.get("ffmpeg")
    print(f"\n=== {n} cameras, {mode} ({CLIPS[mode][0]} at 25 fps), {label}, {seconds:g} s window")
    cols = [("ioc cameras", svc), (f"ffmpeg {FFMPEG_FILTER} x{n}", ff)]
    width = max(len(r[0]) for r in ROWS)
    cw = 28
    print(f"  {'':<{width}}  " + "".join(f"{c:<{cw}}" for c, _ in cols))
    for labeltxt, keys, unit in ROWS:
        print(f"  {labeltxt:<{width}}  " + "".join(f"{cell(f, keys, unit):<{cw}}" for _, f in cols))
    if svc and svc.get("_threads"):
        top = ", ".join(f"{name} x{cnt} {pct}" for name, cnt, pct in svc["_threads"][:8])
        print(f"  service threads by name (% of a core): {top}")
    prof = svc.get("_profile") if svc else None
    if prof:
        print(f"  py-spy on the service: busy {prof['busy_pct_of_core']}% of a core "
              f"({prof['samples']} samples, raw stacks in {prof['file']})")
        for title, top in (("self", prof["top_self"]), ("inclusive", prof["top_inclusive"])):
            print(f"    {title}, % of a core: " + "; ".join(f"{where} {pct}" for where, pct in top))


def clean(fig: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fig.items() if not k.startswith("_") and k not in ("w0", "w1")}


# =====================================================================================
# main
# =====================================================================================
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", default="10,30,60", help="comma-separated camera counts (default 10,30,60)")
    p.add_argument("--modes", default="main-keyframes",
                   help="main-keyframes (1080p25 main stream, keyframes only: the headline) and/or sub-full "
                        "(360p25 sub-stream, every frame), comma-separated (default main-keyframes)")
    p.add_argument("--seconds", type=float, default=25.0, help="measurement window per side (default 25)")
    p.add_argument("--warmup", type=float, default=5.0,
                   help="seconds after every camera gave its first tile, before measuring (default 5)")
    p.add_argument("--runs", type=int, default=3, help="runs of each case up to 10 cameras; figures are medians")
    p.add_argument("--runs-large", type=int, default=1, help="runs of each case above 10 cameras (default 1)")
    p.add_argument("--hd", type=int, default=1,
                   help="cameras a wall shows large, which get HD tiles too (default 1: the overview layout's "
                        "full-screen camera; the rest get 640x360 tiles only)")
    p.add_argument("--no-ffmpeg", action="store_true", help="measure the service only")
    p.add_argument("--video", choices=["main", "sub"], default=None,
                   help="a wall also plays every camera's live video from this stream (forwarded H.264 on the "
                        "broker; the bench does not subscribe to it)")
    p.add_argument("--aligned", action="store_true",
                   help="every camera's keyframes at the same moment (default: spread over the 1 s GOP)")
    p.add_argument("--service-env", action="append", default=[], metavar="IOC_X=VALUE",
                   help="extra environment for `ioc cameras` (repeatable), e.g. IOC_CAMERA_TILE_FPS=1")
    p.add_argument("--service-src", type=Path, default=REPO,
                   help="run `ioc cameras` from this source tree (PYTHONPATH and working directory), e.g. a copy "
                        "with a change to compare against this one (default: this repository)")
    p.add_argument("--start-timeout", type=float, default=30.0,
                   help="seconds (plus two per camera: opens are serialised) for every camera's first tile "
                        "(default 30)")
    p.add_argument("--profile", nargs="?", const="python", choices=["python", "native"], default=None,
                   help="py-spy record the service during each window; 'native' adds FFmpeg/OpenCV frames "
                        "(and pauses the service at each sample: its latency figures are then off)")
    p.add_argument("--wait-quiet", type=float, default=60.0,
                   help="before each run, wait up to this long for other work to drop under --quiet-pct (default 60)")
    p.add_argument("--quiet-pct", type=float, default=25.0, help="%% of one core counted as quiet (default 25)")
    p.add_argument("--keep-tmp", action="store_true", help="keep logs (service, ffmpeg, server, broker)")
    args = p.parse_args(argv)
    try:
        args.counts = [int(c) for c in args.cameras.split(",") if c.strip()]
    except ValueError:
        p.error("--cameras takes numbers, e.g. 10,30,60")
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.mode_list:
        if m not in CLIPS:
            p.error(f"unknown mode {m!r}: main-keyframes or sub-full")
    if not args.counts or min(args.counts) < 1 or args.runs < 1 or args.runs_large < 1 or args.seconds <= 0:
        p.error("--cameras, --runs and --seconds must be positive")
    if not args.no_ffmpeg and shutil.which("ffmpeg") is None:
        p.error("ffmpeg not found (apt-get install ffmpeg), or pass --no-ffmpeg")
    return args


def main() -> int:
    args = parse_args()

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="ioc-bench-cameras-"))
    passwords = {"bench-camera": secrets.token_urlsafe(16), "bench-wall": secrets.token_urlsafe(16)}
    accounts = [BrokerAccount("bench-camera", hash_password(passwords["bench-camera"]), "camera"),
                BrokerAccount("bench-wall", hash_password(passwords["bench-wall"]), "api")]
    results: dict[str, Any] = {}
    failed = False
    try:
        for mode in args.mode_list:
            for n in args.counts:
                runs = args.runs if n <= 10 else args.runs_large
                per_side: dict[str, list[dict[str, Any]]] = defaultdict(list)
                for k in range(1, runs + 1):
                    say(f"{n} cameras, {mode}: run {k}/{runs}")
                    figs = run_once(args, tmp, n, mode, accounts, passwords)
                    print_side_by_side(n, mode, figs, f"run {k}/{runs}", args.seconds)
                    for side, fig in figs.items():
                        per_side[side].append(clean(fig))
                med = {side: median_figures(figs) for side, figs in per_side.items()}
                if runs > 1:
                    print_side_by_side(n, mode, med, f"median of {runs} runs", args.seconds)
                results.setdefault(mode.replace("-", "_"), {})[str(n)] = {**med, "runs": runs}
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        failed = True
    finally:
        if args.keep_tmp or args.profile:
            say(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if results:
        results["_meta"] = {"cores": os.cpu_count(), "seconds": args.seconds, "warmup_s": args.warmup,
                            "keyframes": "aligned" if args.aligned else "staggered", "hd_cameras": args.hd, "video": args.video,
                            "service_env": args.service_env, "ffmpeg_filter": FFMPEG_FILTER,
                            "service_src": str(args.service_src),
                            "opencv": cv2.__version__}
        print(json.dumps(results, separators=(",", ":")), flush=True)
    return 130 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
