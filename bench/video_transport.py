#!/usr/bin/env python3
"""How live video should travel from the camera service to the hubs: the broker, or a link of its own.

Issue 11 asks for the figures behind the choice. Ten cameras' main (1080p) and sub (360p)
streams, the rig's counter clips as the IOCV frames the camera service publishes, 25 fps
each (500 frames/s, about the wall's worst case: every stream of every camera watched), go
from one publisher process to `--hubs` subscriber processes (the `ioc serve` nodes):

- **broker**: QoS 0 publishes to Mosquitto, each hub subscribed to the video topics, as ioc
  does (`ioc/v1/live/camera/<id>/video/main|sub`);
- **direct**: the publisher keeps a TCP connection per hub and writes each frame to each
  (length-prefixed), the least a link of our own would cost.

Printed per path: frame latency publisher -> hub (p50 / p95, the header's capture time
against the hub's clock, one machine), the CPU of the publisher, of the broker and of the
hubs (% of one core), medians of `--runs` runs alternating the paths. Last line: one JSON
object.

    python bench/video_transport.py [--seconds 10] [--runs 3] [--hubs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:1] = [str(REPO)]

import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from bench.video import cpu_s  # noqa: E402
from ioc.core.contracts import topics  # noqa: E402
from ioc.core.contracts.video_frame import VideoHeader, decode_video, encode_video  # noqa: E402
from tests.rigs.children import free_port  # noqa: E402
from tests.rigs.rtsp.rig import media_path  # noqa: E402
from tests.rigs.video_replay import load_clip  # noqa: E402

CAMERAS = [f"pl-{i:02d}" for i in range(1, 11)]
FPS = 25.0


def frames() -> list[tuple[str, str, list[tuple[bytes, bool]], dict[str, object]]]:
    main, sub = load_clip(media_path("counter-1080p.mp4")), load_clip(media_path("counter-360p.mp4"))
    out = []
    for cam in CAMERAS:
        for stream, clip in (("main", main), ("sub", sub)):
            out.append((cam, stream, clip.units, {"codec": clip.codec, "width": clip.width, "height": clip.height}))
    return out


def publish_loop(send: object, seconds: float) -> int:
    """Every stream at 25 fps, paced by the monotonic clock; `send(topic, payload)`."""
    streams = frames()
    t0 = time.monotonic()
    tick = 0
    sent = 0
    while time.monotonic() - t0 < seconds:
        for cam, stream, units, meta in streams:
            unit, key = units[tick % len(units)]
            header: VideoHeader = {"camera": cam, "stream": stream, "seq": tick + 1, "captured_at": time.time(),
                                   "key": key, **meta}  # type: ignore[typeddict-item]
            send(topics.live_camera(cam, f"video/{stream}"), encode_video(header, unit))  # type: ignore[operator]
            sent += 1
        tick += 1
        delay = t0 + tick / FPS - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return sent


def hub_broker(port: int, seconds: float, ready: mp.Event, out: mp.Queue) -> None:
    lat: list[float] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        header, _ = decode_video(msg.payload)
        lat.append(time.time() - float(header["captured_at"]))

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(topics.LIVE_CAMERA_ALL, qos=0)  # only video is published here
    client.loop_start()
    time.sleep(0.5)
    ready.set()
    c0 = time.process_time()
    time.sleep(seconds + 1.0)
    cpu = time.process_time() - c0
    client.loop_stop()
    out.put((lat, cpu))


def hub_direct(port: int, seconds: float, ready: mp.Event, out: mp.Queue) -> None:
    lat: list[float] = []
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(seconds + 3)
    ready.set()
    c0 = time.process_time()
    buf = bytearray()
    end = time.monotonic() + seconds + 1.0
    try:
        while time.monotonic() < end:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 4:
                n = struct.unpack_from(">I", buf)[0]
                if len(buf) < 4 + n:
                    break
                header, _ = decode_video(bytes(buf[4:4 + n]))
                lat.append(time.time() - float(header["captured_at"]))
                del buf[:4 + n]
    except TimeoutError:
        pass
    out.put((lat, time.process_time() - c0))


def run_broker(seconds: float, hubs: int) -> dict[str, float]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        conf = Path(tmp) / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            out: mp.Queue = mp.Queue()
            readies = [mp.Event() for _ in range(hubs)]
            procs = [mp.Process(target=hub_broker, args=(port, seconds, r, out)) for r in readies]
            for p in procs:
                p.start()
            for r in readies:
                r.wait(10)
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            pub.max_queued_messages_set(0)
            pub.connect("127.0.0.1", port)
            pub.loop_start()
            b0, c0, t0 = cpu_s(broker.pid), time.process_time(), time.monotonic()
            sent = publish_loop(lambda t, p: pub.publish(t, p, qos=0), seconds)
            wall = time.monotonic() - t0
            b1, c1 = cpu_s(broker.pid), time.process_time()
            results = [out.get(timeout=seconds + 20) for _ in procs]
            for p in procs:
                p.join(5)
            pub.loop_stop()
            pub.disconnect()
        finally:
            broker.terminate()
            broker.wait(5)
    return summary(results, sent, wall, c1 - c0, b1 - b0)


def run_direct(seconds: float, hubs: int) -> dict[str, float]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    out: mp.Queue = mp.Queue()
    readies = [mp.Event() for _ in range(hubs)]
    procs = [mp.Process(target=hub_direct, args=(port, seconds, r, out)) for r in readies]
    for p in procs:
        p.start()
    links = []
    for _ in procs:
        conn, _addr = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        links.append(conn)
    for r in readies:
        r.wait(10)
    lock = threading.Lock()

    def send(_topic: str, payload: bytes) -> None:
        framed = struct.pack(">I", len(payload)) + payload
        with lock:
            for link in links:
                link.sendall(framed)

    c0, t0 = time.process_time(), time.monotonic()
    sent = publish_loop(send, seconds)
    wall = time.monotonic() - t0
    c1 = time.process_time()
    results = [out.get(timeout=seconds + 20) for _ in procs]
    for p in procs:
        p.join(5)
    for link in links:
        link.close()
    server.close()
    return summary(results, sent, wall, c1 - c0, 0.0)


def summary(results: list[tuple[list[float], float]], sent: int, wall: float, pub_cpu: float,
            broker_cpu: float) -> dict[str, float]:
    lat = sorted(x for r in results for x in r[0])
    got = len(lat)
    return {
        "p50_ms": 1000 * lat[got // 2] if got else float("nan"),
        "p95_ms": 1000 * lat[int(got * 0.95)] if got else float("nan"),
        "delivered_pct": 100.0 * got / (sent * len(results)) if sent else 0.0,
        "publisher_cpu_pct": 100.0 * pub_cpu / wall,
        "broker_cpu_pct": 100.0 * broker_cpu / wall,
        "hub_cpu_pct": 100.0 * statistics.mean(r[1] for r in results) / wall,
        "frames_per_s": sent / wall,
    }


def wait_port(port: int) -> None:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"mosquitto did not listen on {port}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hubs", type=int, default=2)
    args = ap.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"broker": [], "direct": []}
    for i in range(args.runs):
        for name, fn in (("broker", run_broker), ("direct", run_direct)):
            r = fn(args.seconds, args.hubs)
            runs[name].append(r)
            print(f"run {i + 1} {name:6}: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, delivered "
                  f"{r['delivered_pct']:.1f}%, publisher {r['publisher_cpu_pct']:.1f}%, broker "
                  f"{r['broker_cpu_pct']:.1f}%, each hub {r['hub_cpu_pct']:.1f}% of a core "
                  f"({r['frames_per_s']:.0f} frames/s)", flush=True)
    figures = {name: {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]} for name, rs in runs.items()}
    for name, f in figures.items():
        print(f"median {name:6}: p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, publisher {f['publisher_cpu_pct']}%, "
              f"broker {f['broker_cpu_pct']}%, each hub {f['hub_cpu_pct']}%")
    print(orjson.dumps({"hubs": args.hubs, "seconds": args.seconds, "runs": args.runs, **figures}).decode())


if __name__ == "__main__":
    main()
