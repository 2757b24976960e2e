"""The wall's other clients while bench/video.py measures glass to glass: nine screens and
the tablets as raw websocket clients (bench/ws_drain.py) in a child process, reading every
video frame the hub writes and checking that each stream's frames come in order; one tablet
can be told to stop reading for a while (the issue's "one tablet stalled for 20 s"), and
what it got when it read again is reported: the time to a keyframe captured while it was
stalled, i.e. back on live video.

The parent drives it through a pipe: `Load.stall(seconds)`, then `Load.stop()` for the
figures."""

from __future__ import annotations

import multiprocessing as mp
import selectors
import statistics
import time
from typing import Any

from bench.ws_drain import FrameReader, pong, ws_client
from ioc.core.contracts.video_frame import MAGIC, decode_video


def _main(port: int, tokens: dict[str, str], screens: int, tablets: int, pipe: Any) -> None:
    opened = [ws_client(port, {"type": "hello", "token": tokens["screen"], "role": "screen", "screen": n})
              for n in range(1, screens + 1)]
    opened += [ws_client(port, {"type": "hello", "token": tokens["tablet"], "role": "tablet"}) for _ in range(tablets - 1)]
    # the tablet that stalls: a 64 KB receive buffer, like a tablet behind a dead Wi-Fi link (loopback's
    # autotuned megabytes would hold the whole stall and the hub would never see it)
    opened.append(ws_client(port, {"type": "hello", "token": tokens["tablet"], "role": "tablet"}, rcvbuf=64 * 1024))
    socks = [s for s, _ in opened]
    stalled = len(socks) - 1  # the last tablet
    readers = [FrameReader() for _ in socks]
    last: list[dict[tuple[str, str], int]] = [{} for _ in socks]
    frames = [0] * len(socks)
    out_of_order = gaps = restarts = 0
    disorder: list[str] = []  # the first few, to tell a switch of stream from a real reordering
    t_start = time.monotonic()
    key_times: dict[tuple[str, str], list[float]] = {}  # captured_at of each keyframe (client 0..n, first seen)
    stall: dict[str, Any] = {}
    recovered: dict[str, dict[str, Any]] = {}
    after: dict[str, int] = {}  # the stalled tablet's frames per stream after it read again
    oldest: dict[str, float] = {}
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    pipe.send("ready")

    def handle(i: int, data: bytes) -> None:
        nonlocal out_of_order, gaps, restarts
        for opcode, payload in readers[i].feed(data):
            if opcode == 0x9:
                pong(socks[i], bytes(payload))
                continue
            if opcode != 0x2 or payload[:4] != MAGIC:
                continue  # tiles' data and pictures: not video
            head, _ = decode_video(payload)
            sk = (head["camera"], head["stream"])
            frames[i] += 1
            prev = last[i].get(sk)
            if prev is not None:
                if head["seq"] == 1 and head["key"]:
                    restarts += 1  # the camera service began forwarding this stream anew
                elif head["seq"] <= prev:
                    out_of_order += 1
                    if len(disorder) < 8:
                        disorder.append(f"client {i} {sk[0]}/{sk[1]} seq {head['seq']} after {prev} at "
                                        f"{time.monotonic() - t_start:.1f} s key={head['key']}")
                elif head["seq"] > prev + 1:
                    gaps += 1
            last[i][sk] = head["seq"]
            if head["key"]:
                seen = key_times.setdefault(sk, [])
                if not seen or head["captured_at"] > seen[-1]:
                    seen.append(head["captured_at"])
            if i == stalled and stall.get("resumed_at") and f"{sk[0]}/{sk[1]}" not in recovered:
                name = f"{sk[0]}/{sk[1]}"
                after[name] = after.get(name, 0) + 1
                oldest[name] = max(oldest.get(name, 0.0), time.time() - head["captured_at"])
                if head["key"] and head["captured_at"] >= stall["resumed_wall"]:  # captured after it read again
                    recovered[name] = {"ms_after_reading_again": round(1000 * (time.monotonic() - stall["resumed_at"]), 1),
                                       "frames_read_before_it": after[name] - 1,
                                       "oldest_frame_read_age_ms": round(1000 * oldest[name], 1)}

    for i, (_, first) in enumerate(opened):
        if first:
            handle(i, first)
    while True:
        if pipe.poll():
            cmd = pipe.recv()
            if cmd[0] == "stall":
                sel.unregister(socks[stalled])
                stall.update(until=time.monotonic() + cmd[1])
            elif cmd[0] == "stop":
                break
        if "until" in stall and "resumed_at" not in stall and time.monotonic() >= stall["until"]:
            stall["resumed_at"], stall["resumed_wall"] = time.monotonic(), time.time()
            sel.register(socks[stalled], selectors.EVENT_READ, stalled)
        for key, _ in sel.select(0.05):
            try:
                data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                continue
            handle(key.data, data)
    gop = [b - a for times in key_times.values() for a, b in zip(times, times[1:]) if b > a]
    playing = set(after)  # the streams it was sent once it read again
    pipe.send({"clients": len(socks), "screens": screens, "tablets": tablets,
               "video_frames_received": sum(frames), "screens_frames": sum(frames[:screens]),
               "tablets_frames": sum(frames[screens:]), "out_of_order": out_of_order, "out_of_order_first": disorder,
               "stream_restarts": restarts,
               "seq_gaps": gaps,
               "clients_with_no_video": sum(1 for f in frames if f == 0),
               "gop_ms_median": round(1000 * statistics.median(gop), 1) if gop else None,
               "stalled_tablet": {"streams": sorted(playing), "back_on_live_keyframe": recovered,
                                  "not_recovered": sorted(playing - set(recovered)) if "resumed_at" in stall else None}})
    for s in socks:
        s.close()


class Load:
    """The child process, started and stopped from bench/video.py."""

    def __init__(self, port: int, tokens: dict[str, str], screens: int, tablets: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_main, args=(port, tokens, screens, tablets, child), daemon=True)
        self.proc.start()
        if not self.pipe.poll(60) or self.pipe.recv() != "ready":
            raise SystemExit("bench: the load clients did not connect within 60 s")

    def stall(self, seconds: float) -> None:
        self.pipe.send(("stall", seconds))

    def stop(self) -> dict[str, Any]:
        self.pipe.send(("stop",))
        out = self.pipe.recv() if self.pipe.poll(30) else {"error": "no figures from the load clients"}
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
        return out
