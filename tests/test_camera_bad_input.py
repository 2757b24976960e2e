"""Cameras that stream what a wall should not trust, through the real camera service.

Real parts: the RTSP rig streaming clips made here from the counter clip (B-frames, one
keyframe in 10 s, corrupt packets, 4K), an MJPEG file camera, the real broker and
`ioc cameras` as a child process, with a wall node's demand for every camera's video. Each
bad camera must get a clear status and log line while a good camera beside it in the same
process streams on untouched.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import orjson

from ioc.core.contracts import topics
from ioc.core.contracts.tile_frame import decode_tile
from ioc.core.contracts.video_frame import decode_video
from ioc.core.contracts.wall import Demand, encode_demand
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.rtsp.rig import Mount, RtspRig, media_path
from tests.test_camera_video import FRAMES_IN_CLIP, _decode_numbers, moving_clip, start_cameras

FPS = 25
KEYFRAME_MAX_S = 3  # the service's limit for this test (30 s by default)


def _in_order(numbers: list[int], frames: int) -> bool:
    """The pictures in the order shot, none twice; a step of 2 or 3 where the rig's clock
    thread, on a loaded machine, skipped a frame (it jumps to now, as a live source does)."""
    steps = [(b - a) % frames for a, b in zip(numbers, numbers[1:])]
    return all(1 <= s <= 3 for s in steps) and steps.count(1) >= len(steps) - 3


def _pictures(count: int) -> list[np.ndarray]:
    """The counter clip's first pictures (YUV 4:2:0 planes), to encode again as a camera would."""
    out = []
    with av.open(str(media_path("counter-360p.mp4"))) as c:
        for frame in c.decode(video=0):
            out.append(frame.to_ndarray(format="yuv420p"))
            if len(out) == count:
                break
    return out


def _encode(path: Path, pictures: list[np.ndarray], x264: str, size: tuple[int, int] | None = None,
            format: str | None = None) -> None:
    """One slice per picture (threads=1): the rig's payloader repeats SPS/PPS in front of every
    IDR slice, and FFmpeg's parser then cuts a many-slice keyframe into one unit per slice
    (README, "Live video": known limits)."""
    x264 += ":threads=1"
    with av.open(str(path), "w", format=format) as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "x264-params": x264})
        h, w = pictures[0].shape[0] * 2 // 3, pictures[0].shape[1]
        stream.width, stream.height = size or (w, h)
        stream.pix_fmt = "yuv420p"
        for i, planes in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            if size is not None:
                frame = frame.reformat(width=size[0], height=size[1])
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _corrupt(src: Path, dst: Path, every: int = 10) -> None:
    """`src` with the slice data of every `every`th picture, and of every other keyframe,
    overwritten by noise (NAL lengths, headers and the first bytes of each slice header kept,
    so the stream still parses: damage as a lossy link does it)."""
    rng = np.random.default_rng(3)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        keys = 0
        for i, packet in enumerate(inp.demux(vin)):
            if not packet.size:
                continue
            data = bytearray(bytes(packet))
            keys += packet.is_keyframe
            if i % every == every - 1 or (packet.is_keyframe and keys % 2 == 0):
                pos = 0
                while pos + 4 <= len(data):  # AVCC: 4-byte lengths
                    size = int.from_bytes(data[pos:pos + 4], "big")
                    if data[pos + 4] & 0x1F in (1, 5) and size > 16:
                        data[pos + 12:pos + 4 + size] = rng.integers(0, 256, size - 8, dtype=np.uint8).tobytes()
                    pos += 4 + size
            bad = av.Packet(bytes(data))
            bad.pts, bad.dts, bad.time_base, bad.is_keyframe = packet.pts, packet.dts, packet.time_base, packet.is_keyframe
            bad.stream = vout
            out.mux(bad)


async def test_bad_streams_get_a_status_and_a_log_line_and_spoil_nothing_else(
        tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str]) -> None:
    await asyncio.to_thread(_run, tmp_path, broker, service_passwords)


