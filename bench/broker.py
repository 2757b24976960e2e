#!/usr/bin/env python3
"""The embedded broker beside Mosquitto, side by side in one run. Prints figures.

Each broker is started from the same generated files (tests/rigs), then three loads run
against it, with raw-socket MQTT 5 clients in their own processes so the clients are not
what is measured:

- flood: one agency publishes N QoS 1 readings as fast as a window of 1,000 unacknowledged
  messages allows; one ingest-like subscriber (QoS 1, acknowledging at once) receives them.
  Figures: messages/s end to end, lost, broker CPU.
- steady: R QoS 1 messages/s for D seconds: publish-to-receive latency p50/p99/max.
- tiles: 10 cameras x 2 fps of 60 KB retained QoS 0 JPEG tiles to 4 API nodes for D
  seconds: share delivered, latency p99, broker CPU.

    python bench/broker.py                    # both brokers, 3 runs each, medians
    python bench/broker.py --runs 1 --messages 50000 --broker embedded

Ends with one JSON line: per broker the medians, and embedded/mosquitto ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)
elif str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ioc.core.contracts import topics  # noqa: E402

# the raw MQTT helpers and CPU accounting of bench/ingest.py
_spec = importlib.util.spec_from_file_location("bench_ingest", Path(__file__).resolve().parent / "ingest.py")
assert _spec is not None and _spec.loader is not None
bi = importlib.util.module_from_spec(_spec)
sys.modules["bench_ingest"] = bi
_spec.loader.exec_module(bi)

PW = {"svc-ingest": "bench-ingest-pw", "bench-agency": "bench-agency-pw", "svc-camera": "bench-camera-pw",
      "svc-api": "bench-api-pw"}
ROLES = {"svc-ingest": "ingest", "bench-agency": "agency", "svc-camera": "camera", "svc-api": "api"}


def subscriber(port: int, user: str, cid: str, topic_filter: str, qos: int, expect: int, idle_s: float,
               ready: Any, out: Any) -> None:
    """Receive until `expect` messages or `idle_s` of silence; latency from the payload's send time."""
    sock, _ = bi.mqtt_connect("127.0.0.1", port, cid, user, PW[user])
    body = struct.pack("!H", 1) + b"\x00" + bi.mstr(topic_filter.encode()) + bytes((qos | 0x20,))  # no retained
    sock.sendall(b"\x82" + bi.varint(len(body)) + body)
    bi.recv_packet(sock)
    ready.set()
    sock.settimeout(idle_s)
    buf = bytearray()
    got = 0
    lat: list[float] = []
    t_last = 0.0
    while got < expect:
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            break
        if not data:
            break
        now = time.monotonic_ns()
        buf += data
        i = 0
        n = len(buf)
        acks = []
        while i + 1 < n:
            parsed = bi.read_varint(buf, i + 1)
            if parsed is None:
                break
            rl, j = parsed
            if j + rl > n:
                break
            b0 = buf[i]
            if b0 >> 4 == 3:
                pos = j + 2 + (buf[j] << 8 | buf[j + 1])
                if (b0 >> 1) & 3:
                    acks.append(b"\x40\x02" + bytes(buf[pos : pos + 2]))
                    pos += 2
                plen, pos = bi.read_varint(buf, pos)  # type: ignore[misc]
                pos += plen
                lat.append((now - struct.unpack_from("!q", buf, pos)[0]) / 1e6)
                got += 1
            i = j + rl
        del buf[:i]
        if acks:
            sock.sendall(b"".join(acks))
        t_last = time.monotonic()
    sock.close()
    out.put({"got": got, "t_last": t_last, "lat": lat})


