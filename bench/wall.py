#!/usr/bin/env python3
"""Wall hub benchmark: live tiles through the broker to wall screens and tablets over websockets.

Prints figures, never passes or fails. Everything runs on 127.0.0.1 and is set up like the
tests do: a fresh PostgreSQL database (dropped at the end), a private Mosquitto started from
the configuration we generate, the service accounts, an admin and a leader, a screen token,
`ioc serve` (API + wall hub) as a child process restarted for every run, and for the agency
scenario `ioc ingest` as well.

The websocket clients (9 screens and 100 or 1,000 tablets) run in separate processes: the
`websockets` asyncio client without compression, with each data frame handed to a recorder
as it is parsed (no task wake-up per message), so a thousand clients cost little CPU. Every
update carries the time it was published to the broker (a KPI tile's `ts`, a camera
picture's `captured_at`), so every delivery's broker-publish -> client-receive latency is known.

Scenarios:

    fanout-100, fanout-1000   KPI tile updates to every tablet, the rate stepped up until p99 > 100 ms
    agency                    an agency's KPI over MQTT -> ioc ingest -> PostgreSQL -> hub -> screen 1
    cameras                   10 cameras at 2 fps, ~50 KB JPEGs, to the 9 screens (phu-ly-cameras layout)
    stall                     one tablet stops reading for 20 s: everyone else's latency, the server's memory

    python bench/wall.py                                  # every scenario, 3 runs each (~15 min)
    python bench/wall.py --scenario fanout-1000 --runs 1  # one scenario
    python bench/wall.py --scenario fanout-1000 --runs 1 --profile   # py-spy on ioc serve

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path[:1] = [str(REPO)]  # the repository, not bench/ (whose ingest.py would hide the `ingest` package)

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402

from bench.ingest import (  # noqa: E402
    AckReader, CpuMeter, finish_profiler, fmt, machine_busy, median_figures, mqtt_connect, mstr, proc_cpu,
    proc_rss, publish_packet, say, varint,
)
from ioc.core.contracts import topics  # noqa: E402
from ioc.core.contracts.tile_frame import MAGIC as TILE_MAGIC  # noqa: E402
from dashboards import LAYOUTS  # noqa: E402
from ioc.core.contracts.wall_frames import parse_picture_frame  # noqa: E402
from ioc.serve.wall.layout import load_presets  # noqa: E402
from tests.rigs import children  # noqa: E402
from tests.rigs.mosquitto import MosquittoRig  # noqa: E402
from tests.rigs.serve import ServeProcess  # noqa: E402

AGENCY = "bench-wall"
CAMERAS = [f"pl-{i:02d}" for i in range(1, 11)]
# single-tile KPIs of the overview layout (kpi, area, low, high): values that always meet the
# target, so the hub's alert keeper has nothing to write
FANOUT_KEYS = [
    ("tthc.on_time_rate", "37", 98.2, 99.9),
    ("tthc.online_submission_rate", "37", 60.0, 90.0),
    ("tthc.online_payment_rate", "37", 55.0, 70.0),
    ("dvc.full_online_rate", "37", 80.5, 95.0),
    ("an.eid_level2_accounts", "37", 500_000, 600_000),
]
AGENCY_KEY = ("tthc.on_time_rate", "37", "k-ontime")  # shown on screen 1 of the overview
# the fan-out ladder, in tablet deliveries/s; the update rate of a step is this / tablets
LADDER = [10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 80_000, 100_000, 120_000, 150_000]
SCENARIOS = ["fanout-100", "fanout-1000", "agency", "cameras", "stall"]
P99_LIMIT_MS = 100.0
HELD_SHARE = 0.99  # a step is held if at least this share of the deliveries arrived


# =====================================================================================
# Clients (run in their own processes)
# =====================================================================================
# what the clients record per tile update (k) and per camera picture (p), as array typecodes
K_TYPES = {"client": "H", "tile": "B", "seq": "q", "stamp": "d", "recv": "d"}
P_TYPES = {"client": "H", "cam": "B", "seq": "q", "stamp": "d", "recv": "d", "bytes": "I"}
NP = {"H": np.uint16, "B": np.uint8, "q": np.int64, "d": np.float64, "I": np.uint32}


class Recorder:
    """Every tile update and picture the clients of one process receive: who, what, sent when, got when."""

    def __init__(self, tiles: list[str], cams: list[str]) -> None:
        self.tile_ix = {t: i for i, t in enumerate(tiles)}
        self.cam_ix = {c: i for i, c in enumerate(cams)}
        self.now = 0.0
        self.layout: dict[int, str] = {}
        self.errors: list[str] = []
        self._iso: dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        # k: KPI and chart tiles (stamp: the live message's ts); p: camera pictures (captured_at)
        self.k = {key: array(t) for key, t in K_TYPES.items()}
        self.p = {key: array(t) for key, t in P_TYPES.items()}

    def message(self, idx: int, text: bool, data: Any) -> None:
        if not text:
            head, _ = parse_picture_frame(bytes(data))
            cam = self.cam_ix.get(head.get("camera"))
            if cam is not None and isinstance(head.get("seq"), int):
                p = self.p
                for key, v in (("client", idx), ("cam", cam), ("seq", head["seq"]), ("stamp", head["captured_at"]),
                               ("recv", self.now), ("bytes", len(data))):
                    p[key].append(v)
            return
        m = orjson.loads(data)
        kind = m.get("type")
        if kind == "tile":
            d = m.get("data") or {}
            stamp = d.get("ts") or d.get("changed_at")
            ti = self.tile_ix.get(m.get("tile"))
            if ti is None or not isinstance(stamp, str):
                return
            t = self._iso.get(stamp)
            if t is None:
                if len(self._iso) > 100_000:
                    self._iso.clear()
                t = self._iso[stamp] = datetime.fromisoformat(stamp).timestamp()
            k = self.k
            k["client"].append(idx)
            k["tile"].append(ti)
            k["seq"].append(m["seq"])
            k["stamp"].append(t)
            k["recv"].append(self.now)
        elif kind == "layout":
            self.layout[idx] = m["layout"]["id"]
        elif kind == "error":
            self.errors.append(f"client {idx}: {m.get('reason')}")


class TapConnection(ClientConnection):
    """A `websockets` client connection that gives each data frame to the recorder as soon as it
    is parsed, stamped with the time its bytes were read, instead of queueing it for recv()."""

    recorder: Recorder
    index = -1

    def data_received(self, data: bytes) -> None:
        self.recorder.now = time.time()
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        if (self.response is not None and isinstance(event, Frame) and event.fin
                and event.opcode in (Opcode.TEXT, Opcode.BINARY)):
            self.recorder.message(self.index, event.opcode is Opcode.TEXT, event.data)
        else:
            super().process_event(event)


def client_main(cfg: dict[str, Any], pipe: Any) -> None:
    try:
        asyncio.run(_clients(cfg, pipe))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails loudly
        try:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass


async def _clients(cfg: dict[str, Any], pipe: Any) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rec = Recorder(cfg["tiles"], CAMERAS)
    TapConnection.recorder = rec
    conns: dict[int, TapConnection] = {}
    gate = asyncio.Semaphore(50)

    async def open_one(idx: int, role: str, screen: int | None) -> None:
        sock = None
        if idx in cfg["small_rcvbuf"]:
            # like a tablet behind a dead link: what the hub writes waits in the hub's socket
            # buffer, not in a large receive buffer on this side
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.connect(("127.0.0.1", cfg["port"]))
            sock.setblocking(False)
        async with gate:
            ws = await connect(cfg["url"], sock=sock, compression=None, max_size=16 * 1024 * 1024, ping_interval=None,
                               open_timeout=60, create_connection=TapConnection)
            ws.index = idx
            hello: dict[str, Any] = {"type": "hello", "token": cfg["tokens"][role], "role": role}
            if screen is not None:
                hello["screen"] = screen
            await ws.send(orjson.dumps(hello).decode())
            conns[idx] = ws

    await asyncio.gather(*(open_one(*spec) for spec in cfg["specs"]))
    await _until(lambda: len(rec.layout) >= len(conns) or bool(rec.errors), 60)
    pipe.send(("ready", len(rec.layout), rec.errors[:5]))
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, pipe.recv)
        op = cmd[0]
        if op == "collect":
            pipe.send(("data", {"k": {k: v.tobytes() for k, v in rec.k.items()},
                                "p": {k: v.tobytes() for k, v in rec.p.items()}}))
            rec.reset()
        elif op in ("stall", "resume"):
            ws = conns.get(cmd[1])
            if ws is not None and ws.transport is not None:
                (ws.transport.pause_reading if op == "stall" else ws.transport.resume_reading)()
            pipe.send((op, ws is not None))
        elif op == "wait_layout":
            ok = await _until(lambda: all(rec.layout.get(i) == cmd[1] for i in conns), cmd[2])
            pipe.send(("layout", ok))
        elif op == "status":
            closed = {i: ws.close_code for i, ws in conns.items() if ws.close_code is not None}
            pipe.send(("status", closed, rec.errors[:5]))
        elif op == "close":
            await asyncio.wait([asyncio.create_task(ws.close()) for ws in conns.values()], timeout=10)
            pipe.send(("bye",))
            return


async def _until(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class Clients:
    """Websocket clients spread over `procs` processes; `specs` = [(index, role, screen)]."""

    def __init__(self, world: World, specs: list[tuple[int, str, int | None]], procs: int,
                 small_rcvbuf: tuple[int, ...] = ()) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        self.owner: dict[int, int] = {}
        procs = max(1, min(procs, len(specs)))
        t0 = time.monotonic()
        for n in range(procs):
            mine = specs[n::procs]
            self.owner.update({s[0]: n for s in mine})
            cfg = {"url": world.serve.ws_url, "port": world.serve.wall_port, "tokens": world.tokens, "specs": mine,
                   "tiles": world.tile_ids, "small_rcvbuf": small_rcvbuf}
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(cfg, child), daemon=True, name=f"wall-clients-{n}")
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        ready = 0
        for pipe, proc in zip(self.pipes, self.procs):
            msg = self._recv(pipe, proc, 180)
            if msg[2]:
                raise SystemExit(f"bench: clients refused: {msg[2]}")
            ready += msg[1]
        if ready < len(specs):
            raise SystemExit(f"bench: only {ready} of {len(specs)} clients got a layout")
        say(f"{len(specs)} clients connected in {time.monotonic() - t0:.1f} s ({procs} process(es))")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    @staticmethod
    def _recv(pipe: Any, proc: Any, timeout: float) -> Any:
        if not pipe.poll(timeout):
            raise SystemExit(f"bench: client process {proc.name} did not answer in {timeout:g} s")
        msg = pipe.recv()
        if msg[0] == "error":
            raise SystemExit(f"bench: client process {proc.name}: {msg[1]}")
        return msg

    def ask(self, *cmd: Any, timeout: float = 60) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(cmd)
        return [self._recv(pipe, proc, timeout) for pipe, proc in zip(self.pipes, self.procs)]

    def ask_owner(self, idx: int, *cmd: Any) -> Any:
        n = self.owner[idx]
        self.pipes[n].send((cmd[0], idx, *cmd[1:]))
        return self._recv(self.pipes[n], self.procs[n], 30)

    def collect(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        parts = [m[1] for m in self.ask("collect")]
        k = {key: np.concatenate([np.frombuffer(p["k"][key], NP[t]) for p in parts]) for key, t in K_TYPES.items()}
        p = {key: np.concatenate([np.frombuffer(x["p"][key], NP[t]) for x in parts]) for key, t in P_TYPES.items()}
        return k, p

    def close(self) -> None:
        try:
            self.ask("close", timeout=30)
        except (SystemExit, OSError, EOFError):
            pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


# =====================================================================================
# Publishers: live messages straight to the broker, stamped when written to the socket
# =====================================================================================
class LivePublisher:
    """A raw MQTT v5 connection of a service account; retained QoS 0 PUBLISH, as the live topics are."""

    def __init__(self, world: World, user: str) -> None:
        self.sock, _ = mqtt_connect("127.0.0.1", world.broker.service_port, f"bench-{user}-{secrets.token_hex(3)}", user,
                                    world.passwords[user])

    def publish(self, topic: bytes, payload: bytes) -> None:
        body = mstr(topic) + b"\x00" + payload  # no packet id at QoS 0, no properties
        self.sock.sendall(b"\x31" + varint(len(body)) + body)

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.close()
        except OSError:
            pass


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds")


def paced(rate: float, t0: float, t1: float, send: Any, stop: threading.Event) -> int:
    """send(i) at t0 + i/rate (wall clock) until t1; returns how many were sent."""
    i = 0
    while not stop.is_set():
        due = t0 + i / rate
        if due >= t1:
            break
        wait = due - time.time()
        if wait > 0:
            time.sleep(min(wait, 0.05))
            continue
        send(i)
        i += 1
    return i


class KpiLoad(threading.Thread):
    """Live KPI messages for the overview's single-tile KPIs, round robin, at `rate` per second."""

    def __init__(self, world: World, rate: float, t0: float, t1: float) -> None:
        super().__init__(daemon=True, name="kpi-load")
        self.pub = LivePublisher(world, "svc-ingest")
        self.rate, self.t0, self.t1 = rate, t0, t1
        self.stop = threading.Event()
        self.stamps = array("d")
        self.topics = [topics.live_kpi(k, a).encode() for k, a, _, _ in FANOUT_KEYS]
        self.sent = 0

    def _send(self, i: int) -> None:
        n = i % len(FANOUT_KEYS)
        kpi, area, lo, hi = FANOUT_KEYS[n]
        value: float = lo + ((i * 7919) % 1000) / 1000.0 * (hi - lo)
        if hi > 1000:
            value = int(value)
        t = time.time()
        ts = iso(t)
        self.pub.publish(self.topics[n], orjson.dumps({"kpi": kpi, "area": area, "ts": ts, "value": value, "rev": 0,
                                                       "agency": "bench", "received_at": ts}))
        self.stamps.append(t)

    def run(self) -> None:
        try:
            self.sent = paced(self.rate, self.t0, self.t1, self._send, self.stop)
        finally:
            self.pub.close()


