#!/usr/bin/env python3
"""Ingest benchmark: agencies' KPI messages -> Mosquitto -> `ioc ingest` -> PostgreSQL -> live.

Prints figures, never passes or fails. Everything runs on 127.0.0.1: a fresh PostgreSQL
database (dropped at the end), a private Mosquitto started from the configuration we
generate, N `ioc ingest` child processes sharing one subscription, and a load generator.

The load generator is a minimal MQTT v5 publisher over a raw socket (pre-encoded QoS 1
PUBLISH packets written in large chunks, PUBACKs counted by a reader thread): Python MQTT
clients would be the bottleneck on a 2-core box that also runs the broker, the ingest and
PostgreSQL. A second raw client (the `api` service account) subscribes to the live topics
and timestamps every live message; each reading's `ts` encodes its sequence number, so
publish -> commit -> live latency is known for every (sampled) reading.

    python bench/ingest.py                        # all four scenarios, 20 s each
    python bench/ingest.py --scenario rate-15k --duration 5
    python bench/ingest.py --scenario custom --rate 1000 --duration 5
    python bench/ingest.py --runs 3 --workers 2 --profile   # py-spy on the ingest

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import json
import math
import multiprocessing as mp
import os
import queue
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# run as `python bench/ingest.py`: sys.path[0] is bench/, whose ingest.py would shadow the
# `ingest` package; put the repository root there instead
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)
elif str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ioc.core.contracts import topics  # noqa: E402

BASE_MS = 1704067200000  # 2024-01-01T00:00:00Z: reading ts = BASE_MS + run offset + sequence number
AGENCY = "bench-agency"
SECTORS = ["tthc", "dvc", "mt"]
KPIS = ["tthc.dossiers_received", "tthc.on_time_rate", "dvc.services_total", "mt.aqi", "mt.pm25"]
N_AREAS = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.25

SCENARIOS: dict[str, dict[str, Any]] = {
    # name: target msgs/s (None = as fast as the ingest takes), readings per message
    "rate-15k": {"rate": 15_000, "per_message": 1},
    "rate-30k": {"rate": 30_000, "per_message": 1},
    "max-1": {"rate": None, "per_message": 1},
    "batch-100": {"rate": None, "per_message": 100},
}
DEFAULT_SCENARIOS = ["rate-15k", "rate-30k", "max-1", "batch-100"]


# =====================================================================================
# A minimal MQTT v5 client over a raw socket (bench only)
# =====================================================================================
class MqttError(RuntimeError):
    pass


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mstr(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def read_varint(buf: bytes | bytearray, i: int) -> tuple[int, int] | None:
    """(value, index after it), or None if the buffer ends inside it."""
    value = 0
    shift = 0
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 21:
            raise MqttError("malformed remaining length")


# property id -> encoding: b byte, h 2-byte int, i 4-byte int, v varint, s string, d binary, p string pair
_PROP_TYPES = {
    0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "d", 0x0B: "v", 0x11: "i", 0x12: "s", 0x13: "h",
    0x15: "s", 0x16: "d", 0x17: "b", 0x18: "i", 0x19: "b", 0x1A: "s", 0x1C: "s", 0x1F: "s", 0x21: "h",
    0x22: "h", 0x23: "h", 0x24: "b", 0x25: "b", 0x26: "p", 0x27: "i", 0x28: "b", 0x29: "b", 0x2A: "b",
}


def parse_props(buf: bytes, i: int) -> tuple[dict[int, Any], int]:
    got = read_varint(buf, i)
    if got is None:
        raise MqttError("truncated properties")
    length, i = got
    end = i + length
    props: dict[int, Any] = {}
    while i < end:
        pid = buf[i]
        i += 1
        kind = _PROP_TYPES.get(pid)
        if kind == "b":
            val: Any = buf[i]
            i += 1
        elif kind == "h":
            val = struct.unpack_from("!H", buf, i)[0]
            i += 2
        elif kind == "i":
            val = struct.unpack_from("!I", buf, i)[0]
            i += 4
        elif kind == "v":
            got = read_varint(buf, i)
            assert got is not None
            val, i = got
        elif kind in ("s", "d"):
            n = struct.unpack_from("!H", buf, i)[0]
            val = bytes(buf[i + 2 : i + 2 + n])
            i += 2 + n
            if kind == "s":
                val = val.decode("utf-8", "replace")
        elif kind == "p":
            n = struct.unpack_from("!H", buf, i)[0]
            k = bytes(buf[i + 2 : i + 2 + n]).decode()
            i += 2 + n
            n = struct.unpack_from("!H", buf, i)[0]
            v = bytes(buf[i + 2 : i + 2 + n]).decode()
            i += 2 + n
            val = (k, v)
        else:
            raise MqttError(f"unknown property 0x{pid:02x}")
        props[pid] = val
    return props, end


def recv_packet(sock: socket.socket) -> tuple[int, bytes]:
    """Read one whole packet (blocking): (first byte, body)."""
    def exact(n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise MqttError("the broker closed the connection")
            data += chunk
        return bytes(data)

    first = exact(1)[0]
    length = 0
    shift = 0
    while True:
        b = exact(1)[0]
        length |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return first, exact(length)


def mqtt_connect(host: str, port: int, client_id: str, username: str, password: str,
                 keepalive: int = 300) -> tuple[socket.socket, dict[int, Any]]:
    """CONNECT (clean start, user/password) and wait for CONNACK; returns the socket and its properties."""
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
        except OSError:
            pass
    variable = mstr(b"MQTT") + bytes([5, 0xC2]) + struct.pack("!H", keepalive) + b"\x00"
    payload = mstr(client_id.encode()) + mstr(username.encode()) + mstr(password.encode())
    body = variable + payload
    sock.sendall(b"\x10" + varint(len(body)) + body)
    first, body = recv_packet(sock)
    if first >> 4 != 2:
        raise MqttError(f"expected CONNACK, got packet type {first >> 4}")
    reason = body[1]
    props, _ = parse_props(body, 2)
    if reason >= 0x80:
        why = props.get(0x1F, "")
        raise MqttError(f"broker refused CONNECT for {username!r}: reason 0x{reason:02x} {why}")
    sock.settimeout(None)
    return sock, props


def publish_packet(topic: bytes, pid: int, payload: bytes) -> bytes:
    body_len = 2 + len(topic) + 2 + 1 + len(payload)
    return b"".join((b"\x32", varint(body_len), mstr(topic), struct.pack("!H", pid), b"\x00", payload))


class AckReader(threading.Thread):
    """Counts PUBACKs; fails loudly on a DISCONNECT, a lost socket or a PUBACK reason >= 0x80."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True, name="puback-reader")
        self.sock = sock
        self.acked = 0
        self.reasons: Counter[int] = Counter()  # non-zero PUBACK reason codes (0x10: no subscriber)
        self.error: str | None = None
        self.closing = False

    def run(self) -> None:
        buf = bytearray()
        sock = self.sock
        try:
            while True:
                data = sock.recv(1 << 18)
                if not data:
                    if not self.closing:
                        self.error = "the broker closed the connection"
                    return
                buf += data
                i = 0
                n = len(buf)
                acked = 0
                while i + 2 <= n:
                    b0 = buf[i]
                    if b0 == 0x40 and buf[i + 1] == 2:  # plain success PUBACK: 4 bytes
                        if i + 4 > n:
                            break
                        acked += 1
                        i += 4
                        continue
                    got = read_varint(buf, i + 1)
                    if got is None:
                        break
                    rl, j = got
                    if j + rl > n:
                        break
                    kind = b0 >> 4
                    if kind == 4:
                        rc = buf[j + 2] if rl >= 3 else 0
                        acked += 1
                        if rc:
                            self.reasons[rc] += 1
                            if rc >= 0x80 and self.error is None:
                                self.error = f"PUBACK reason code 0x{rc:02x} for packet id {buf[j] << 8 | buf[j + 1]}"
                    elif kind == 14:
                        rc = buf[j] if rl >= 1 else 0
                        self.error = f"the broker sent DISCONNECT, reason code 0x{rc:02x}"
                        self.acked += acked
                        return
                    i = j + rl
                del buf[:i]
                self.acked += acked
        except OSError as exc:
            if not self.closing:
                self.error = f"socket error: {exc}"