def publish_qos1(port: int, n: int, rate: float, payload_size: int) -> tuple[float, float, str | None]:
    """(first send, last send, error): N QoS 1 messages, window 1,000, paced to `rate` if > 0."""
    sock, _ = bi.mqtt_connect("127.0.0.1", port, "bench-pub", "bench-agency", PW["bench-agency"])
    reader = bi.AckReader(sock)
    reader.start()
    pad = b"x" * max(0, payload_size - 8)
    topic = topics.kpi("bench-agency").encode()
    t0 = time.monotonic()
    sent = 0
    while sent < n:
        if rate:
            due = int((time.monotonic() - t0) * rate) + 1
            if sent >= due:
                time.sleep(0.0005)
                continue
        room = 1000 - (sent - reader.acked)
        if room <= 0:
            time.sleep(0.0002)
            continue
        k = min(room, n - sent, 200 if not rate else max(1, due - sent))
        sock.sendall(b"".join(bi.publish_packet(topic, (sent + m) % 65535 + 1,
                                                struct.pack("!q", time.monotonic_ns()) + pad) for m in range(k)))
        sent += k
    t1 = time.monotonic()
    deadline = time.monotonic() + 30
    while reader.acked < n and time.monotonic() < deadline and reader.error is None:
        time.sleep(0.01)
    reader.closing = True
    sock.close()
    return t0, t1, reader.error


def publish_tiles(port: int, cameras: int, fps: float, seconds: float, size: int) -> int:
    sock, _ = bi.mqtt_connect("127.0.0.1", port, "bench-cams", "svc-camera", PW["svc-camera"])
    reader = threading.Thread(target=lambda: _drain(sock), daemon=True)
    reader.start()
    jpeg = b"\xff\xd8" + b"j" * (size - 10)
    sent = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for c in range(cameras):
            topic = topics.live_camera(f"bench-{c:02d}", "tile").encode()
            payload = struct.pack("!q", time.monotonic_ns()) + jpeg
            body = bi.mstr(topic) + b"\x00" + payload
            sock.sendall(b"\x31" + bi.varint(len(body)) + body)  # QoS 0, retained
            sent += 1
        time.sleep(max(0.0, t0 + sent / cameras / fps - time.monotonic()))
    sock.close()
    return sent


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def pct(vals: list[float], q: float) -> float | None:
    v = bi.pctl(sorted(vals), q)
    return None if v is None else round(v, 2)


def start_subs(ctx: Any, port: int, specs: list[tuple[str, str, str, int, int]], idle_s: float) -> tuple[list[Any], Any]:
    out = ctx.Queue()
    procs = []
    for user, cid, topic_filter, qos, expect in specs:
        ready = ctx.Event()
        p = ctx.Process(target=subscriber, args=(port, user, cid, topic_filter, qos, expect, idle_s, ready, out))
        p.start()
        if not ready.wait(15):
            raise SystemExit(f"subscriber {cid} did not subscribe")
        procs.append(p)
    return procs, out