def jpeg_pool(n: int, seed: int) -> list[bytes]:
    """640x360 pictures of 45-60 KB at quality 80 (a busy street scene's size), different each."""
    rng = np.random.default_rng(seed)
    h, w = 360, 640
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 128 / (w + h)], -1)
    out = []
    for _ in range(n):
        blocks = cv2.resize(rng.integers(0, 255, (18, 32, 3)).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        img = (0.5 * base + 0.5 * blocks + rng.normal(0, 10, (h, w, 3))).clip(0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        out.append(jpeg.tobytes())
    return out


class CameraLoad(threading.Thread):
    """Camera tiles (IOCT header + JPEG) for `cams` at `fps` each, phases spread evenly."""

    def __init__(self, world: World, cams: list[str], fps: float, t0: float, t1: float) -> None:
        super().__init__(daemon=True, name="camera-load")
        self.pub = LivePublisher(world, "svc-camera")
        self.cams, self.fps, self.t0, self.t1 = cams, fps, t0, t1
        self.stop = threading.Event()
        self.jpegs = world.jpegs
        self.topics = [topics.live_camera(c, "tile").encode() for c in cams]
        self.seq0 = int(time.time() * 10) * 100  # seq grows across runs, as a camera's does
        self.sent = 0
        self.bytes = 0

    def _send(self, i: int) -> None:
        n, seq = i % len(self.cams), self.seq0 + i // len(self.cams)
        jpeg = self.jpegs[(i * 7) % len(self.jpegs)]
        t = time.time()
        head = orjson.dumps({"camera": self.cams[n], "seq": seq, "captured_at": t, "width": 640, "height": 360,
                             "variant": "sd"})
        payload = b"".join((TILE_MAGIC, struct.pack(">H", len(head)), head, jpeg))
        self.pub.publish(self.topics[n], payload)
        self.bytes += len(payload)

    def run(self) -> None:
        try:
            self.sent = paced(self.fps * len(self.cams), self.t0, self.t1, self._send, self.stop)
        finally:
            self.pub.close()


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True, name="rss")
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), proc_rss(self.pid)))
            time.sleep(self.every)

    def peak_mb(self, t0: float, t1: float) -> float:
        return round(max((r for t, r in self.samples if t0 <= t < t1), default=0) / 2**20, 1)

    def at_mb(self, t: float) -> float:
        return round(min(self.samples, key=lambda s: abs(s[0] - t))[1] / 2**20, 1)


