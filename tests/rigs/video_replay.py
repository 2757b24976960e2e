"""Replays an H.264 file onto the broker as a camera service forwards a camera's stream:
IOCV frames (`ioc.core.contracts.video_frame`) on `topics.live_camera(id, "video/<stream>")`,
QoS 0, at the file's frame rate, looping.

MP4 keeps H.264 as AVCC (each NAL unit behind its length, SPS/PPS once in the `avcC` box);
the contract wants Annex B (start codes) with SPS/PPS in front of every keyframe, which is
what a camera's RTSP stream gives once depacketized. So the file is demuxed once with PyAV
and converted here; nothing is decoded.
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import paho.mqtt.client as mqtt

from ioc.core.contracts import topics
from ioc.core.contracts.video_frame import VideoHeader, avc_codec_string, encode_video

START = b"\x00\x00\x00\x01"


@dataclass(frozen=True)
class Clip:
    """A file's access units, Annex B, in decode order (the rig's clips have no B-frames)."""

    units: list[tuple[bytes, bool]]  # (access unit, keyframe)
    codec: str
    width: int
    height: int
    fps: float


def _parameter_sets(avcc: bytes) -> tuple[list[bytes], list[bytes], int]:
    """SPS list, PPS list and the NAL length size from an `avcC` record (ISO 14496-15)."""
    if len(avcc) < 7 or avcc[0] != 1:
        raise ValueError("not an avcC record")
    length_size = (avcc[4] & 3) + 1
    pos = 6
    sps = []
    for _ in range(avcc[5] & 0x1F):
        (n,) = struct.unpack_from(">H", avcc, pos)
        sps.append(avcc[pos + 2 : pos + 2 + n])
        pos += 2 + n
    pps = []
    count = avcc[pos]
    pos += 1
    for _ in range(count):
        (n,) = struct.unpack_from(">H", avcc, pos)
        pps.append(avcc[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return sps, pps, length_size


def _nal_units(sample: bytes, length_size: int) -> list[bytes]:
    out = []
    pos = 0
    while pos + length_size <= len(sample):
        n = int.from_bytes(sample[pos : pos + length_size], "big")
        pos += length_size
        out.append(sample[pos : pos + n])
        pos += n
    return out


def load_clip(path: Path | str) -> Clip:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        sps, pps, length_size = _parameter_sets(bytes(stream.codec_context.extradata or b""))
        params = b"".join(START + n for n in (*sps, *pps))
        units = []
        for packet in container.demux(stream):
            if not packet.size:
                continue
            nals = _nal_units(bytes(packet), length_size)
            body = b"".join(START + n for n in nals)
            key = bool(packet.is_keyframe)
            has_sps = any(n and n[0] & 0x1F == 7 for n in nals)
            units.append((params + body if key and not has_sps else body, key))
        rate = stream.average_rate
        return Clip(units, avc_codec_string(sps[0]), stream.width, stream.height, float(rate) if rate else 25.0)


@dataclass
class VideoReplay:
    """Publishes `clip` for one camera stream from a thread, paced by the monotonic clock.
    `sent[seq] = (frame index in the file, time.time())` and `last` (the newest seq sent), for
    the tests' checks."""

    client: mqtt.Client
    camera: str
    stream: str
    clip: Clip
    sent: dict[int, tuple[int, float]] = field(default_factory=dict)
    last: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> VideoReplay:
        self._thread = threading.Thread(target=self._run, name=f"replay-{self.camera}-{self.stream}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        topic = topics.live_camera(self.camera, "video/main" if self.stream == "main" else "video/sub")
        step = 1.0 / self.clip.fps
        t0 = time.monotonic()
        seq = 0
        while not self._stop.is_set():
            index = seq % len(self.clip.units)
            seq += 1
            unit, key = self.clip.units[index]
            now = time.time()
            header: VideoHeader = {"camera": self.camera, "stream": self.stream, "seq": seq, "captured_at": now,
                                   "key": key, "codec": self.clip.codec, "width": self.clip.width,
                                   "height": self.clip.height}
            self.client.publish(topic, encode_video(header, unit), qos=0)
            self.sent[seq] = (index, now)
            self.last = seq
            delay = t0 + seq * step - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