def collect(procs: list[Any], out: Any, timeout: float) -> list[dict[str, Any]]:
    results = [out.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(5)
    return results


def one_run(kind: str, args: argparse.Namespace, ctx: Any) -> dict[str, Any]:
    from ioc.core.mqtt.broker_files import BrokerAccount
    from ioc.core.passwords import hash_password
    from tests.rigs.embedded_broker import EmbeddedBrokerRig
    from tests.rigs.mosquitto import MosquittoRig

    accounts = [BrokerAccount(u, hash_password(PW[u], 1000), ROLES[u]) for u in PW]  # type: ignore[arg-type]
    fig: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix=f"ioc-bench-{kind}-") as tmp:
        rig_cls = EmbeddedBrokerRig if kind == "embedded" else MosquittoRig
        with rig_cls(Path(tmp), accounts) as rig:
            pid = rig.pid
            assert pid is not None
            # flood
            procs, out = start_subs(ctx, rig.service_port, [("svc-ingest", "bench-sub", topics.KPI_ALL, 1, args.messages)], 5)
            cpu0 = bi.proc_cpu(pid)
            t0, _, err = publish_qos1(rig.port, args.messages, 0, 100)
            (res,) = collect(procs, out, 120)
            cpu1 = bi.proc_cpu(pid)
            took = max(res["t_last"] - t0, 1e-6)
            fig["flood_msgs_per_s"] = round(res["got"] / took)
            fig["flood_lost"] = args.messages - res["got"]
            fig["flood_broker_cpu_pct"] = round(100 * (cpu1[0] - cpu0[0]) / took, 1) if cpu0 and cpu1 else None
            if err:
                fig["flood_error"] = err
            # steady
            n = int(args.rate * args.seconds)
            procs, out = start_subs(ctx, rig.service_port, [("svc-ingest", "bench-sub2", topics.KPI_ALL, 1, n)], 5)
            cpu0 = bi.proc_cpu(pid)
            t0, t1, err = publish_qos1(rig.port, n, args.rate, 100)
            (res,) = collect(procs, out, 120)
            cpu1 = bi.proc_cpu(pid)
            fig["steady_rate"] = args.rate
            fig["steady_lost"] = n - res["got"]
            fig["steady_p50_ms"] = pct(res["lat"], 0.5)
            fig["steady_p99_ms"] = pct(res["lat"], 0.99)
            fig["steady_max_ms"] = round(max(res["lat"]), 2) if res["lat"] else None
            fig["steady_broker_cpu_pct"] = round(100 * (cpu1[0] - cpu0[0]) / max(t1 - t0, 1e-6), 1) if cpu0 and cpu1 else None
            # tiles
            expect = int(10 * 2 * args.seconds)
            specs = [("svc-api", f"bench-api-{k}", topics.live_camera("+", "tile"), 0, expect) for k in range(4)]
            procs, out = start_subs(ctx, rig.service_port, specs, 3)
            cpu0 = bi.proc_cpu(pid)
            t0 = time.monotonic()
            sent = publish_tiles(rig.service_port, 10, 2.0, args.seconds, 60_000)
            t1 = time.monotonic()
            cpu1 = bi.proc_cpu(pid)
            results = collect(procs, out, 60)
            lat = [v for r in results for v in r["lat"]]
            fig["tiles_delivered_pct"] = round(100 * sum(r["got"] for r in results) / (sent * 4), 2)
            fig["tiles_p99_ms"] = pct(lat, 0.99)
            fig["tiles_broker_cpu_pct"] = round(100 * (cpu1[0] - cpu0[0]) / max(t1 - t0, 1e-6), 1) if cpu0 and cpu1 else None
            fig["broker_rss_mb"] = round(bi.proc_rss(pid) / 2**20, 1)
    return fig


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in runs[0]:
        vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        out[key] = round(statistics.median(vals), 2) if vals else runs[0][key]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=100_000, help="flood: QoS 1 messages")
    ap.add_argument("--rate", type=float, default=2000, help="steady: QoS 1 messages per second")
    ap.add_argument("--seconds", type=float, default=5.0, help="steady and tiles: duration")
    ap.add_argument("--broker", choices=["both", "mosquitto", "embedded"], default="both")
    args = ap.parse_args()
    kinds = ["mosquitto", "embedded"] if args.broker == "both" else [args.broker]
    ctx = mp.get_context("fork")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(args.runs):
        for kind in kinds:  # interleaved, so both see the same noise
            fig = one_run(kind, args, ctx)
            runs[kind].append(fig)
            print(f"run {r + 1} {kind:>9}: " + ", ".join(f"{k}={v}" for k, v in fig.items()), flush=True)
    med = {k: median_of(v) for k, v in runs.items()}
    print(f"\nmedians of {args.runs} run(s), 2 cores, clients in their own processes:")
    keys = list(next(iter(med.values())).keys())
    print(f"{'figure':<24}" + "".join(f"{k:>12}" for k in kinds))
    for key in keys:
        print(f"{key:<24}" + "".join(f"{str(med[k].get(key)):>12}" for k in kinds))
    result: dict[str, Any] = dict(med)
    if len(kinds) == 2:
        ratio = {}
        for key in ("flood_msgs_per_s", "flood_broker_cpu_pct", "steady_p99_ms", "tiles_broker_cpu_pct", "broker_rss_mb"):
            a, b = med["embedded"].get(key), med["mosquitto"].get(key)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                ratio[key] = round(a / b, 2)
        result["embedded_over_mosquitto"] = ratio
    result["_meta"] = {"runs": args.runs, "messages": args.messages, "rate": args.rate, "seconds": args.seconds,
                       "cpus": os.cpu_count()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