# =====================================================================================
# The world: database, broker, accounts, ioc serve (and ioc ingest)
# =====================================================================================
@dataclass
class World:
    args: argparse.Namespace
    tmp: Path
    db_name: str = ""
    db_url: str = ""
    db_created: bool = False
    broker: Any = None
    serve: Any = None
    ingest: subprocess.Popen[bytes] | None = None
    passwords: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    layouts: dict[str, Any] = field(default_factory=dict)
    tile_ids: list[str] = field(default_factory=list)
    jpegs: list[bytes] = field(default_factory=list)

    async def _prepare(self) -> list[Any]:
        import asyncpg

        from ioc.core.accounts import broker_accounts, create_agency, create_user
        from ioc.core.settings import load_settings
        from ioc.core.storage.pool import create_pool
        from ioc.core.storage.setup import prepare_database

        self.db_name = f"ioc_bench_{secrets.token_hex(5)}"
        admin = await asyncpg.connect(self.args.pg_admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{self.db_name}"')
            self.db_created = True
        finally:
            await admin.close()
        self.db_url = f"{self.args.pg_admin_url.rpartition('/')[0]}/{self.db_name}"
        pool = await create_pool(self.db_url, app="ioc-bench-setup", min_size=1, max_size=2)
        try:
            await prepare_database(pool, load_settings(database_url=self.db_url))
            async with pool.acquire() as conn:
                for name, role in (("svc-ingest", "ingest"), ("svc-api", "api"), ("svc-camera", "camera"),
                                   ("bench-admin", "admin"), ("bench-leader", "leader")):
                    self.passwords[name] = await create_user(conn, name, role=role, actor="bench")
                self.passwords[AGENCY] = await create_agency(conn, AGENCY, name_vi="Cơ quan đo tải", sectors=["tthc"],
                                                             actor="bench")
                await conn.executemany("INSERT INTO cameras (id, name, stream_url, mode) VALUES ($1, $2, 'rtsp://x', "
                                       "'sub-full')", [(c, f"Camera {c}") for c in CAMERAS])
                return await broker_accounts(conn)
        finally:
            await pool.close()

    def setup(self) -> None:
        accounts = asyncio.run(self._prepare())
        say(f"database {self.db_name} ready")
        self.broker = MosquittoRig(self.tmp / "mosquitto", accounts)
        self.broker.start()
        say(f"mosquitto pid {self.broker.pid} on 127.0.0.1:{self.broker.port} (generated config)")
        self.layouts = load_presets(LAYOUTS)
        self.tile_ids = sorted({t.id for lay in self.layouts.values() for t in lay.tiles})
        overview = self.layouts["overview"]
        for kpi, area, _, _ in FANOUT_KEYS:
            # one KPI tile each (a map or ranking tile of the same KPI gets its own, coarser
            # messages: at most one a second, whatever the rate)
            if len([t for t in overview.tiles if t.kind == "kpi" and (t.kpi, t.area) == (kpi, area)]) != 1:
                raise SystemExit(f"bench: {kpi}/{area} is not on exactly one KPI tile of the overview any more")
        self.jpegs = jpeg_pool(12, 1)
        self.start_serve()
        with httpx.Client(base_url=self.serve.base, timeout=30) as http:
            for role, user in (("admin", "bench-admin"), ("tablet", "bench-leader")):
                r = http.post("/api/v1/auth/token", data={"username": user, "password": self.passwords[user]})
                r.raise_for_status()
                self.tokens[role] = r.json()["access_token"]
            r = http.post("/api/v1/wall/screen-tokens", json={"name": "screen-bench"},
                          headers={"Authorization": f"Bearer {self.tokens['admin']}"})
            r.raise_for_status()
            self.tokens["screen"] = r.json()["token"]

    def env(self, user: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update({"IOC_DATABASE_URL": self.db_url, "IOC_MQTT_URL": self.broker.url_for(user, self.passwords[user]),
                    "IOC_LOG_FORMAT": "json", "PYTHONPATH": str(REPO), **extra})
        return env

    def start_serve(self) -> None:
        """A fresh `ioc serve` (every run starts from the same point: no clients, a small heap)."""
        if self.serve is not None:
            self.serve.stop()
        env = self.env("svc-api", IOC_JWT_SECRET="bench-wall-secret-" + "x" * 32, IOC_WALL_SWITCH_DELAY_S="0")
        for item in self.args.serve_env:
            key, _, value = item.partition("=")
            env[key] = value
        self.serve = ServeProcess(env, self.tmp / "serve.log", REPO).start(timeout=60)

    def start_ingest(self) -> None:
        if self.ingest is not None:
            return
        log_path = self.tmp / "ingest.log"
        with open(log_path, "ab") as log:
            # a service's client id (ioc.core.mqtt.client_ids): the agency AGENCY connects with
            # its name as client id, and the same id would have the two kick each other off
            self.ingest = subprocess.Popen([sys.executable, "-m", "ioc.cli", "ingest", "--worker-id", "ingest-bench-wall"],
                                           env=self.env("svc-ingest"), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                           preexec_fn=children.preexec())
        children.track(self.ingest)
        deadline = time.monotonic() + 60
        while '"mqtt connected"' not in children.read_text(log_path):
            if self.ingest.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: ioc ingest did not start:\n{children.read_text(log_path)[-3000:]}")
            time.sleep(0.1)
        say(f"ioc ingest pid {self.ingest.pid}")

    def switch(self, layout: str) -> None:
        r = httpx.post(self.serve.base + "/api/v1/wall/switch", json={"layout": layout, "delay_s": 0},
                       headers={"Authorization": f"Bearer {self.tokens['admin']}"}, timeout=30)
        r.raise_for_status()

    def screens(self) -> list[tuple[int, str, int | None]]:
        return [(n - 1, "screen", n) for n in range(1, 10)]

    def tablets(self, n: int) -> list[tuple[int, str, int | None]]:
        return [(9 + i, "tablet", None) for i in range(n)]

    def groups(self, clients: Clients | None) -> dict[str, list[int]]:
        g = {"server": [self.serve.proc.pid], "mosquitto": [self.broker.pid], "bench": [os.getpid()]}
        if clients is not None:
            g["clients"] = clients.pids
        if self.ingest is not None:
            g["ingest"] = [self.ingest.pid]
        return g

    def wait_quiet(self) -> float:
        """Wait (up to --wait-quiet s) for other work on the box to drop under --quiet-pct; return it."""
        own = [pid for pids in self.groups(None).values() for pid in pids]
        deadline = time.monotonic() + self.args.wait_quiet
        calm, load, told = 0, 0.0, False
        while calm < 2:
            load = other_load(own)
            calm = calm + 1 if load <= self.args.quiet_pct else 0
            if calm == 0 and time.monotonic() > deadline:
                if self.args.wait_quiet > 0:
                    say(f"the box stays busy ({load:.0f}% of a core of other work): running anyway")
                break
            if calm == 0 and not told:
                say(f"the box is busy ({load:.0f}% of a core of other work): waiting for it to settle")
                told = True
        return round(load, 1)

    def cleanup(self) -> None:
        import asyncpg

        if self.ingest is not None:
            children.end(self.ingest)
        if self.serve is not None:
            self.serve.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.db_created:
            async def drop() -> None:
                admin = await asyncpg.connect(self.args.pg_admin_url)
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
                await admin.close()
            try:
                asyncio.run(drop())
                say(f"dropped database {self.db_name}")
            except Exception as exc:  # noqa: BLE001
                say(f"could not drop database {self.db_name}: {exc}")


def other_load(own_pids: list[int], seconds: float = 1.0) -> float:
    """% of one core the box spends on other work than these processes, over `seconds`."""
    def own() -> float:
        return sum((proc_cpu(pid) or (0.0, 0))[0] for pid in own_pids)
    a, b, t0 = own(), machine_busy(), time.monotonic()
    time.sleep(seconds)
    return max(0.0, 100.0 * ((machine_busy() - b) - (own() - a)) / (time.monotonic() - t0))


class Profiler:
    """py-spy on `ioc serve` for one window (--profile)."""

    def __init__(self, world: World, name: str, seconds: float) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.seconds = seconds
        exe = shutil.which("py-spy")
        if not world.args.profile or exe is None:
            if world.args.profile:
                say("--profile: py-spy not found (pip install py-spy)")
            return
        out = Path(world.args.profile_dir) / f"{name}-serve.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([exe, "record", "--pid", str(world.serve.proc.pid), "--format", "raw", "--output",
                                      str(out), "--rate", "100", "--nonblocking", "--duration",
                                      str(max(1, int(seconds)))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.proc.out_path = out  # type: ignore[attr-defined]

    def report(self) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        prof = finish_profiler(self.proc, self.seconds)
        if prof:
            print(f"  py-spy on ioc serve: busy {prof['busy_pct_of_core']}% of a core ({prof['samples']} samples, "
                  f"raw stacks in {prof['file']})")
            for title, key in (("self", "top_self"), ("inclusive", "top_inclusive")):
                print(f"    {title} (% of a core):")
                for f, pct in prof[key]:
                    print(f"      {pct:6.1f}  {f}")
        return prof


# =====================================================================================
# Figures
# =====================================================================================
def cpu_figs(meter: CpuMeter) -> dict[str, float]:
    """CPU per group as % of one core, and `other`: the rest of the machine (someone else's work)."""
    out = meter.pct()
    ours = sum(v for k, v in out.items() if k != "machine_cpu_pct")
    out["other_cpu_pct"] = round(max(0.0, out["machine_cpu_pct"] - ours), 1)
    return out


def ms(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000.0, 1) if len(values) else None


def latency_figs(lat: np.ndarray, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}p50_ms": ms(lat, 50), f"{prefix}p99_ms": ms(lat, 99), f"{prefix}max_ms": ms(lat, 100)}


def in_window(rec: dict[str, np.ndarray], t0: float, t1: float) -> np.ndarray:
    return (rec["stamp"] >= t0) & (rec["stamp"] < t1)


def measure(world: World, clients: Clients, loads: list[KpiLoad | CameraLoad],
            during: Callable[[], None] | None = None) -> CpuMeter:
    """Start the loads at their t0, CPU sampled until they end; `during` runs meanwhile."""
    groups = world.groups(clients)
    meter = CpuMeter()
    while time.time() < loads[0].t0 - 0.05:
        time.sleep(0.01)
    meter.start(groups)
    for load in loads:
        load.start()
    if during is not None:
        during()
    for load in loads:
        load.join()
    meter.stop(groups)
    return meter


# -- fan-out ------------------------------------------------------------------------------
def run_fanout(world: World, tablets: int, run_no: int) -> dict[str, Any]:
    args = world.args
    screens_per_key = [sum(1 for s in range(1, 10) for t in world.layouts["overview"].tiles_for(s)
                           if (t.kpi, t.area) == (k, a)) for k, a, _, _ in FANOUT_KEYS]
    clients = Clients(world, world.screens() + world.tablets(tablets), args.client_procs)
    steps: list[dict[str, Any]] = []
    prof = None
    try:
        warm = KpiLoad(world, args.ladder[0] / tablets, time.time() + 0.2, time.time() + 1.2)
        warm.start()
        warm.join()
        for target in args.ladder:
            rate = target / tablets
            t0 = time.time() + 0.3
            load = KpiLoad(world, rate, t0, t0 + args.step_s)
            if prof is None and target >= args.profile_at:
                prof = Profiler(world, f"fanout-{tablets}-run{run_no}", args.step_s)
            meter = measure(world, clients, [load])
            time.sleep(args.drain_s)
            k, _ = clients.collect()
            sel = in_window(k, t0, t0 + args.step_s)
            lat = k["recv"][sel] - k["stamp"][sel]
            stamps = np.frombuffer(load.stamps, np.float64)
            expected = sum((tablets + screens_per_key[i % len(FANOUT_KEYS)]) for i in range(len(stamps)))
            got = int(sel.sum())
            cpu = cpu_figs(meter)
            step = {"target_deliveries_per_s": target, "updates_per_s": round(len(stamps) / args.step_s, 1),
                    "deliveries_per_s": round(got / args.step_s), "delivered_share": round(got / max(expected, 1), 4),
                    **latency_figs(lat), **cpu}
            for who in ("server", "clients"):  # CPU time per delivery, in microseconds
                per_s = max(got / args.step_s, 1)
                step[f"{who}_us_per_delivery"] = round(cpu.get(f"{who}_cpu_pct", 0) * 1e4 / per_s, 2)
            step["held"] = bool(step["delivered_share"] >= HELD_SHARE and (step["p99_ms"] or 1e9) <= P99_LIMIT_MS)
            steps.append(step)
            print_step(tablets, step)
            if not step["held"] and not args.no_stop:
                break
        if prof is not None:
            prof.report()
        closed = [m[1] for m in clients.ask("status")]
    finally:
        clients.close()
    # held: the steps up to the first one that was not
    failed = next((s for s in steps if not s["held"]), None)
    held = steps[: steps.index(failed)] if failed else steps
    fig: dict[str, Any] = {"tablets": tablets, "held_updates_per_s": held[-1]["updates_per_s"] if held else 0}
    keys = ("deliveries_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "clients_cpu_pct", "mosquitto_cpu_pct",
            "other_cpu_pct", "server_us_per_delivery", "clients_us_per_delivery")
    for prefix, step in (("held_", held[-1] if held else None), ("failed_", failed)):
        fig.update({prefix + k: step.get(k) if step else None for k in keys})
    if not held:
        fig["held_deliveries_per_s"] = 0  # not even the first step: counts as 0 in the medians
    fig["failed_delivered_share"] = failed["delivered_share"] if failed else None
    fig["clients_closed_by_hub"] = sum(len(c) for c in closed)
    at30 = next((s for s in steps if s["target_deliveries_per_s"] == 30_000), None)
    for k in ("p50_ms", "p99_ms", "delivered_share", "server_cpu_pct", "clients_cpu_pct"):
        fig[f"at_30k_{k}"] = at30.get(k) if at30 else None
    fig["_steps"] = steps
    return fig


def print_step(tablets: int, s: dict[str, Any]) -> None:
    print(f"  {tablets} tablets, {s['updates_per_s']:>7,.1f} updates/s: {s['deliveries_per_s']:>7,} deliveries/s "
          f"({100 * s['delivered_share']:.1f}% of due), p50 {fmt(s['p50_ms'])} / p99 {fmt(s['p99_ms'])} / max "
          f"{fmt(s['max_ms'])} ms; CPU server {fmt(s.get('server_cpu_pct'))}, clients {fmt(s.get('clients_cpu_pct'))}, "
          f"mosquitto {fmt(s.get('mosquitto_cpu_pct'))}, other work {fmt(s.get('other_cpu_pct'))}"
          f"{'' if s['held'] else '  <- not held'}", flush=True)


# -- an agency's KPI to a screen --------------------------------------------------------------
def run_agency(world: World, run_no: int) -> dict[str, Any]:
    args = world.args
    world.start_ingest()
    kpi, area, tile = AGENCY_KEY
    tile_i = world.tile_ids.index(tile)
    clients = Clients(world, world.screens(), 1)
    sock, _ = mqtt_connect("127.0.0.1", world.broker.port, f"bench-agency-{secrets.token_hex(3)}", AGENCY,
                           world.passwords[AGENCY])
    acks = AckReader(sock)
    acks.start()
    sent: dict[int, float] = {}
    topic = topics.kpi(AGENCY).encode()
    last = [0]

    def send(i: int) -> None:
        t = time.time()
        ts = max(int(t * 1000), last[0] + 1)  # (kpi, area, ts) is a reading's identity: never twice
        last[0] = ts
        value = round(98.2 + ((i * 7919) % 1000) / 1000.0 * 1.7, 2)
        sock.sendall(publish_packet(topic, i % 65535 + 1, orjson.dumps({"kpi": kpi, "area": area, "ts": ts,
                                                                         "value": value})))
        sent[ts] = t

    try:
        meter = CpuMeter()
        groups = world.groups(clients)
        t0 = time.time() + 0.2
        meter.start(groups)
        n = paced(args.agency_rate, t0, t0 + args.duration, send, threading.Event())
        time.sleep(args.drain_s + 1.0)
        meter.stop(groups)
        k, _ = clients.collect()
    finally:
        acks.closing = True
        sock.close()
        clients.close()
    if acks.error:
        raise SystemExit(f"bench: agency publisher: {acks.error}")
    mine = (k["client"] == 0) & (k["tile"] == tile_i)
    stamps_ms = np.round(k["stamp"][mine] * 1000).astype(np.int64)
    recv = k["recv"][mine]
    order = np.argsort(stamps_ms)
    stamps_ms, recv = stamps_ms[order], recv[order]
    first_after = np.minimum.accumulate(recv[::-1])[::-1]  # earliest tile showing this reading or a newer one
    lat, unresolved = [], 0
    for ts, t in sent.items():
        j = int(np.searchsorted(stamps_ms, ts))
        if j >= len(stamps_ms):
            unresolved += 1
        else:
            lat.append(first_after[j] - t)
    exact = sum(1 for s in set(stamps_ms.tolist()) if s in sent)
    return {"readings": n, "acked": acks.acked, "tiles_on_screen_1": int(mine.sum()), "readings_shown_exactly": exact,
            "unresolved": unresolved, **latency_figs(np.array(lat)), "p95_ms": ms(np.array(lat), 95), **cpu_figs(meter)}


# -- cameras ------------------------------------------------------------------------------------------
def run_cameras(world: World, run_no: int) -> dict[str, Any]:
    args = world.args
    layout = world.layouts["phu-ly-cameras"]
    on_screen = {s: [CAMERAS.index(t.camera) for t in layout.tiles_for(s) if t.camera] for s in range(1, 10)}
    clients = Clients(world, world.screens(), 1)
    try:
        world.switch("phu-ly-cameras")
        if not all(m[1] for m in clients.ask("wait_layout", "phu-ly-cameras", 10)):
            raise SystemExit("bench: the screens did not switch to phu-ly-cameras")
        t0 = time.time() + 0.3
        load = CameraLoad(world, CAMERAS, args.fps, t0, t0 + args.duration)
        prof = Profiler(world, f"cameras-run{run_no}", args.duration)
        meter = measure(world, clients, [load])
        prof.report()
        time.sleep(args.drain_s)
        _, p = clients.collect()
    finally:
        try:
            world.switch("overview")
        finally:
            clients.close()
    sel = in_window(p, t0, t0 + args.duration)
    lat_all = p["recv"][sel] - p["stamp"][sel]
    per_screen = []
    for s in range(1, 10):
        m = sel & (p["client"] == s - 1)
        lat = p["recv"][m] - p["stamp"][m]
        third = args.duration / 3
        early = m & (p["stamp"] < t0 + third)
        late = m & (p["stamp"] >= t0 + 2 * third)
        due = len(on_screen[s]) * args.fps * args.duration
        per_screen.append({"screen": s, "cameras": len(on_screen[s]), "fps": round(int(m.sum()) / args.duration, 2),
                           "due_fps": len(on_screen[s]) * args.fps, "missed": int(round(due - int(m.sum()))),
                           **latency_figs(lat), "first_third_p50_ms": ms(p["recv"][early] - p["stamp"][early], 50),
                           "last_third_p50_ms": ms(p["recv"][late] - p["stamp"][late], 50)})
    stamps = p["stamp"][sel]
    slope = float(np.polyfit(stamps - t0, lat_all, 1)[0]) * 1000 if len(stamps) > 2 else None
    kb = round(load.bytes / max(load.sent, 1) / 1024, 1)
    return {"pictures_published": load.sent, "avg_picture_kb": kb, "pictures_received": int(sel.sum()),
            "received_share": round(int(sel.sum()) / max(sum(len(c) for c in on_screen.values()) * args.fps
                                                         * args.duration, 1), 4),
            **latency_figs(lat_all), "latency_slope_ms_per_s": round(slope, 3) if slope is not None else None,
            "worst_screen_p99_ms": max(s["p99_ms"] or 0 for s in per_screen),
            "min_screen_fps_share": round(min(s["fps"] / s["due_fps"] for s in per_screen), 3),
            **cpu_figs(meter), "_screens": per_screen}


# -- one stalled tablet -----------------------------------------------------------------------
def run_stall(world: World, run_no: int, stall: bool) -> dict[str, Any]:
    args = world.args
    victim = 9  # the first tablet; it has the small receive buffer in both the baseline and the stalled run
    cams = sorted({t.camera for t in world.layouts["overview"].tiles if t.kind == "camera" and t.camera})
    clients = Clients(world, world.screens() + world.tablets(args.stall_tablets), args.client_procs,
                      small_rcvbuf=(victim,))
    rss = RssSampler(world.serve.proc.pid)
    t0 = time.time() + 0.5
    t_stall, t_resume, t_end = t0 + 5, t0 + 5 + args.stall_s, t0 + 10 + args.stall_s
    kpis = KpiLoad(world, args.stall_rate, t0, t_end)
    pics = CameraLoad(world, cams, args.fps, t0, t_end)

    def stall_and_resume() -> None:
        time.sleep(max(0.0, t_stall - time.time()))
        clients.ask_owner(victim, "stall")  # like a tablet whose 4G link died: it reads nothing
        time.sleep(max(0.0, t_resume - time.time()))
        clients.ask_owner(victim, "resume")

    try:
        rss.start()
        meter = measure(world, clients, [kpis, pics], stall_and_resume if stall else None)
        time.sleep(args.drain_s + 1.0)
        rss.stop.set()
        closed = {i: c for m in clients.ask("status") for i, c in m[1].items()}
        k, p = clients.collect()
    finally:
        rss.stop.set()
        clients.close()
    others_k, victim_k = k["client"] != victim, k["client"] == victim
    others_p, victim_p = p["client"] != victim, p["client"] == victim
    during_k, during_p = in_window(k, t_stall, t_resume), in_window(p, t_stall, t_resume)
    fig = {"stalled": stall, **latency_figs(k["recv"][others_k & during_k] - k["stamp"][others_k & during_k]),
           **latency_figs(p["recv"][others_p & during_p] - p["stamp"][others_p & during_p], "pictures_"),
           "rss_start_mb": rss.at_mb(t_stall), "rss_peak_mb": rss.peak_mb(t_stall, t_resume + 1),
           "rss_end_mb": rss.at_mb(t_end), "victim_closed": closed.get(victim),
           "others_closed": len(closed) - (victim in closed), **cpu_figs(meter)}
    fig["rss_growth_mb"] = round(fig["rss_peak_mb"] - fig["rss_start_mb"], 1)
    # what the stalled tablet got: of the updates published while it was stalled, and after
    sent_during = int(((np.frombuffer(kpis.stamps, np.float64) >= t_stall)
                       & (np.frombuffer(kpis.stamps, np.float64) < t_resume)).sum())
    fig["updates_while_stalled"] = sent_during
    fig["victim_got_of_those"] = int((victim_k & during_k).sum())
    pics_during = during_p & (p["client"] == victim + 1)  # what a healthy tablet got meanwhile
    fig["pictures_while_stalled"] = int(pics_during.sum())
    fig["victim_pictures_of_those"] = int((victim_p & during_p).sum())
    after = victim_k & (k["recv"] >= t_resume)
    fresh = after & (k["recv"] - k["stamp"] < P99_LIMIT_MS / 1000)
    fig["victim_fresh_after_ms"] = round((float(k["recv"][fresh].min()) - t_resume) * 1000) if fresh.any() else None
    # the newest state: every tile's and camera's last seq as the others saw it
    newest_ok = True
    for recs, key in ((k, "tile"), (p, "cam")):
        mine = recs["client"] == victim
        for item in np.unique(recs[key][recs["client"] >= 9]):
            best = recs["seq"][(recs[key] == item) & (recs["client"] >= 9)].max()
            got = recs["seq"][(recs[key] == item) & mine]
            newest_ok &= bool(len(got) and got.max() == best)
    fig["victim_has_newest"] = newest_ok
    return fig


# =====================================================================================
# main
# =====================================================================================
def print_figs(title: str, fig: dict[str, Any]) -> None:
    print(f"\n=== {title}")
    for key, v in fig.items():
        if not key.startswith("_"):
            print(f"  {key:<28} {fmt(v)}")
    for s in fig.get("_screens", []):
        print(f"  screen {s['screen']}: {s['cameras']} camera(s), {s['fps']:.2f} of {s['due_fps']:g} fps, "
              f"p50 {fmt(s['p50_ms'])} / p99 {fmt(s['p99_ms'])} ms, p50 first third {fmt(s['first_third_p50_ms'])} "
              f"-> last third {fmt(s['last_third_p50_ms'])} ms")
    sys.stdout.flush()


def scenario_runs(world: World, name: str) -> dict[str, Any]:
    args = world.args
    runs: list[dict[str, Any]] = []
    for k in range(1, args.runs + 1):
        world.start_serve()
        load = world.wait_quiet()
        say(f"{name}: run {k}/{args.runs} (other work on the box: {load:.0f}% of a core; load average "
            f"{os.getloadavg()[0]:.2f})")
        if name.startswith("fanout-"):
            fig = run_fanout(world, int(name.split("-")[1]), k)
        elif name == "agency":
            fig = run_agency(world, k)
        elif name == "cameras":
            fig = run_cameras(world, k)
        else:
            base = run_stall(world, k, False)
            world.start_serve()
            hit = run_stall(world, k, True)
            fig = {**{f"base_{x}": v for x, v in base.items() if x != "stalled"},
                   **{f"stall_{x}": v for x, v in hit.items() if x != "stalled"}}
        fig["other_cpu_pct_before"] = load
        print_figs(f"{name} (run {k}/{args.runs})", fig)
        runs.append(fig)
    med = median_figures(runs)
    for key in ("held_updates_per_s", "held_deliveries_per_s", "stall_victim_has_newest"):
        if key in runs[0]:
            med[f"{key}_runs"] = [r[key] for r in runs]
    if args.runs > 1:
        print_figs(f"{name} (median of {args.runs} runs)", med)
    return med


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", default=None,
                   help=f"one of {', '.join(SCENARIOS)}; repeatable or comma-separated (default: all)")
    p.add_argument("--runs", type=int, default=3, help="runs per scenario; figures are medians (default 3)")
    p.add_argument("--step-s", type=float, default=5.0, help="seconds per fan-out step (default 5)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of publishing: agency, cameras (default 20)")
    p.add_argument("--drain-s", type=float, default=1.0, help="wait after publishing before collecting (default 1)")
    p.add_argument("--ladder", default=",".join(str(x) for x in LADDER),
                   help="fan-out steps in tablet deliveries/s, comma-separated (default: %(default)s)")
    p.add_argument("--no-stop", action="store_true", help="fan-out: run every step, even after one is not held")
    p.add_argument("--client-procs", type=int, default=2, help="processes the tablets are spread over (default 2)")
    p.add_argument("--agency-rate", type=float, default=10.0, help="agency readings/s (default 10)")
    p.add_argument("--fps", type=float, default=2.0, help="pictures per second per camera (default 2)")
    p.add_argument("--stall-tablets", type=int, default=100, help="tablets in the stall scenario (default 100)")
    p.add_argument("--stall-rate", type=float, default=100.0, help="KPI updates/s in the stall scenario (default 100)")
    p.add_argument("--stall-s", type=float, default=20.0, help="how long the tablet stops reading (default 20; "
                   "the hub closes a client stuck for 30 s after its socket buffers are full)")
    p.add_argument("--serve-env", action="append", default=[], metavar="IOC_X=VALUE",
                   help="extra environment for ioc serve (repeatable)")
    p.add_argument("--profile", action="store_true", help="py-spy on ioc serve (fan-out: one step; cameras: the run)")
    p.add_argument("--profile-at", type=int, default=30_000,
                   help="fan-out step to profile, in deliveries/s (default 30000)")
    p.add_argument("--profile-dir", default=str(Path(tempfile.gettempdir()) / "ioc-bench-wall-profiles"),
                   help="where py-spy's raw stacks go (default: %(default)s)")
    p.add_argument("--wait-quiet", type=float, default=120.0, help="before each run, wait up to this long for other "
                   "work on the box to drop under --quiet-pct (default 120 s)")
    p.add_argument("--quiet-pct", type=float, default=25.0, help="%% of one core counted as a quiet box (default 25)")
    p.add_argument("--pg-admin-url", default=os.environ.get("IOC_BENCH_PG_ADMIN_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (broker, serve and ingest logs); "
                   "its path is printed at the start")
    args = p.parse_args(argv)
    names = [s.strip() for item in args.scenario or [",".join(SCENARIOS)] for s in item.split(",") if s.strip()]
    for n in names:
        if n not in SCENARIOS:
            p.error(f"unknown scenario {n!r}")
    args.scenarios = names
    args.ladder = [int(x) for x in args.ladder.split(",") if x.strip()]
    return args


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # ioc serve inherits it: 1,000+ sockets
    signal.signal(signal.SIGTERM, _interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="ioc-bench-wall-"))
    if args.keep_tmp:
        say(f"logs in {tmp}")
    world = World(args, tmp)
    figs: dict[str, Any] = {}
    code = 0
    try:
        world.setup()
        for name in args.scenarios:
            figs[name.replace("-", "_")] = scenario_runs(world, name)
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        code = 130
    except BaseException:
        if world.serve is not None:
            print(f"--- tail of the serve log ---\n{world.serve.log_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        world.cleanup()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if figs:
        figs["_meta"] = {"runs": args.runs, "step_s": args.step_s, "duration_s": args.duration,
                         "client_procs": args.client_procs, "cores": os.cpu_count(),
                         "load_average_end": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(figs, separators=(",", ":")), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
