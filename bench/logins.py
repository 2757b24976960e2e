"""What a stronger password hash costs where a password is checked: the API's login, one
broker CONNECT, and a reconnect storm (every agency and service at once, as after a broker
restart), on Mosquitto and on the embedded broker.

    python bench/logins.py                       # 20k, 100k, 210k iterations; 60 clients
    python bench/logins.py --iterations 20000,600000 --clients 100 --runs 3

The hash is Mosquitto's `$7$` (PBKDF2-HMAC-SHA512, iterations in the hash), the one format
both brokers and the API read. Mosquitto checks it on its only thread, so a storm of CONNECTs
queues behind the derivations; the API and the embedded broker check in worker threads.
The last line is one JSON object of the figures (medians over --runs).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ioc.core.mqtt.broker_files import BrokerAccount  # noqa: E402
from ioc.core.passwords import hash_password, verify_password  # noqa: E402
from tests.rigs.embedded_broker import EmbeddedBrokerRig  # noqa: E402
from tests.rigs.mosquitto import MosquittoRig  # noqa: E402


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def connect_once(port: int, user: str, password: str) -> float:
    """Seconds from sending an MQTT 5 CONNECT to its CONNACK (refusals raise)."""
    body = _str("MQTT") + bytes((5, 0xC2)) + struct.pack(">H", 30) + b"\x00" + _str(f"bench-{user}") \
        + _str(user) + _str(password)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        t0 = time.perf_counter()
        s.sendall(bytes((0x10, len(body))) + body if len(body) < 128 else
                  bytes((0x10, (len(body) & 0x7F) | 0x80, len(body) >> 7)) + body)
        ack = s.recv(64)
        took = time.perf_counter() - t0
    if len(ack) < 4 or ack[0] != 0x20 or ack[3] != 0:
        raise RuntimeError(f"CONNECT of {user} refused: {ack!r}")
    return took


def storm(port: int, logins: list[tuple[str, str]]) -> tuple[float, float]:
    """Every client connects at once: (seconds until the last CONNACK, median CONNACK wait)."""
    start = threading.Barrier(len(logins))

    def one(login: tuple[str, str]) -> float:
        start.wait()
        return connect_once(port, *login)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(logins)) as pool:
        waits = list(pool.map(one, logins))
    return time.perf_counter() - t0, statistics.median(waits)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", default="20000,100000,210000")
    p.add_argument("--clients", type=int, default=60, help="clients in the reconnect storm (default 60)")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    counts = [int(x) for x in args.iterations.split(",")]
    figures: dict[str, dict[str, float]] = {}
    for n in counts:
        password = "bench-password-0123456789"
        accounts = [BrokerAccount(f"ag-{i:03d}", hash_password(password, n), "agency") for i in range(args.clients)]
        logins = [(a.username, password) for a in accounts]
        encoded = accounts[0].password_hash
        api = []
        for _ in range(max(5, args.runs)):
            t0 = time.perf_counter()
            assert verify_password(password, encoded)
            api.append((time.perf_counter() - t0) * 1000)
        row = {"api_login_ms": statistics.median(api)}
        for name, make in (("mosquitto", MosquittoRig), ("embedded", EmbeddedBrokerRig)):
            singles, totals, medians = [], [], []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory() as tmp:
                    rig = make(Path(tmp), accounts)
                    rig.start()
                    try:
                        singles.append(connect_once(rig.port, *logins[0]) * 1000)
                        total, median = storm(rig.port, logins)
                        totals.append(total)
                        medians.append(median * 1000)
                    finally:
                        rig.stop()
            row[f"{name}_connect_ms"] = statistics.median(singles)
            row[f"{name}_storm_s"] = statistics.median(totals)
            row[f"{name}_storm_median_wait_ms"] = statistics.median(medians)
        figures[str(n)] = row
        print(f"{n:>9,} iterations: API login {row['api_login_ms']:.1f} ms; one CONNECT: Mosquitto "
              f"{row['mosquitto_connect_ms']:.1f} ms, embedded {row['embedded_connect_ms']:.1f} ms; "
              f"{args.clients} at once: Mosquitto {row['mosquitto_storm_s']:.2f} s (median wait "
              f"{row['mosquitto_storm_median_wait_ms']:.0f} ms), embedded {row['embedded_storm_s']:.2f} s "
              f"(median wait {row['embedded_storm_median_wait_ms']:.0f} ms)", flush=True)
    print(json.dumps({"clients": args.clients, "runs": args.runs, "by_iterations": figures}, separators=(",", ":")))


if __name__ == "__main__":
    main()