# =====================================================================================
# Publisher process
# =====================================================================================
def _value_strings(lo: float, hi: float, integer: bool, n: int = 97) -> list[str]:
    out = []
    for k in range(n):
        frac = ((k * 7919) % 1000) / 1000.0
        if integer:
            lo_i, hi_i = math.ceil(lo), math.floor(hi)
            out.append(str(lo_i + int(frac * (hi_i - lo_i))))
        else:
            v = lo + frac * (hi - lo)
            out.append(f"{min(max(v, lo), hi):.2f}")
    return out


def publisher_main(cfg: dict[str, Any], limits: Any, start_at: Any, go: Any, stop: Any, results: Any) -> None:
    """One publishing connection: pre-encode, wait for the start signal, pace, count PUBACKs."""
    idx = cfg["index"]
    try:
        results.put(("pubdone", idx, _publisher(cfg, limits, start_at, go, stop, results)))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails loudly
        results.put(("error", idx, f"publisher {idx}: {type(exc).__name__}: {exc}"))


def _publisher(cfg: dict[str, Any], limits: Any, start_at: Any, go: Any, stop: Any, results: Any) -> dict[str, Any]:
    p, P, N = cfg["index"], cfg["processes"], cfg["per_message"]
    keys = cfg["keys"]  # [(kpi, area, lo, hi, integer)] owned by this process
    L = len(keys)
    rate = cfg["rate"]  # messages/s for this process, or None
    duration = cfg["duration"]
    n_msgs = cfg["messages"]
    ts0 = BASE_MS + cfg["base_seq"]
    topic = topics.kpi(AGENCY).encode()

    # -- pre-encode every packet into one buffer -------------------------------------
    heads = [f'{{"kpi":"{k}","ts":' for k, _, _, _, _ in keys]
    tails = [f',"area":"{a}"}}' for _, a, _, _, _ in keys]
    vals = [_value_strings(lo, hi, integer) for _, _, lo, hi, integer in keys]
    nv = len(vals[0])
    packets: list[bytes] = []
    offsets = array("q", [0])
    pos = 0
    i = 0
    for m in range(n_msgs):
        items = []
        for _ in range(N):
            q = i % L
            items.append(f'{heads[q]}{ts0 + i * P + p},"value":{vals[q][(i // L) % nv]}{tails[q]}')
            i += 1
        payload = (items[0] if N == 1 else "[" + ",".join(items) + "]").encode()
        pkt = publish_packet(topic, m % 65535 + 1, payload)
        packets.append(pkt)
        pos += len(pkt)
        offsets.append(pos)
    buf = b"".join(packets)
    del packets
    mv = memoryview(buf)

    sock, props = mqtt_connect(cfg["host"], cfg["port"], f"bench-pub-{cfg['run_tag']}-{p}", cfg["username"], cfg["password"])
    recv_max = min(int(props.get(0x21, 65535)), cfg["inflight"], 65535)
    reader = AckReader(sock)
    reader.start()
    results.put(("connected", p, {"receive_maximum": props.get(0x21)}))

    while not go.wait(0.1):
        if stop.is_set():
            raise MqttError("stopped before the start")
    t0 = start_at.value
    while time.monotonic() < t0:
        time.sleep(0.0005)
    cpu0 = os.times()

    chunk_first = array("q")
    chunk_t = array("d")
    max_bytes = 256 * 1024
    sent = 0
    hit_cap = False
    t_end = t0 + duration
    mono = time.monotonic
    sleep = time.sleep
    while True:
        if reader.error:
            raise MqttError(reader.error)
        now = mono()
        if now >= t_end or stop.is_set():
            break
        if sent >= n_msgs:
            hit_cap = True
            break
        due = n_msgs if rate is None else min(n_msgs, int((now - t0) * rate) + 1)
        lim = min(due, reader.acked + recv_max, limits[p])
        if lim > sent:
            end = bisect.bisect_right(offsets, offsets[sent] + max_bytes, sent + 1, lim + 1) - 1
            if end <= sent:
                end = sent + 1
            chunk_first.append(sent)
            chunk_t.append(now)
            sock.sendall(mv[offsets[sent] : offsets[end]])
            sent = end
            continue
        if rate is not None and due <= lim:
            # on schedule: sleep to the next due message, waking at most every ~1 ms
            sleep(max(0.001, t0 + sent / rate - now))
        else:
            sleep(0.0005)  # waiting for PUBACKs or for the closed-loop window
    t_send_end = mono()
    cpu1 = os.times()
    # every sent message must be PUBACKed
    deadline = mono() + 60
    while reader.acked < sent and mono() < deadline and not reader.error:
        sleep(0.005)
    if reader.error:
        raise MqttError(reader.error)
    reader.closing = True
    try:
        sock.sendall(b"\xe0\x00")  # DISCONNECT, normal
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    reader.join(2)
    sock.close()
    cpu2 = os.times()
    return {
        "sent": sent,
        "acked": reader.acked,
        "reasons": dict(reader.reasons),
        "t0": t0,
        "t_send_end": t_send_end,
        "hit_cap": hit_cap,
        "chunk_first": chunk_first,
        "chunk_t": chunk_t,
        "cpu_s": (cpu2.user + cpu2.system) - (cpu0.user + cpu0.system),
        "cpu_send_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
    }


# =====================================================================================
# Live subscriber process
# =====================================================================================
def readings_upto(k: int, off: int, P: int, lens: list[int]) -> int:
    """How many readings of key k (global index) have a sequence offset <= off.

    Publisher p owns keys[p::P]; its i-th reading has key keys_p[i % L] and offset i*P + p, so
    key k = p + q*P carries readings i = q, q+L, q+2L, ...
    """
    p, q = k % P, k // P
    i_max = (off - p) // P
    return 0 if i_max < q else (i_max - q) // lens[p] + 1


def subscriber_main(cfg: dict[str, Any], stop: Any, last_rx: Any, committed: Any, results: Any) -> None:
    try:
        results.put(("done", -1, _subscriber(cfg, stop, last_rx, committed, results)))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # noqa: BLE001
        results.put(("error", -1, f"live subscriber: {type(exc).__name__}: {exc}"))


