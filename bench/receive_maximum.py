#!/usr/bin/env python3
"""Does the broker keep to a subscriber's MQTT v5 Receive Maximum? Prints figures.

The ingest acknowledges messages only after their batch commits, and counts on Receive
Maximum (IOC_INGEST_RECEIVE_MAXIMUM, 10,000) to bound what the broker sends it meanwhile.
This starts a private Mosquitto from our generated configuration, floods a topic, and reads
it with a raw MQTT v5 subscriber that advertises a Receive Maximum and acknowledges what it
got in batches at a fixed interval, as the ingest does after each commit. It prints the
peak number of unacknowledged messages the broker had sent: a broker that keeps to the
window never exceeds the Receive Maximum.

    python bench/receive_maximum.py                          # 300k messages, window 10000
    python bench/receive_maximum.py --messages 100000 --receive-maximum 100 --ack-every 0.05 1.0
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)
elif str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ioc.core.contracts import topics  # noqa: E402

# the raw MQTT helpers of bench/ingest.py (not importable as `ingest`: that is the service package)
_spec = importlib.util.spec_from_file_location("bench_ingest", Path(__file__).resolve().parent / "ingest.py")
assert _spec is not None and _spec.loader is not None
bi = importlib.util.module_from_spec(_spec)
sys.modules["bench_ingest"] = bi
_spec.loader.exec_module(bi)


def connect_with_window(port: int, client_id: str, user: str, password: str, receive_maximum: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    props = b"\x21" + struct.pack("!H", receive_maximum)
    variable = bi.mstr(b"MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 120) + bi.varint(len(props)) + props
    payload = bi.mstr(client_id.encode()) + bi.mstr(user.encode()) + bi.mstr(password.encode())
    sock.sendall(b"\x10" + bi.varint(len(variable + payload)) + variable + payload)
    first, body = bi.recv_packet(sock)
    if first >> 4 != 2 or body[1] >= 0x80:
        raise SystemExit(f"CONNECT refused: {body!r}")
    return sock


def one_run(port: int, service_port: int, pw: dict[str, str], topic_filter: str, total: int, window: int,
            ack_every: float) -> tuple[int, int]:
    sub = connect_with_window(service_port, "rm-sub", "svc-ingest", pw["svc-ingest"], window)
    body = struct.pack("!H", 1) + b"\x00" + bi.mstr(topic_filter.encode()) + b"\x01"
    sub.sendall(b"\x82" + bi.varint(len(body)) + body)
    bi.recv_packet(sub)
    pub, _ = bi.mqtt_connect("127.0.0.1", port, "rm-pub", "rm-agency", pw["rm-agency"])
    reader = bi.AckReader(pub)
    reader.start()
    pub.sendall(b"".join(bi.publish_packet(topics.kpi("rm-agency").encode(), m % 65535 + 1, b'{"n":1}') for m in range(total)))
    sub.settimeout(0.01)
    buf = bytearray()
    pending: list[bytes] = []
    got = acked = peak = 0
    last_ack = time.monotonic()
    deadline = time.monotonic() + 120
    while got < total and time.monotonic() < deadline:
        try:
            buf += sub.recv(1 << 20)
        except socket.timeout:
            pass
        i = 0
        while i + 1 < len(buf):
            parsed = bi.read_varint(buf, i + 1)
            if parsed is None:
                break
            rl, j = parsed
            if j + rl > len(buf):
                break
            if buf[i] >> 4 == 3:
                k = j + 2 + (buf[j] << 8 | buf[j + 1])
                pending.append(bytes(buf[k : k + 2]))
                got += 1
            i = j + rl
        del buf[:i]
        peak = max(peak, got - acked)
        if pending and time.monotonic() - last_ack >= ack_every:
            sub.sendall(b"".join(b"\x40\x02" + pid for pid in pending))
            acked += len(pending)
            pending = []
            last_ack = time.monotonic()
    reader.closing = True
    for s in (sub, pub):
        try:
            s.sendall(b"\xe0\x00")
            s.close()
        except OSError:
            pass
    return got, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--receive-maximum", type=int, default=10_000)
    ap.add_argument("--ack-every", type=float, nargs="+", default=[0.05, 0.5, 1.5],
                    help="seconds between batches of PUBACKs (one run each)")
    ap.add_argument("--filter", default=topics.KPI_ALL, help="topic filter, e.g. $share/g/" + topics.KPI_ALL)
    args = ap.parse_args()

    from ioc.core.mqtt.broker_files import BrokerAccount
    from ioc.core.passwords import hash_password
    from tests.rigs.mosquitto import MosquittoRig

    pw = {"svc-ingest": "rm-ingest-password", "rm-agency": "rm-agency-password"}
    accounts = [BrokerAccount("svc-ingest", hash_password(pw["svc-ingest"]), "ingest"),
                BrokerAccount("rm-agency", hash_password(pw["rm-agency"]), "agency")]
    print(f"subscriber: Receive Maximum {args.receive_maximum}, filter {args.filter}; {args.messages:,} QoS 1 messages")
    print(f"{'ack every':>10}  {'received':>9}  {'peak unacked':>12}  {'x window':>8}")
    for every in args.ack_every:
        with tempfile.TemporaryDirectory(prefix="ioc-rm-") as tmp:
            rig = MosquittoRig(Path(tmp), accounts)
            with rig:
                got, peak = one_run(rig.port, rig.service_port, pw, args.filter, args.messages, args.receive_maximum, every)
        print(f"{every:>9.2f}s  {got:>9,}  {peak:>12,}  {peak / args.receive_maximum:>8.1f}")


if __name__ == "__main__":
    main()