def _run(tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str]) -> None:
    pictures = _pictures(10 * FPS)
    _encode(tmp_path / "bframes.mp4", pictures, "keyint=25:min-keyint=25:scenecut=0:bframes=2:b-pyramid=none")
    _encode(tmp_path / "long-gop.mp4", pictures, "keyint=1000:min-keyint=1000:scenecut=0:bframes=0")
    _encode(tmp_path / "4k.mp4", pictures[:2 * FPS], "keyint=25:min-keyint=25:scenecut=0:bframes=0", (3840, 2160))
    _corrupt(media_path("counter-360p.mp4"), tmp_path / "corrupt.mp4")
    moving_clip(tmp_path / "mjpeg.mkv", "mjpeg", "yuvj420p")
    # MPEG-TS carries SPS/PPS in band: two recordings end to end are a camera whose
    # resolution is changed while it streams (a new SPS at the keyframe that changes it)
    for i, size in enumerate([(640, 360), (1280, 720)]):
        _encode(tmp_path / f"part{i}.ts", pictures[:3 * FPS], "keyint=25:min-keyint=25:scenecut=0:bframes=0", size,
                format="mpegts")
    (tmp_path / "resize.ts").write_bytes((tmp_path / "part0.ts").read_bytes() + (tmp_path / "part1.ts").read_bytes())
    mounts = [Mount("good", "counter-360p.mp4"), Mount("bframes", str(tmp_path / "bframes.mp4")),
              # each client from the file's one keyframe, then 10 s without another
              Mount("long-gop", str(tmp_path / "long-gop.mp4"), timeline="per-client"),
              Mount("corrupt", str(tmp_path / "corrupt.mp4")), Mount("4k", str(tmp_path / "4k.mp4"))]
    with RtspRig(mounts) as rig:
        registry = tmp_path / "cameras.toml"
        cams = {m.name: rig.url(m.name) for m in mounts} | {"mjpeg": (tmp_path / "mjpeg.mkv").as_uri(),
                                                        "resize": (tmp_path / "resize.ts").as_uri()}
        registry.write_text("".join(f'[[camera]]\nid = "{c}"\nname = "{c}"\nmain_url = "{u}"\n' for c, u in cams.items()),
                            encoding="utf-8")
        proc, log, wall = start_cameras(tmp_path, broker, service_passwords, registry, "cam-bad-input-test",
                                        IOC_CAMERA_KEYFRAME_MAX_S=str(KEYFRAME_MAX_S))
        log_path = tmp_path / "cameras.log"
        demand_topic = topics.wall_demand("bad-input-node")
        try:

            def on(cam: str, what: str) -> list[Any]:
                topic = topics.live_camera(cam, what)
                return [m for m in list(wall.messages) if m.topic == topic]

            def statuses(cam: str) -> list[dict[str, Any]]:
                return [orjson.loads(m.payload) for m in on(cam, "status") if m.payload]

            def resized() -> list[tuple[Any, bytes]]:
                return [(h, bytes(au)) for h, au in (decode_video(m.payload) for m in on("resize", "video/main"))]

            def status(cam: str) -> dict[str, Any]:
                found = statuses(cam)
                return found[-1] if found else {}

            wall.wait_for(lambda _: all(status(c).get("state") == "online" for c in cams), 40)
            wall.publish(demand_topic, encode_demand(Demand(video_main=frozenset(cams)), time.time()), retain=True)

            # a stream 3 s without a keyframe: said in its status and the log; never offline
            # (packets still come), and said no more once a keyframe comes (the file loops at 10 s)
            late = f"no keyframe for over {KEYFRAME_MAX_S} s"
            wall.wait_for(lambda _: late in (status("long-gop").get("video_reason") or ""), 30)
            wall.wait_for(lambda _: status("long-gop").get("video_reason") is None, 30)
            assert all(s["state"] == "online" for s in statuses("long-gop")), statuses("long-gop")
            assert status("long-gop")["video"] == "h264"

            wall.wait_for(lambda _: len(on("good", "video/main")) >= 100 and len(on("bframes", "video/main")) >= 100
                          and len(on("4k", "video/main")) >= 10 and len(on("corrupt", "video/main")) >= 50, 30)

            # B-frames: forwarded in decode order, so a decoder from the first keyframe gives
            # every picture, in order
            units = [decode_video(m.payload) for m in on("bframes", "video/main")]
            assert units[0][0]["key"]
            numbers = _decode_numbers([bytes(au) for _, au in units])
            assert len(numbers) == len(units) and _in_order(numbers, len(pictures)), numbers
            assert status("bframes")["video"] == "h264" and status("bframes")["video_reason"] is None

            # 4K: forwarded as it is, its size from the SPS; the tiles stay 640x360
            head = decode_video(on("4k", "video/main")[0].payload)[0]
            assert (head["width"], head["height"]) == (3840, 2160) and head["key"], head
            assert (status("4k")["width"], status("4k")["height"]) == (3840, 2160)
            tile = decode_tile(on("4k", "tile")[-1].payload)
            assert tile[0]["width"] == 640 and tile[0]["height"] == 360, tile[0]

            # corrupt packets: forwarded (the pages count decoding errors), the camera stays
            # online with fresh tiles, and the log says which camera's packets did not decode
            assert status("corrupt")["state"] == "online" and status("corrupt")["video"] == "h264"
            wall.wait_for(lambda _: status("corrupt")["damaged"] > 0, 15)  # (restated every 10 s)
            assert status("good")["damaged"] == 0
            last = decode_tile(on("corrupt", "tile")[-1].payload)[0]
            assert time.time() - float(last["captured_at"]) < 5  # type: ignore[arg-type]

            # MJPEG: tiles and health, no video, and the status says why
            assert status("mjpeg")["state"] == "online" and status("mjpeg")["video"] is None
            assert "mjpeg" in status("mjpeg")["video_reason"] and "snapshots only" in status("mjpeg")["video_reason"]
            assert not on("mjpeg", "video/main")

            # a new resolution mid-stream: the keyframe that brings it says so in its header, a
            # decoder given the units in order decodes all of them, and the status follows
            wall.wait_for(lambda _: {(h["width"], h["height"]) for h, _ in resized()} == {(640, 360), (1280, 720)}, 20)
            units = resized()
            for (a, _), (b, _) in zip(units, units[1:]):
                assert (a["width"], a["height"]) == (b["width"], b["height"]) or b["key"], (a, b)
            decoder = av.CodecContext.create("h264", "r")
            sizes = [(p.width, p.height) for _, au in units for p in decoder.decode(av.Packet(au)) if not p.is_corrupt]
            assert len(sizes) >= len(units) - 2 and {(640, 360), (1280, 720)} <= set(sizes), sizes
            wall.wait_for(lambda _: {(s["width"], s["height"]) for s in statuses("resize")} >= {(640, 360), (1280, 720)}, 20)

            # the good camera beside them: every picture, in order, healthy all along
            good = [decode_video(m.payload) for m in on("good", "video/main")]
            numbers = _decode_numbers([bytes(au) for _, au in good])
            assert good[0][0]["key"] and _in_order(numbers, FRAMES_IN_CLIP), numbers
            assert all(s["state"] == "online" for s in statuses("good")) and status("good")["healthy"] is True
        finally:
            wall.publish(demand_topic, b"", retain=True)
            proc.terminate()
            proc.wait(10)
            log.close()
            wall.close()
        text = log_path.read_text()
        lines = text.splitlines()
        assert any("sends no keyframes" in ln and "long-gop" in ln for ln in lines), text[-3000:]
        assert any("keyframes back" in ln and "long-gop" in ln for ln in lines), text[-3000:]
        assert any("did not decode" in ln and "corrupt" in ln for ln in lines), text[-3000:]
        assert any("video not forwarded" in ln and "mjpeg" in ln for ln in lines), text[-3000:]
        assert any("size changed" in ln and "resize" in ln and "1280x720" in ln for ln in lines), text[-3000:]
        assert not any('"good"' in ln and ("WARNING" in ln or "ERROR" in ln) for ln in lines), text[-3000:]