def _subscriber(cfg: dict[str, Any], stop: Any, last_rx: Any, committed: Any, results: Any) -> dict[str, Any]:
    """Timestamp every live message; keep `committed` = readings known committed (live ts >= theirs)."""
    import orjson

    sock, _ = mqtt_connect(cfg["host"], cfg["port"], f"bench-live-{cfg['run_tag']}", cfg["username"], cfg["password"])
    filt = topics.LIVE_KPI_ALL.encode()
    body = struct.pack("!H", 1) + b"\x00" + mstr(filt) + b"\x01"  # packet id 1, no props, QoS 1
    sock.sendall(b"\x82" + varint(len(body)) + body)
    first, ack = recv_packet(sock)
    if first >> 4 != 9 or ack[-1] >= 0x80:
        raise MqttError(f"SUBACK refused: {ack!r}")
    results.put(("subscribed", -1, None))
    sock.settimeout(0.2)
    cpu0 = os.times()
    key_index = {(k, a): n for n, (k, a) in enumerate(cfg["keys"])}
    P, lens = cfg["processes"], cfg["lens"]
    base = BASE_MS + cfg["base_seq"]
    per_key = [0] * len(cfg["keys"])
    total = 0
    ks, offs, ts = array("i"), array("q"), array("d")
    received = foreign = 0
    loads = orjson.loads
    fromiso = datetime.fromisoformat
    buf = bytearray()
    last_ping = time.monotonic()
    mono = time.monotonic
    while not stop.is_set():
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            data = None
        now = mono()
        if now - last_ping > 30:
            sock.sendall(b"\xc0\x00")  # PINGREQ
            last_ping = now
        if data is None:
            continue
        if not data:
            raise MqttError("the broker closed the live subscription")
        buf += data
        n = len(buf)
        i = 0
        acks = []
        got_any = False
        while i + 2 <= n:
            b0 = buf[i]
            got = read_varint(buf, i + 1)
            if got is None:
                break
            rl, j = got
            end = j + rl
            if end > n:
                break
            kind = b0 >> 4
            if kind == 3:
                tl = buf[j] << 8 | buf[j + 1]
                k = j + 2 + tl
                if b0 & 0x06:
                    acks.append(b"\x40\x02" + bytes(buf[k : k + 2]))
                    k += 2
                got = read_varint(buf, k)
                assert got is not None
                plen, k = got
                received += 1
                got_any = True
                doc = loads(bytes(buf[k + plen : end]))
                kx = key_index.get((doc.get("kpi"), doc.get("area")))
                off = round(fromiso(doc["ts"]).timestamp() * 1000) - base
                if kx is None or off < 0:
                    foreign += 1  # retained from an earlier run, or not ours
                else:
                    ks.append(kx)
                    offs.append(off)
                    ts.append(now)
                    c = readings_upto(kx, off, P, lens)
                    if c > per_key[kx]:
                        total += c - per_key[kx]
                        per_key[kx] = c
            elif kind == 14:
                raise MqttError("the broker sent DISCONNECT to the live subscriber")
            i = end
        del buf[:i]
        if acks:
            sock.sendall(b"".join(acks))
        if got_any:
            committed.value = total
            last_rx.value = now
    cpu1 = os.times()
    try:
        sock.sendall(b"\xe0\x00")
        sock.close()
    except OSError:
        pass
    return {"keys": ks, "offs": offs, "times": ts, "received": received, "foreign": foreign,
            "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)}


# =====================================================================================
# CPU accounting from /proc
# =====================================================================================
def proc_cpu(pid: int) -> tuple[float, int] | None:
    """(user+sys seconds, start time in ticks since boot) of a process, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[19])


def proc_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def machine_busy() -> float:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / CLK_TCK


def uptime_ticks() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) * CLK_TCK


class CpuMeter:
    """user+sys seconds of groups of processes between start() and stop(); survives pids coming and going."""

    def __init__(self) -> None:
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group: dict[int, str] = {}
        self.t0 = 0.0
        self.t1 = 0.0
        self.start_ticks = 0.0
        self.busy0 = 0.0
        self.busy1 = 0.0

    def start(self, groups: dict[str, list[int]]) -> None:
        self.base.clear()
        self.last.clear()
        self.group.clear()
        self.start_ticks = uptime_ticks()
        self.busy0 = machine_busy()
        self.t0 = time.monotonic()
        self.sample(groups)

    def sample(self, groups: dict[str, list[int]]) -> None:
        for name, pids in groups.items():
            for pid in pids:
                got = proc_cpu(pid)
                if got is None:
                    continue
                cpu, started = got
                if pid not in self.base:
                    # a process born during the run counts whole; one seen late counts from now
                    self.base[pid] = 0.0 if started > self.start_ticks else cpu
                    self.group[pid] = name
                self.last[pid] = cpu

    def stop(self, groups: dict[str, list[int]]) -> None:
        self.sample(groups)
        self.t1 = time.monotonic()
        self.busy1 = machine_busy()

    def pct(self) -> dict[str, float]:
        wall = max(self.t1 - self.t0, 1e-9)
        out: dict[str, float] = {}
        for pid, name in self.group.items():
            out[name] = out.get(name, 0.0) + (self.last[pid] - self.base[pid])
        res = {f"{k}_cpu_pct": round(100.0 * v / wall, 1) for k, v in out.items()}
        res["machine_cpu_pct"] = round(100.0 * (self.busy1 - self.busy0) / wall, 1)
        return res


# =====================================================================================
# The rig: database, broker, ingest workers
# =====================================================================================
@dataclass
class Rig:
    args: argparse.Namespace
    tmp: Path
    admin_dsn: str
    db_name: str = ""
    db_url: str = ""
    conn: Any = None
    broker: Any = None
    ingest: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ingest_logs: list[Path] = field(default_factory=list)
    gc_files: list[Path] = field(default_factory=list)
    worker_ids: list[str] = field(default_factory=list)
    agency_password: str = ""
    api_password: str = ""
    keys: list[tuple[str, str, float, float, bool]] = field(default_factory=list)
    next_seq: int = 0
    storage_mode: str = "?"
    messages_received: int = 0
    subscription: str = ""
    runs_done: int = 0
    ingest_env_base: dict[str, str] = field(default_factory=dict)
    buffered_max: int = 0
    db_created: bool = False

    async def setup(self) -> None:
        import asyncpg

        from ioc.core.accounts import broker_accounts, create_agency, create_user
        from ioc.core.settings import load_settings
        from ioc.core.storage.pool import create_pool
        from ioc.core.storage.setup import prepare_database
        from tests.rigs.mosquitto import MosquittoRig

        self.db_name = f"ioc_bench_{secrets.token_hex(5)}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{self.db_name}"')
            self.db_created = True
        finally:
            await admin.close()
        base, _, _ = self.admin_dsn.rpartition("/")
        self.db_url = f"{base}/{self.db_name}"
        say(f"database {self.db_name}: migrating")
        pool = await create_pool(self.db_url, app="ioc-bench-setup", min_size=1, max_size=2)
        try:
            await prepare_database(pool, load_settings(database_url=self.db_url))
            async with pool.acquire() as conn:
                self.agency_password = await create_agency(
                    conn, AGENCY, name_vi="Cơ quan đo tải", name_en="Benchmark agency", sectors=SECTORS, actor="bench")
                ingest_pw = await create_user(conn, "svc-ingest", role="ingest", actor="bench")
                self.api_password = await create_user(conn, "svc-api", role="api", actor="bench")
                accounts = await broker_accounts(conn)
                rules = {r["id"]: r for r in await conn.fetch(
                    "SELECT id, min_value, max_value, integer_only FROM kpis WHERE id = ANY($1::text[])", KPIS)}
                known_areas = {r["code"] for r in await conn.fetch("SELECT code FROM areas")}
                self.storage_mode = await conn.fetchval("SELECT value FROM ioc_meta WHERE key = 'storage_mode'") or "?"
        finally:
            await pool.close()
        missing = [k for k in KPIS if k not in rules]
        if missing:
            raise SystemExit(f"bench: KPIs missing from the catalogue: {missing}")
        with open(REPO / "ioc/core/catalogue/data/areas/ha-nam.csv", encoding="utf-8") as f:
            areas = [row["code"] for row in csv.DictReader(f) if row["code"] in known_areas][:N_AREAS]
        if len(areas) < N_AREAS:
            raise SystemExit(f"bench: only {len(areas)} known areas in ha-nam.csv")
        self.keys = [(k, a, rules[k]["min_value"], rules[k]["max_value"], rules[k]["integer_only"])
                     for a in areas for k in KPIS]

        self.broker = MosquittoRig(self.tmp / "mosquitto", accounts)
        self.broker.start()
        say(f"mosquitto pid {self.broker.pid} on 127.0.0.1:{self.broker.port} (generated config)")

        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update({
            "IOC_DATABASE_URL": self.db_url,
            "IOC_MQTT_URL": self.broker.url_for("svc-ingest", ingest_pw),
            "IOC_LOG_FORMAT": "json",
            # readings_accepted per worker, polled by the bench; cheap (one row per 0.25 s)
            "IOC_INGEST_HEARTBEAT_S": str(POLL_S),
            "PYTHONPATH": str(REPO),
        })
        # one worker: the service's default subscription (plain, persistent); several: a shared
        # subscription, so that each message goes to one of them (IOC_INGEST_SHARE_GROUP)
        group = self.args.share_group if self.args.share_group is not None else (
            "ioc-ingest" if self.args.workers > 1 else "")
        if group:
            env["IOC_INGEST_SHARE_GROUP"] = group
        self.subscription = topics.shared(group, topics.KPI_ALL) if group else f"{topics.KPI_ALL} (plain, the default)"
        for item in self.args.ingest_env:
            key, _, value = item.partition("=")
            env[key] = value
        self.ingest_env_base = env
        self.conn = await asyncpg.connect(self.db_url, server_settings={"application_name": "ioc-bench-poll"})
        await self.start_ingest()

    async def start_ingest(self) -> None:
        """Start the workers and wait for their connection and a first heartbeat."""
        since = await self.conn.fetchval("SELECT now()")
        self.ingest, self.ingest_logs, self.worker_ids, self.gc_files = [], [], [], []
        offsets = []
        for n in range(1, self.args.workers + 1):
            wid = f"bench-{n}"
            log_path = self.tmp / f"ingest-{n}.log"
            offsets.append(log_path.stat().st_size if log_path.exists() else 0)
            cmd = [sys.executable, "-m", "ioc.cli", "ingest", "--worker-id", wid]
            wenv = self.ingest_env_base
            if self.args.gc_stats:
                cmd = [sys.executable, "-c", GC_WRAPPER, "ingest", "--worker-id", wid]
                wenv = {**wenv, "IOC_BENCH_GC_FILE": str(self.tmp / f"gc-{n}.json")}
                self.gc_files.append(self.tmp / f"gc-{n}.json")
                self.gc_files[-1].unlink(missing_ok=True)
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    cmd,
                    env=wenv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches the bench, which stops it in order
                    preexec_fn=_die_with_parent,
                )
            self.ingest.append(proc)
            self.ingest_logs.append(log_path)
            self.worker_ids.append(wid)
        for proc, log_path, offset in zip(self.ingest, self.ingest_logs, offsets):
            await wait_for_log(proc, log_path, '"mqtt connected"', 30, offset)
        deadline = time.monotonic() + 15
        while await self.conn.fetchval(
                "SELECT count(*) FROM ingest_workers WHERE worker_id = ANY($1::text[]) AND started_at >= $2",
                self.worker_ids, since) < len(self.worker_ids):
            if time.monotonic() > deadline:
                raise SystemExit("bench: the ingest workers wrote no heartbeat")
            await asyncio.sleep(0.05)
        for f in self.gc_files:
            while read_gc(f) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        self.buffered_max = 0
        say(f"ingest: {len(self.ingest)} worker(s), pids {[p.pid for p in self.ingest]}, subscription {self.subscription}"
            + (f", extra env {self.args.ingest_env}" if self.args.ingest_env else ""))

    def stop_ingest(self) -> None:
        for proc in self.ingest:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.ingest:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def pg_pids(self) -> list[int]:
        """Backends of our database (but the bench's own) and the server's own writers."""
        rows = await self.conn.fetch(
            """SELECT pid FROM pg_stat_activity
               WHERE (datname = current_database() AND pid <> pg_backend_pid())
                  OR backend_type IN ('walwriter', 'checkpointer', 'background writer')""")
        return [r["pid"] for r in rows]

    async def accepted(self) -> tuple[int, int]:
        row = await self.conn.fetchrow(
            "SELECT coalesce(sum(readings_accepted), 0)::bigint AS a, coalesce(sum(batches), 0)::bigint AS b, "
            "coalesce(sum(messages), 0)::bigint AS m, coalesce(sum(buffered_messages), 0)::bigint AS buf "
            "FROM ingest_workers WHERE worker_id = ANY($1::text[])", self.worker_ids)
        self.messages_received = int(row["m"])
        self.buffered_max = max(self.buffered_max, int(row["buf"]))
        return int(row["a"]), int(row["b"])

    def check_alive(self) -> None:
        for proc, log_path in zip(self.ingest, self.ingest_logs):
            if proc.poll() is not None:
                raise SystemExit(f"bench: ioc ingest (pid {proc.pid}) exited with {proc.returncode}:\n"
                                 + log_path.read_text(errors="replace")[-3000:])
        if self.broker is not None and not self.broker.running:
            raise SystemExit("bench: mosquitto died:\n" + self.broker.log_text()[-3000:])

    async def cleanup(self) -> None:
        import asyncpg

        if self.conn is not None:
            try:
                await self.conn.close()
            except Exception:  # noqa: BLE001
                pass
        self.stop_ingest()
        if self.broker is not None:
            self.broker.stop()
        if self.db_created:
            try:
                admin = await asyncpg.connect(self.admin_dsn)
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
                await admin.close()
                say(f"dropped database {self.db_name}")
            except Exception as exc:  # noqa: BLE001
                say(f"could not drop database {self.db_name}: {exc}")


# `python -c GC_WRAPPER ingest --worker-id X`: `ioc.cli` unchanged, plus a gc.callbacks timer whose
# totals a thread writes to $IOC_BENCH_GC_FILE every 0.2 s (the bench reads deltas per run)
GC_WRAPPER = r"""
import gc, json, os, runpy, sys, threading, time
st = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "collected": 0}
t = [0.0]
def cb(phase, info):
    if phase == "start":
        t[0] = time.perf_counter()
    else:
        g = info["generation"]
        st["collections"][g] += 1
        st["seconds"][g] += time.perf_counter() - t[0]
        st["collected"] += info["collected"]
gc.callbacks.append(cb)
path = os.environ["IOC_BENCH_GC_FILE"]
def dump():
    while True:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, path)
        time.sleep(0.2)
threading.Thread(target=dump, daemon=True).start()
sys.argv = ["ioc", *sys.argv[1:]]
runpy.run_module("ioc.cli", run_name="__main__", alter_sys=True)
"""


def read_gc(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:
        pass


async def wait_for_log(proc: subprocess.Popen[bytes], path: Path, needle: str, timeout: float, offset: int = 0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_bytes()[offset:].decode(errors="replace") if path.exists() else ""
        if needle in text:
            return
        if proc.poll() is not None:
            raise SystemExit(f"bench: ioc ingest exited with {proc.returncode}:\n{text[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: ioc ingest did not log {needle} in {timeout} s:\n{text[-3000:]}")
        await asyncio.sleep(0.1)


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# =====================================================================================
# One scenario run
# =====================================================================================
def interp(series: list[tuple[float, int]], t: float) -> float:
    times = [s[0] for s in series]
    k = bisect.bisect_left(times, t)
    if k <= 0:
        return float(series[0][1])
    if k >= len(series):
        return float(series[-1][1])
    (ta, ca), (tb, cb) = series[k - 1], series[k]
    return ca + (cb - ca) * (t - ta) / max(tb - ta, 1e-9)


def pctl(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


async def background_load(rig: Rig, seconds: float = 1.0) -> float:
    """% of one core the box spends on anything but our idle rig, measured over `seconds`."""
    pids = [pr.pid for pr in rig.ingest] + [rig.broker.pid, os.getpid()] + await rig.pg_pids()
    own0 = sum((proc_cpu(pid) or (0.0, 0))[0] for pid in pids)
    busy0, t0 = machine_busy(), time.monotonic()
    await asyncio.sleep(seconds)
    own1 = sum((proc_cpu(pid) or (0.0, 0))[0] for pid in pids)
    busy1, t1 = machine_busy(), time.monotonic()
    return max(0.0, 100.0 * ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))


async def wait_quiet(rig: Rig) -> float:
    """Wait (up to --wait-quiet s) until other work on the box stays under --quiet-pct; return the last load."""
    args = rig.args
    load = await background_load(rig)
    if args.wait_quiet <= 0 or load <= args.quiet_pct:
        return load
    say(f"the box is busy with other work ({load:.0f}% of a core): waiting up to {args.wait_quiet:g} s for it to settle")
    deadline = time.monotonic() + args.wait_quiet
    calm = 0
    while time.monotonic() < deadline:
        load = await background_load(rig)
        calm = calm + 1 if load <= args.quiet_pct else 0
        if calm >= 2:
            return load
    say(f"still busy ({load:.0f}% of a core); running anyway: expect lower, noisier figures")
    return load


async def run_once(rig: Rig, name: str, rate: float | None, per_message: int, run_no: int) -> dict[str, Any]:
    args = rig.args
    ctx = mp.get_context("spawn")
    N = per_message
    P = args.publishers
    duration = args.duration
    await rig.conn.execute("TRUNCATE readings, dead_letters, rollup_dirty")
    base_seq = rig.next_seq
    run_tag = f"{name}-{run_no}-{secrets.token_hex(2)}"
    if rate is not None:
        msgs_per_proc = int(math.ceil(rate / P * duration)) + 1
    else:
        cap = args.max_rate or (60_000 if N == 1 else max(10, 400_000 // N))
        msgs_per_proc = int(math.ceil(cap / P * duration)) + 1
    rig.next_seq += msgs_per_proc * N * P + 1000

    results = ctx.Queue()
    stop = ctx.Event()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0, lock=False)
    last_rx = ctx.Value("d", 0.0, lock=False)
    live_committed = ctx.Value("q", 0, lock=False)
    huge = 1 << 62
    limits = ctx.Array("q", [huge if rate is not None else 1] * P, lock=False)
    closed_loop = rate is None

    sub_cfg = {"host": "127.0.0.1", "port": rig.broker.service_port, "username": "svc-api", "password": rig.api_password,
               "keys": [(k, a) for k, a, _, _, _ in rig.keys], "base_seq": base_seq, "run_tag": run_tag,
               "processes": P, "lens": [len(rig.keys[p::P]) for p in range(P)]}
    sub = ctx.Process(target=subscriber_main, args=(sub_cfg, stop, last_rx, live_committed, results), daemon=True,
                      name="live-sub")
    pubs = []
    for p in range(P):
        cfg = {"index": p, "processes": P, "per_message": N, "keys": rig.keys[p::P],
               "rate": None if rate is None else rate / P, "duration": duration, "messages": msgs_per_proc,
               "base_seq": base_seq, "host": "127.0.0.1", "port": rig.broker.port, "username": AGENCY,
               "password": rig.agency_password, "inflight": args.inflight, "run_tag": run_tag}
        pubs.append(ctx.Process(target=publisher_main, args=(cfg, limits, start_at, go, stop, results), daemon=True,
                                name=f"publisher-{p}"))
    procs = [sub, *pubs]
    profiler: subprocess.Popen[bytes] | None = None
    if not args.keep_ingest and rig.runs_done:
        # a fresh process per run: the same starting point for every scenario, and a guard against
        # the ingest's cumulative buffered_bytes count pausing it for good (see bench/README.md)
        rig.stop_ingest()
        await rig.start_ingest()
    rig.runs_done += 1
    others_before = await wait_quiet(rig)
    try:
        sub.start()
        for pr in pubs:
            pr.start()
        # wait: subscriber subscribed, every publisher connected
        want = {"subscribed": 1, "connected": P}
        got: Counter[str] = Counter()
        pub_results: dict[int, dict[str, Any]] = {}
        sub_result: dict[str, Any] | None = None
        deadline = time.monotonic() + 120
        while any(got[k] < v for k, v in want.items()):
            msg = await _next_msg(results, deadline, procs)
            if msg[0] == "error":
                raise SystemExit(f"bench: {msg[2]}")
            got[msg[0]] += 1
        await asyncio.sleep(0.3)  # retained messages from earlier runs arrive at the subscriber
        acc0, batches0 = await rig.accepted()
        msgs0 = rig.messages_received
        rig.buffered_max = 0
        rss_max = 0
        groups = {"ingest": [pr.pid for pr in rig.ingest], "mosquitto": [rig.broker.pid],
                  "pg": await rig.pg_pids()}
        meter = CpuMeter()
        if args.profile:
            profiler = start_profiler(rig, name, run_no, duration)
        gc0 = [read_gc(f) for f in rig.gc_files]
        meter.start(groups)
        pc0 = os.times()
        t0 = time.monotonic() + 0.05
        start_at.value = t0
        if closed_loop:
            for p in range(P):
                limits[p] = int(max(args.min_backlog, 20_000) / N / P) + 1
        go.set()
        series: list[tuple[float, int]] = [(t0, 0)]
        live_series: list[tuple[float, int]] = [(t0, 0)]
        expected: int | None = None
        t_drained: float | None = None
        drain_deadline = None
        rows = -1
        last_count = 0.0
        while True:
            await asyncio.sleep(POLL_S)
            rig.check_alive()
            while True:
                try:
                    msg = results.get_nowait()
                except queue.Empty:
                    break
                if msg[0] == "error":
                    raise SystemExit(f"bench: {msg[2]}")
                if msg[0] == "pubdone":
                    pub_results[msg[1]] = msg[2]
                elif msg[0] == "done":
                    sub_result = msg[2]
            now = time.monotonic()
            acc, batches = await rig.accepted()
            committed = acc - acc0
            series.append((now, committed))
            groups["pg"] = await rig.pg_pids()
            meter.sample(groups)
            rss_max = max(rss_max, sum(proc_rss(pr.pid) for pr in rig.ingest))
            live_series.append((now, live_committed.value))
            if closed_loop and len(pub_results) < P:
                # steer on the live-derived count: the heartbeat runs on the ingest's loop and lags under load
                committed = live_series[-1][1]
                recent = [s for s in live_series if s[0] >= now - 1.0]
                r_est = (recent[-1][1] - recent[0][1]) / max(recent[-1][0] - recent[0][0], 1e-9) if len(recent) > 1 else 0
                window = max(args.min_backlog, args.backlog_s * r_est)
                allowed = int((committed + window) / N / P) + 1
                for p in range(P):
                    limits[p] = max(limits[p], allowed)
            if expected is None and len(pub_results) == P:
                expected = sum(r["acked"] for r in pub_results.values()) * N
                drain_deadline = now + args.drain_timeout
            committed = acc - acc0
            if expected is not None:
                if (committed >= expected or live_committed.value >= expected) and now - last_count >= 1.0:
                    last_count = now  # count(*) is not free on millions of rows: at most once a second
                    rows = await rig.conn.fetchval("SELECT count(*) FROM readings")
                    if rows >= expected:
                        t_drained = now
                        break
                if now > drain_deadline:  # type: ignore[operator]
                    break
        meter.stop(groups)
        pc1 = os.times()
        await asyncio.sleep(0.25)
        gc1 = [read_gc(f) for f in rig.gc_files]
        parent_cpu = (pc1.user + pc1.system) - (pc0.user + pc0.system)
        if rows < 0 or t_drained is None:
            rows = await rig.conn.fetchval("SELECT count(*) FROM readings")
        dead = await rig.conn.fetchval("SELECT count(*) FROM dead_letters")
        acc_end, batches_end = await rig.accepted()
        ingest_msgs = rig.messages_received - msgs0
        if t_drained is None:
            say(f"drain timeout: the ingest received {ingest_msgs:,} of {sum(r['acked'] for r in pub_results.values()):,} "
                f"messages and committed {acc_end - acc0:,} readings; logs: {rig.tmp}")
            rig.args.keep_tmp = True
        lag = await rig.conn.fetchrow(
            "SELECT max(commit_lag_p50_ms) AS p50, max(commit_lag_p99_ms) AS p99 FROM ingest_workers "
            "WHERE worker_id = ANY($1::text[])", rig.worker_ids)
        # let the last live messages arrive, then stop the subscriber
        quiet_deadline = time.monotonic() + 10
        while time.monotonic() < quiet_deadline and time.monotonic() - last_rx.value < 0.7:
            await asyncio.sleep(0.1)
        stop.set()
        deadline = time.monotonic() + 120
        while sub_result is None:
            msg = await _next_msg(results, deadline, [sub])
            if msg[0] == "error":
                raise SystemExit(f"bench: {msg[2]}")
            if msg[0] == "done":
                sub_result = msg[2]
        profile = finish_profiler(profiler, duration) if profiler else None
        profiler = None
    finally:
        stop.set()
        go.set()
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
        for pr in procs:
            pr.join(5)
            if pr.is_alive():
                pr.terminate()
                pr.join(2)

    # -- figures ---------------------------------------------------------------------
    sent = sum(r["sent"] for r in pub_results.values())
    acked = sum(r["acked"] for r in pub_results.values())
    t_pub_end = max(r["t_send_end"] for r in pub_results.values())
    pub_wall = max(t_pub_end - t0, 1e-9)
    reasons: Counter[int] = Counter()
    for r in pub_results.values():
        reasons.update(r["reasons"])
    ramp = min(max(1.0, 0.2 * duration), duration / 2)
    ta, tb = t0 + ramp, t_pub_end
    steady_hb = (interp(series, tb) - interp(series, ta)) / max(tb - ta, 1e-9)
    timeline = live_timeline(sub_result, P, [len(rig.keys[p::P]) for p in range(P)], len(rig.keys), t0)
    steady = (interp(timeline, tb) - interp(timeline, ta)) / max(tb - ta, 1e-9)
    lat, unresolved, t_last_commit = latency(rig, pub_results, sub_result, N, P, args.latency_samples)
    drain_s = None
    if t_last_commit is not None and not unresolved:
        drain_s = max(0.0, t_last_commit - t_pub_end)
    elif t_drained is not None:
        drain_s = max(0.0, t_drained - t_pub_end)
    end_t = t_last_commit if (t_last_commit is not None and not unresolved) else (t_drained or time.monotonic())
    fig: dict[str, Any] = {
        "rate_target": rate,
        "per_message": N,
        "duration_s": duration,
        "workers": args.workers,
        "publishers": P,
        "published_msgs": acked,
        "published_readings": acked * N,
        "publish_msgs_per_s": round(sent / pub_wall, 1),
        "publish_readings_per_s": round(sent * N / pub_wall, 1),
        "readings_per_s": round(steady, 1),
        "readings_per_s_heartbeat": round(steady_hb, 1),
        "overall_readings_per_s": round(rows / max(end_t - t0, 1e-9), 1),
        "drain_s": None if drain_s is None else round(drain_s, 2),
        "rows": rows,
        "lost": acked * N - rows,
        "dead_letters": dead,
        "ingest_received_msgs": ingest_msgs,
        "ingest_buffered_max_msgs": rig.buffered_max,
        "ingest_rss_max_mb": round(rss_max / 2**20, 1),
        "avg_batch_readings": round((acc_end - acc0) / max(batches_end - batches0, 1), 1),
        "p50_ms": rnd(pctl(lat, 0.50)),
        "p95_ms": rnd(pctl(lat, 0.95)),
        "p99_ms": rnd(pctl(lat, 0.99)),
        "max_ms": rnd(lat[-1] if lat else None),
        "latency_samples": len(lat),
        "latency_unresolved": unresolved,
        "ingest_lag_p50_ms": rnd(lag["p50"]),
        "ingest_lag_p99_ms": rnd(lag["p99"]),
        **meter.pct(),
        "bench_cpu_pct": round(100.0 * (sum(r["cpu_s"] for r in pub_results.values()) + sub_result["cpu_s"]
                                        + parent_cpu) / max(meter.t1 - meter.t0, 1e-9), 1),
        "live_messages": sub_result["received"],
    }
    ours = sum(fig.get(k) or 0 for k in ("ingest_cpu_pct", "mosquitto_cpu_pct", "pg_cpu_pct", "bench_cpu_pct"))
    fig["other_cpu_pct"] = round(max(0.0, fig["machine_cpu_pct"] - ours), 1)
    fig["other_cpu_pct_before"] = round(others_before, 1)
    if sent != acked:
        fig["unacked_msgs"] = sent - acked
    if rig.gc_files:
        wall = max(meter.t1 - meter.t0, 1e-9)
        secs = [0.0, 0.0, 0.0]
        counts = [0, 0, 0]
        for a, b in zip(gc0, gc1):
            if a and b:
                for g in range(3):
                    secs[g] += b["seconds"][g] - a["seconds"][g]
                    counts[g] += b["collections"][g] - a["collections"][g]
        fig["ingest_gc_pct"] = round(100.0 * sum(secs) / wall, 1)
        fig["ingest_gc"] = {f"gen{g}": {"collections": counts[g], "seconds": round(secs[g], 2)} for g in range(3)}
    if reasons:
        fig["puback_reasons"] = {f"0x{k:02x}": v for k, v in reasons.items()}
    if any(r["hit_cap"] for r in pub_results.values()):
        fig["publisher_cap_hit"] = True
    if t_drained is None:
        fig["drain_timeout"] = True
    if profile:
        fig["_profile"] = profile
    if args.timeline:
        fig["_timeline"] = [round(interp(timeline, t0 + k + 1) - interp(timeline, t0 + k)) for k in
                            range(int(math.ceil(end_t - t0)))]
    return fig


def live_timeline(sub: dict[str, Any], P: int, lens: list[int], nk: int, t0: float) -> list[tuple[float, int]]:
    """(time, readings committed) from the live messages, in receive order: exact with one ingest worker."""
    per_key = [0] * nk
    total = 0
    out: list[tuple[float, int]] = [(t0, 0)]
    for k, off, t in sorted(zip(sub["keys"], sub["offs"], sub["times"]), key=lambda x: x[2]):
        c = readings_upto(k, off, P, lens)
        if c > per_key[k]:
            total += c - per_key[k]
            per_key[k] = c
            if out[-1][0] == t:
                out[-1] = (t, total)
            else:
                out.append((t, total))
    return out


def rnd(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


async def _next_msg(results: Any, deadline: float, procs: list[Any]) -> tuple[Any, ...]:
    while True:
        try:
            return results.get_nowait()
        except queue.Empty:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out waiting for a publisher/subscriber process")
        for pr in procs:
            if pr.exitcode not in (None, 0):
                await asyncio.sleep(0.5)
                try:
                    return results.get_nowait()
                except queue.Empty:
                    raise SystemExit(f"bench: {pr.name} exited with {pr.exitcode}") from None
        await asyncio.sleep(0.02)


def latency(rig: Rig, pubs: dict[int, dict[str, Any]], sub: dict[str, Any], N: int, P: int,
            max_samples: int) -> tuple[list[float], int, float | None]:
    """Latency of sampled readings: first live message of its key whose ts >= its ts, minus its send time.

    With one ingest worker, messages commit in broker order, so that live message is the one
    published after the commit of the reading's batch. Returns (sorted ms, unresolved, last commit time).
    """
    nk = len(rig.keys)
    per_key: list[list[tuple[float, int]]] = [[] for _ in range(nk)]
    for k, off, t in zip(sub["keys"], sub["offs"], sub["times"]):
        per_key[k].append((t, off))
    pm: list[list[int]] = []
    tt: list[list[float]] = []
    for lst in per_key:
        lst.sort()
        run = -1
        m_list, t_list = [], []
        for t, off in lst:
            if off > run:
                run = off
                m_list.append(off)
                t_list.append(t)
        pm.append(m_list)
        tt.append(t_list)
    total = sum(r["acked"] for r in pubs.values()) * N
    step = max(1, total // max(max_samples, 1))
    while step > 1 and any(math.gcd(step, len(rig.keys[p::P])) != 1 for p in range(P)):
        step += 1
    lat: list[float] = []
    unresolved = 0
    t_last: float | None = None
    for p, r in pubs.items():
        n_msgs = r["acked"]
        send_t = array("d", bytes(8 * n_msgs))
        firsts, times = r["chunk_first"], r["chunk_t"]
        for c in range(len(firsts)):
            a = firsts[c]
            b = firsts[c + 1] if c + 1 < len(firsts) else n_msgs
            t = times[c]
            for m in range(a, min(b, n_msgs)):
                send_t[m] = t
        L = len(rig.keys[p::P])
        R = n_msgs * N

        def commit_time(i: int) -> float | None:
            k = p + (i % L) * P
            j = bisect.bisect_left(pm[k], i * P + p)
            return None if j == len(pm[k]) else tt[k][j]

        for i in range(p % step, R, step):
            tc = commit_time(i)
            if tc is None:
                unresolved += 1
                continue
            lat.append((tc - send_t[i // N]) * 1000.0)
        # the last reading of every key tells when the run was fully committed
        for q in range(min(L, R)):
            i_last = q + ((R - 1 - q) // L) * L
            tc = commit_time(i_last)
            if tc is None:
                unresolved += 1
            elif t_last is None or tc > t_last:
                t_last = tc
    lat.sort()
    return lat, unresolved, t_last


# =====================================================================================
# py-spy
# =====================================================================================
def start_profiler(rig: Rig, name: str, run_no: int, duration: float) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy")
    if exe is None:
        say("--profile: py-spy not found (pip install py-spy); profiling skipped")
        return None
    out = Path(rig.args.profile_dir or rig.tmp) / f"{name}-run{run_no}-ingest.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "record", "--pid", str(rig.ingest[0].pid), "--format", "raw", "--output", str(out),
           "--rate", "100", "--nonblocking", "--duration", str(max(1, int(duration)))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.out_path = out  # type: ignore[attr-defined]
    return proc


def finish_profiler(proc: subprocess.Popen[bytes], duration: float) -> dict[str, Any] | None:
    try:
        _, err = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None
    out: Path = proc.out_path  # type: ignore[attr-defined]
    if not out.exists():
        say(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
        return None
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";")]
        frames = [f for f in frames if f]
        if not frames:
            continue
        total += n
        self_t[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    expected = 100 * duration  # samples if one thread were busy all the time
    return {
        "file": str(out),
        "samples": total,
        "busy_pct_of_core": round(100.0 * total / expected, 1),
        "top_self": [(f, round(100.0 * n / expected, 1)) for f, n in self_t.most_common(15)],
        "top_inclusive": [(f, round(100.0 * n / expected, 1)) for f, n in incl.most_common(25)],
    }


def _frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    frame = frame.strip()
    if frame.startswith("process ") or frame.startswith("thread "):
        return ""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


# =====================================================================================
# Output
# =====================================================================================
def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def print_table(name: str, fig: dict[str, Any], label: str) -> None:
    rate = "as fast as the ingest takes" if fig["rate_target"] is None else f"{fig['rate_target']:,.0f} msgs/s"
    print(f"\n=== {name} ({label}): {rate}, {fig['per_message']} reading(s)/msg, {fig['duration_s']:g} s, "
          f"{fig['publishers']} publisher(s), {fig['workers']} ingest worker(s)")
    rows = [
        ("published (PUBACKed)", f"{fmt(fig['published_readings'])} readings in {fmt(fig['published_msgs'])} msgs"),
        ("publish rate", f"{fmt(fig['publish_msgs_per_s'])} msgs/s = {fmt(fig['publish_readings_per_s'])} readings/s"),
        ("committed, steady", f"{fmt(fig['readings_per_s'])} readings/s"),
        ("committed, overall", f"{fmt(fig['overall_readings_per_s'])} readings/s (first publish to last commit)"),
        ("drain after publishing", fmt(fig["drain_s"], " s")),
        ("rows / lost / dead letters" if not fig.get("drain_timeout") else
         "rows / NOT COMMITTED in time / dead letters",
         f"{fmt(fig['rows'])} / {fmt(fig['lost'])} / {fmt(fig['dead_letters'])}"),
        ("avg readings per commit", fmt(fig["avg_batch_readings"])),
        ("ingest buffer, peak", f"{fmt(fig['ingest_buffered_max_msgs'])} msgs waiting to be written "
                                f"(heartbeat); RSS {fmt(fig['ingest_rss_max_mb'])} MB"),
        ("publish->live p50/p95/p99", f"{fmt(fig['p50_ms'])} / {fmt(fig['p95_ms'])} / {fmt(fig['p99_ms'])} ms "
                                       f"(max {fmt(fig['max_ms'])}; {fmt(fig['latency_samples'])} samples, "
                                       f"{fmt(fig['latency_unresolved'])} unresolved)"),
        ("ingest's own lag p50/p99", f"{fmt(fig['ingest_lag_p50_ms'])} / {fmt(fig['ingest_lag_p99_ms'])} ms "
                                      "(receive->commit, last 5000 msgs)"),
        ("CPU, % of one core", f"ingest {fmt(fig.get('ingest_cpu_pct'))}, mosquitto {fmt(fig.get('mosquitto_cpu_pct'))}, "
                               f"postgres {fmt(fig.get('pg_cpu_pct'))}, bench clients {fmt(fig.get('bench_cpu_pct'))}; "
                               f"machine {fmt(fig.get('machine_cpu_pct'))} of 200 "
                               f"(other work on the box: {fmt(fig.get('other_cpu_pct'))} during, "
                               f"{fmt(fig.get('other_cpu_pct_before'))} just before)"),
    ]
    if "ingest_gc_pct" in fig:
        rows.append(("ingest in Python's GC", f"{fmt(fig['ingest_gc_pct'])}% of a core; {fig.get('ingest_gc')}"))
    for extra in ("unacked_msgs", "puback_reasons", "publisher_cap_hit", "drain_timeout"):
        if extra in fig:
            rows.append((extra.replace("_", " "), str(fig[extra])))
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    if fig.get("_timeline"):
        print(f"  committed per second (live): {' '.join(str(v) for v in fig['_timeline'])}")
    prof = fig.get("_profile")
    if prof:
        print(f"  py-spy on ingest worker 1: busy {prof['busy_pct_of_core']}% of a core "
              f"({prof['samples']} samples, raw stacks in {prof['file']})")
        print("    self time (% of a core):")
        for f, pct in prof["top_self"]:
            print(f"      {pct:6.1f}  {f}")
        print("    inclusive (% of a core):")
        for f, pct in prof["top_inclusive"]:
            print(f"      {pct:6.1f}  {f}")


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in runs[0]:
        if key.startswith("_"):
            continue
        vals = [r.get(key) for r in runs]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums and len(nums) == len(vals):
            med = statistics.median(nums)
            if all(isinstance(v, int) for v in nums) and float(med).is_integer():
                out[key] = int(med)
            else:
                out[key] = round(float(med), 2)
        else:
            out[key] = vals[0]
    for key in ("lost", "dead_letters", "latency_unresolved"):  # never hide a bad run behind a median
        if key in out:
            out[key + "_max"] = max(r.get(key) or 0 for r in runs)
    return out


# =====================================================================================
# main
# =====================================================================================
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", default=None,
                   help=f"one of {', '.join(SCENARIOS)}, custom (uses --rate/--per-message), or all; repeatable "
                        "or comma-separated (default: all four)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of publishing per run (default 20)")
    p.add_argument("--rate", type=float, default=None,
                   help="target messages/s, overriding the scenarios' (0 = as fast as the ingest takes)")
    p.add_argument("--per-message", type=int, default=None, help="readings per message, overriding the scenarios'")
    p.add_argument("--runs", type=int, default=1, help="repeat each scenario K times; figures are medians")
    p.add_argument("--workers", type=int, default=1, help="ingest processes sharing the subscription (default 1)")
    p.add_argument("--share-group", default=None,
                   help="IOC_INGEST_SHARE_GROUP for the workers (default: none for one worker, the service's "
                        "plain subscription; 'ioc-ingest' for several)")
    p.add_argument("--ingest-env", action="append", default=[], metavar="IOC_X=VALUE",
                   help="extra environment for the ingest workers (repeatable), e.g. IOC_INGEST_BATCH_MAX_ROWS=5000")
    p.add_argument("--keep-ingest", action="store_true",
                   help="keep the same ingest processes for every run (default: restart them before each run)")
    p.add_argument("--publishers", type=int, default=1, help="publisher processes (default 1)")
    p.add_argument("--inflight", type=int, default=65535,
                   help="in-flight cap per publisher; the broker's Receive Maximum applies too")
    p.add_argument("--max-rate", type=float, default=None,
                   help="closed-loop scenarios: messages/s to pre-encode for (default 60000, or 400000 readings/s "
                        "worth of batched messages)")
    p.add_argument("--backlog-s", type=float, default=2.0,
                   help="closed-loop scenarios: keep this many seconds of committed throughput queued ahead (default 2)")
    p.add_argument("--min-backlog", type=int, default=20_000, help="closed-loop: minimum readings queued ahead")
    p.add_argument("--drain-timeout", type=float, default=120.0,
                   help="seconds to wait after publishing for every reading to be committed (default 120)")
    p.add_argument("--latency-samples", type=int, default=300_000, help="max readings whose latency is computed")
    p.add_argument("--wait-quiet", type=float, default=120.0,
                   help="before each run, wait up to this many seconds for other work on the box to drop under "
                        "--quiet-pct (0: do not wait; default 120)")
    p.add_argument("--quiet-pct", type=float, default=25.0, help="%% of one core counted as a quiet box (default 25)")
    p.add_argument("--profile", action="store_true", help="py-spy record the (first) ingest worker during each run")
    p.add_argument("--timeline", action="store_true", help="print readings committed in each second of a run")
    p.add_argument("--gc-stats", action="store_true",
                   help="start the ingest through a wrapper that times Python's garbage collections (gc.callbacks) "
                        "and report the time spent in them; the service code is unchanged")
    p.add_argument("--profile-dir", default=None, help="where py-spy's raw stacks go (default: the temp dir)")
    p.add_argument("--pg-admin-url", default=os.environ.get("IOC_BENCH_PG_ADMIN_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (broker and ingest logs)")
    args = p.parse_args(argv)
    names: list[str] = []
    for item in args.scenario or []:
        names.extend(s.strip() for s in item.split(",") if s.strip())
    if not names:
        names = ["custom"] if (args.rate is not None or args.per_message is not None) else ["all"]
    if "all" in names:
        names = [n for n in names if n != "all"] + [n for n in DEFAULT_SCENARIOS if n not in names]
    for n in names:
        if n not in SCENARIOS and n != "custom":
            p.error(f"unknown scenario {n!r}")
    args.scenarios = names
    if args.workers < 1 or args.publishers < 1 or args.runs < 1 or args.duration <= 0:
        p.error("--workers, --publishers, --runs and --duration must be positive")
    return args


def scenario_params(args: argparse.Namespace, name: str) -> tuple[float | None, int]:
    base = SCENARIOS.get(name, {"rate": 1000, "per_message": 1})
    rate = base["rate"]
    if args.rate is not None:
        rate = None if args.rate <= 0 else args.rate
    n = args.per_message if args.per_message is not None else base["per_message"]
    return rate, n


async def amain(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    tmp = Path(tempfile.mkdtemp(prefix="ioc-bench-"))
    rig = Rig(args, tmp, args.pg_admin_url)
    all_figs: dict[str, Any] = {}
    failed = False
    try:
        await rig.setup()
        for name in args.scenarios:
            rate, n = scenario_params(args, name)
            runs = []
            for k in range(1, args.runs + 1):
                say(f"{name}: run {k}/{args.runs}")
                fig = await run_once(rig, name, rate, n, k)
                print_table(name, fig, f"run {k}/{args.runs}")
                runs.append(fig)
            med = median_figures(runs)
            if args.runs > 1:
                print_table(name, med, f"median of {args.runs} runs")
            all_figs[name.replace("-", "_")] = med
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted: cleaning up")
        failed = True
    except BaseException:
        failed = True
        for path in rig.ingest_logs:
            if path.exists():
                print(f"--- tail of {path.name} ---\n{path.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        raise
    finally:
        await asyncio.shield(rig.cleanup())
        if args.keep_tmp or (args.profile and not args.profile_dir):
            say(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if all_figs:
        all_figs["_meta"] = {"workers": args.workers, "publishers": args.publishers, "runs": args.runs,
                             "duration_s": args.duration, "cores": os.cpu_count(),
                             "storage_mode": rig.storage_mode, "subscription": rig.subscription,
                             "ingest_env": args.ingest_env}
        print(json.dumps(all_figs, separators=(",", ":")), flush=True)
    return 130 if failed else 0


def main() -> None:
    args = parse_args()
    try:
        code = asyncio.run(amain(args))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
