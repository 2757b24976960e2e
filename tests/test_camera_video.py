"""Live video out of `ioc cameras`: the cameras' own H.264, forwarded without re-encoding.

Real parts: the RTSP rig's counter cameras (H.264 with the frame number burnt in), the real
broker, `ioc cameras` as a child process, and a wall node's demand published as the API
nodes publish it. The received access units are decoded here with PyAV, and the burnt-in
numbers read back, to prove the stream arrives whole and in order.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
import numpy as np
import orjson

from camera.h264 import NAL_SPS, AccessUnits, annexb_nals
from camera.video import MAX_BEHIND, VideoForwarder, VideoOutbox
from ioc.core.contracts import topics
from ioc.core.contracts.tile_frame import decode_tile
from ioc.core.contracts.video_frame import VideoHeader, avc_codec_string, decode_video
from ioc.core.contracts.wall import Demand, encode_demand
from tests.conftest import REPO
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client
from tests.rigs.rtsp.counter import decode_counter
from tests.rigs.rtsp.rig import Mount, RtspRig, media_path

FRAMES_IN_CLIP = 1495  # the counter clips' length: the number wraps to 0 there


def _packets(name: str, count: int) -> tuple[bytes, list[tuple[bytes, bool]]]:
    with av.open(str(media_path(name))) as c:
        stream = c.streams.video[0]
        extradata = bytes(stream.codec_context.extradata)
        out = [(bytes(p), p.is_keyframe) for p in c.demux(stream) if p.size]
    return extradata, out[:count]


def _decode_numbers(units: list[bytes]) -> list[int]:
    """Decode Annex B access units as a browser would (from the first keyframe) and read the counter."""
    decoder = av.CodecContext.create("h264", "r")
    numbers = []
    for au in units:
        for picture in decoder.decode(av.Packet(au)):
            numbers.append(decode_counter(picture.to_ndarray(format="gray")))
    for picture in decoder.decode(None):  # what a threaded decoder still holds
        numbers.append(decode_counter(picture.to_ndarray(format="gray")))
    return numbers


def _consecutive(numbers: list[int], frames: int = FRAMES_IN_CLIP) -> bool:
    """Each number the one after the last, wrapping at the clip's length."""
    return all(b == (a + 1) % frames for a, b in zip(numbers, numbers[1:]))


def test_mp4_packets_become_annex_b_units_that_decode_from_any_keyframe() -> None:
    """MP4 gives AVCC with the parameter sets only in its avcC record: each unit comes out
    with start codes, and each keyframe with SPS and PPS in front, so a decoder that starts
    at the second keyframe (as a screen joining late does) decodes every picture."""
    extradata, packets = _packets("counter-360p.mp4", 60)
    units = AccessUnits(extradata)
    assert units.length_size == 4 and units.codec == "avc1.4d401e"
    converted = [units.convert(data) for data, _ in packets]
    assert [key for _, key in converted] == [key for _, key in packets]
    for data, key in converted:
        assert data.startswith(b"\x00\x00\x00\x01")
        kinds = [nal[0] & 0x1F for nal in annexb_nals(data)]
        assert (kinds[:2] == [7, 8]) if key else (NAL_SPS not in kinds)
    second_key = [i for i, (_, key) in enumerate(converted) if key][1]
    numbers = _decode_numbers([data for data, _ in converted[second_key:]])
    assert numbers[0] == second_key and _consecutive(numbers) and len(numbers) > 10

    # Annex B without parameter sets in band (a camera that sends them only in its SDP): the
    # keyframe gets those of the SDP; one that carries its own keeps them, and they become
    # the ones remembered (a camera that changes them mid-stream)
    sdp = b"".join(b"\x00\x00\x00\x01" + n for n in (units.sps, units.pps))  # type: ignore[operator]
    bare = b"".join(b"\x00\x00\x00\x01" + n for n in annexb_nals(converted[0][0])
                    if n[0] & 0x1F not in (7, 8))
    rtsp = AccessUnits(sdp)
    out, key = rtsp.convert(bare)
    assert key and out == sdp + bare
    p_frame = converted[1][0]
    assert rtsp.convert(p_frame) == (p_frame, False)  # passed on as it came
    other_sps = units.sps[:3] + bytes([units.sps[3] + 1]) + units.sps[4:]  # type: ignore[index]
    rtsp.convert(b"\x00\x00\x00\x01" + other_sps + bare)
    assert rtsp.sps == other_sps and rtsp.codec == avc_codec_string(other_sps)


def test_the_picture_size_comes_from_the_sps_so_a_resolution_change_shows_in_the_next_keyframe() -> None:
    """No decoding for the header's size: a camera switched from 360p to 1080p (a new SPS in
    band) announces it in the keyframe that changes it; cropping (1080 of 1088 coded lines,
    an odd size in High profile) is applied."""
    small, big = (AccessUnits(_packets(name, 1)[0]) for name in ("counter-360p.mp4", "counter-1080p.mp4"))
    assert (small.width, small.height, big.width, big.height) == (640, 360, 1920, 1080)
    camera = AccessUnits(b"\x00\x00\x00\x01" + small.sps + b"\x00\x00\x00\x01" + small.pps)  # type: ignore[operator]
    key_1080 = big.convert(_packets("counter-1080p.mp4", 1)[1][0][0])[0]
    assert (camera.width, camera.height) == (640, 360)
    assert camera.convert(key_1080)[1] and (camera.width, camera.height, camera.codec) == (1920, 1080, "avc1.4d4028")
    odd = av.CodecContext.create("libx264", "w")
    odd.width, odd.height, odd.pix_fmt, odd.time_base = 854, 478, "yuv420p", Fraction(1, 10)
    odd.options = {"profile": "high"}
    frame = av.VideoFrame.from_ndarray(np.zeros((478, 854, 3), np.uint8), format="bgr24")
    frame.pts = 0
    unit = b"".join(bytes(p) for p in [*odd.encode(frame), *odd.encode(None)])
    high = AccessUnits(None)
    assert high.convert(unit)[1] and (high.width, high.height) == (854, 478) and high.codec.startswith("avc1.64")  # type: ignore[union-attr]


def test_the_forwarder_drops_up_to_the_next_keyframe_when_the_loop_is_behind() -> None:
    loop = asyncio.new_event_loop()
    sent: list[tuple[str, bytes]] = []
    fwd = VideoForwarder(VideoOutbox(loop, sent.extend), "cam-a", "sub")

    def unit(seq: int, key: bool) -> None:
        header: VideoHeader = {"camera": "cam-a", "stream": "sub", "seq": seq, "captured_at": 1.0, "key": key,
                               "codec": "avc1.4d401e", "width": 640, "height": 360}
        fwd(header, b"\x00\x00\x00\x01" + bytes([seq % 256]))

    def run_loop() -> None:
        loop.run_until_complete(asyncio.sleep(0.01))

    try:
        unit(1, True)
        for seq in range(2, 30):  # the loop does not run: it is "behind"
            unit(seq, seq == 20)
        run_loop()
        assert [decode_video(p)[0]["seq"] for _, p in sent] == list(range(1, MAX_BEHIND + 1))
        assert {t for t, _ in sent} == {topics.live_camera("cam-a", "video/sub")}
        unit(30, False)  # the loop caught up, but what follows a dropped unit cannot decode
        unit(31, True)
        unit(32, False)
        run_loop()
        assert [decode_video(p)[0]["seq"] for _, p in sent][MAX_BEHIND:] == [31, 32]
        assert fwd.dropped == 30 - 1 - MAX_BEHIND + 1
    finally:
        loop.close()


def _unit(fwd: VideoForwarder, seq: int, key: bool) -> None:
    """What a reader thread hands its stream's forwarder: a header and an access unit."""
    header: VideoHeader = {"camera": fwd.camera_id, "stream": fwd.stream, "seq": seq, "captured_at": 1.0,
                           "key": key, "codec": "avc1.4d401e", "width": 640, "height": 360}
    fwd(header, b"\x00\x00\x00\x01" + seq.to_bytes(4, "big"))


def _seqs(batch: list[tuple[str, bytes]]) -> list[tuple[str, int]]:
    return [(topic, decode_video(p)[0]["seq"]) for topic, p in batch]


def test_units_waiting_for_the_loop_go_in_one_hand_over_in_the_order_they_came() -> None:
    loop = asyncio.new_event_loop()
    batches: list[list[tuple[str, bytes]]] = []
    outbox = VideoOutbox(loop, batches.append)
    a, b = VideoForwarder(outbox, "cam-a", "main"), VideoForwarder(outbox, "cam-b", "sub")
    try:
        came = [(a, 1, True), (b, 1, True), (a, 2, False), (b, 2, False), (b, 3, False), (a, 3, False)]
        for fwd, seq, key in came:
            _unit(fwd, seq, key)
        assert outbox.wakeups == 1  # one wake-up of the loop for the six
        loop.run_until_complete(asyncio.sleep(0.01))
        assert [_seqs(batch) for batch in batches] == [[(f.topic, seq) for f, seq, _ in came]]
        assert (a.handed, a.sent, b.handed, b.sent) == (3, 3, 3, 3)
        # the loop is free again: the next unit has a hand-over of its own, it waits for no company
        _unit(b, 4, False)
        assert outbox.wakeups == 2
        loop.run_until_complete(asyncio.sleep(0.01))
        assert _seqs(batches[-1]) == [(b.topic, 4)] and len(batches) == 2
    finally:
        loop.close()


async def test_reader_threads_hand_over_in_order_and_a_stream_behind_resumes_at_a_keyframe() -> None:
    """Six streams' readers at once against a loop that publishes slowly now and then (a busy
    service): every stream's units arrive in order, a gap only ever ends at a keyframe,
    nothing is lost that was not counted as dropped, and units share hand-overs."""
    loop = asyncio.get_running_loop()
    got: list[tuple[str, bytes]] = []
    calls = 0

    def publish_many(batch: list[tuple[str, bytes]]) -> None:
        nonlocal calls
        calls += 1
        got.extend(batch)
        if calls % 7 == 0:
            time.sleep(0.02)  # the loop stalls: the readers get ahead of it

    outbox = VideoOutbox(loop, publish_many)
    forwarders = [VideoForwarder(outbox, f"cam-{i}", "main" if i % 2 else "sub") for i in range(6)]
    units = 300

    def reader(fwd: VideoForwarder) -> None:
        for seq in range(1, units + 1):
            _unit(fwd, seq, seq % 25 == 1)
            if seq % 3 == 0:
                time.sleep(0.0005)

    await asyncio.gather(*(asyncio.to_thread(reader, f) for f in forwarders))
    await asyncio.sleep(0.1)
    for fwd in forwarders:
        seqs = [seq for topic, seq in _seqs(got) if topic == fwd.topic]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(b == a + 1 or b % 25 == 1 for a, b in zip(seqs, seqs[1:])), seqs
        assert len(seqs) + fwd.dropped == units and fwd.handed == fwd.sent == len(seqs)
    assert sum(f.dropped for f in forwarders) > 0  # the stalls did put streams behind
    assert outbox.wakeups < len(got)


# -- end to end: rig -> ioc cameras -> broker -> a wall node's subscriber ---------------------

def _hevc_clip(path: Path) -> None:
    """Two seconds of moving H.265 (what many cameras stream, and browsers cannot decode)."""
    moving_clip(path, "libx265", options={"x265-params": "log-level=error"})


def moving_clip(path: Path, codec: str, pix_fmt: str = "yuv420p", options: dict[str, str] | None = None) -> None:
    """Two seconds of a bar moving over grey at 10 fps, 320x240, in `codec`."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=10, options=options or {})
        stream.width, stream.height, stream.pix_fmt = 320, 240, pix_fmt
        for i in range(20):
            img = np.full((240, 320, 3), 60, np.uint8)
            img[100:140, 10 + 14 * i:50 + 14 * i] = 250
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


async def test_demanded_cameras_stream_their_own_h264_and_stop_when_nobody_watches(
    tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str]
) -> None:
    await asyncio.to_thread(_run_video, tmp_path, broker, service_passwords)


def _run_video(tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str]) -> None:
    hevc = tmp_path / "hevc.mp4"
    _hevc_clip(hevc)
    mounts = [Mount("vid-main", "counter-1080p.mp4"), Mount("vid-sub", "counter-360p.mp4"),
              Mount("other", "counter-360p.mp4")]
    with RtspRig(mounts) as rig:
        registry = tmp_path / "cameras.toml"
        registry.write_text(
            f'[[camera]]\nid = "vid"\nname = "Video"\nmain_url = "{rig.url("vid-main")}"\nsub_url = "{rig.url("vid-sub")}"\n'
            f'[[camera]]\nid = "other"\nname = "Khác"\nmain_url = "{rig.url("other")}"\n'
            f'[[camera]]\nid = "hevc"\nname = "H.265"\nmain_url = "{hevc.as_uri()}"\n',
            encoding="utf-8")
        proc, log, wall = start_cameras(tmp_path, broker, service_passwords, registry, "cam-video-test")
        demand_topic = topics.wall_demand("test-node")
        try:

            def on(topic: str) -> list[Any]:
                return [m for m in list(wall.messages) if m.topic == topic]

            def status(cam: str) -> dict[str, Any]:
                found = on(topics.live_camera(cam, "status"))
                return orjson.loads(found[-1].payload) if found else {}

            def video(cam: str, stream: str) -> list[tuple[VideoHeader, bytes, float]]:
                return [(*_header_and_unit(m.payload), m.timestamp)
                        for m in on(topics.live_camera(cam, f"video/{stream}"))]  # type: ignore[arg-type]

            def video_count() -> int:
                return sum("/video/" in m.topic for m in list(wall.messages))

            tile = topics.live_camera("vid", "tile")
            wall.wait_for(lambda _: bool(on(tile)) and status("hevc").get("state") == "online", 30)
            time.sleep(1.0)
            assert video_count() == 0  # nobody watches yet: nothing travels

            # a wall node plays vid's sub-stream (small tile) and main stream (large tile), and hevc
            asked_at = time.monotonic()
            wall.publish(demand_topic, encode_demand(Demand(video_sub=frozenset({"vid", "hevc"}),
                                                            video_main=frozenset({"vid"})), time.time()), retain=True)
            wall.wait_for(lambda _: len(video("vid", "sub")) >= 75 and len(video("vid", "main")) >= 50, 30)
            sub = video("vid", "sub")
            main = video("vid", "main")
            # (the main stream's reader opened on demand: the rig gives a new client the latest
            # IDR at once, then plays on from the next one, so its first two pictures are apart)
            for units, (w, h), sps_codec, skip in ((sub, (640, 360), "avc1.4d401e", 0),
                                                   (main, (1920, 1080), "avc1.4d4028", 1)):
                heads = [u[0] for u in units]
                assert heads[0]["key"], heads[0]  # a decoder can start on the first unit it gets
                seqs = [hd["seq"] for hd in heads]
                assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
                assert all((hd["width"], hd["height"]) == (w, h) for hd in heads), heads[0]
                keys = [(hd, au) for hd, au, _ in units if hd["key"]]
                assert len(keys) >= 2  # a keyframe a second, each with its parameter sets
                for hd, au in keys:
                    sps = next(annexb_nals(au))
                    assert sps[0] & 0x1F == NAL_SPS and hd["codec"] == avc_codec_string(sps)
                if sps_codec:
                    assert heads[0]["codec"] == sps_codec
                numbers = _decode_numbers([au for _, au, _ in units])
                assert len(numbers) == len(units) and _consecutive(numbers[skip:]), numbers
                assert not skip or units[skip][0]["key"]
            # the first picture within one GOP (the rig's: 1 s) of asking, with room for a busy
            # machine (paho stamps messages with time.monotonic)
            assert sub[0][2] - asked_at < 1.0 + 3.0, sub[0][2] - asked_at

            # one RTSP session per stream: the tiles' reader is the sub-stream's video source
            mounts_now = rig.status()["mounts"]
            assert mounts_now["vid-sub"]["clients"] == 1 and mounts_now["vid-main"]["clients"] == 1
            # nobody asked for "other"; hevc cannot play in a browser: snapshots only
            assert not on(topics.live_camera("other", "video/main")) and not on(topics.live_camera("other", "video/sub"))
            assert not any(m.topic.startswith(topics.live_camera("hevc", "video/main")[:-5]) for m in wall.messages)
            assert status("hevc")["video"] is None and "snapshots only" in status("hevc")["video_reason"]
            assert "hevc" in status("hevc")["video_reason"] and status("hevc")["state"] == "online"
            assert status("vid")["video"] == "h264" and status("vid")["video_reason"] is None
            assert status("other")["video"] == "h264"

            # the node goes away (its will: an empty retained payload): video stops
            wall.publish(demand_topic, b"", retain=True)
            time.sleep(2.5)
            stopped_at = video_count()
            time.sleep(2.5)
            assert video_count() == stopped_at
            wall.wait_for(lambda _: rig.status()["mounts"]["vid-main"]["clients"] == 0, 15)  # main reader closed
            assert rig.status()["mounts"]["vid-sub"]["clients"] == 1  # the tiles go on reading

            # tiles and status went on all along
            seqs = [decode_tile(m.payload)[0]["seq"] for m in on(tile)]
            assert len(seqs) >= 10 and len(set(seqs)) == len(seqs)
            last = decode_tile(on(tile)[-1].payload)[0]
            assert time.time() - float(last["captured_at"]) < 5  # type: ignore[arg-type]
            assert status("vid")["state"] == "online" and status("vid")["healthy"] is True

            # asked again, video comes back, starting on a keyframe
            n_before = len(video("vid", "sub"))
            wall.publish(demand_topic, encode_demand(Demand(video_sub=frozenset({"vid"})), time.time()), retain=True)
            wall.wait_for(lambda _: len(video("vid", "sub")) >= n_before + 30, 20)
            again = video("vid", "sub")[n_before:]
            assert again[0][0]["key"] and _consecutive(_decode_numbers([au for _, au, _ in again]))
        finally:
            wall.publish(demand_topic, b"", retain=True)  # not left for other tests
            proc.terminate()
            proc.wait(10)
            log.close()
            wall.close()
        assert "password" not in (tmp_path / "cameras.log").read_text()


def start_cameras(tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str], registry: Path,
                  worker: str, **env_more: str) -> tuple[subprocess.Popen[bytes], IO[bytes], Client]:
    """`ioc cameras` on `registry` (its output in tmp_path/cameras.log), and a client of the
    broker with a wall node's account, subscribed to every camera's live topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_MQTT_URL": broker.url_for("svc-camera", service_passwords["svc-camera"]),
                "IOC_CAMERA_REGISTRY": str(registry), "PYTHONPATH": str(REPO),
                "IOC_CAMERA_WORKER_ID": worker, **env_more})
    log = open(tmp_path / "cameras.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "cameras"], env=env, cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
    wall = Client(broker.host, broker.service_port, "svc-api", service_passwords["svc-api"]).wait_connected()
    wall.subscribe("ioc/v1/live/camera/#", qos=0)
    return proc, log, wall


def _header_and_unit(payload: bytes) -> tuple[VideoHeader, bytes]:
    header, unit = decode_video(payload)
    return header, bytes(unit)


def test_a_camera_with_one_stream_answers_a_sub_stream_demand_with_it() -> None:
    """The hubs ask for the sub-stream for small tiles; a camera that has only a main stream
    forwards that one (the hubs play what flows), and one with both forwards what is asked."""
    from camera.service import CameraService
    from ioc.core.cameras import Camera
    from ioc.core.settings import MqttTarget

    only_main = Camera(id="one-stream", name="One", main_url="rtsp://127.0.0.1:9/main")
    both = Camera(id="two-streams", name="Two", main_url="rtsp://127.0.0.1:9/main", sub_url="rtsp://127.0.0.1:9/sub")
    service = CameraService([only_main, both], MqttTarget(host="127.0.0.1", port=9, username="u", password="p", tls=False))
    service._demand("node-a", encode_demand(Demand(video_sub=frozenset({"one-stream", "two-streams"})), 1.0))
    assert service._video_wanted(only_main, "main") is True
    assert service._video_wanted(both, "main") is False and service._video_wanted(both, "sub") is True
    service._demand("node-a", b"")  # the node's will: nothing wanted any more
    assert service._video_wanted(only_main, "main") is False


def test_a_sub_stream_with_short_gops_has_its_keyframes_alone_decoded() -> None:
    """A sub-stream is decoded whole until its keyframe interval is known; with keyframes at
    most SUB_KEYFRAMES_MAX_GOP_S apart only they reach the decoder (a tile a second and the
    health analysis need no more); a longer GOP is decoded whole again. The choice changes
    only at a keyframe, where a decoder can start without a missing reference."""
    from camera.capture import SUB_KEYFRAMES_MAX_GOP_S, CaptureThread

    sub = CaptureThread("kf-sub", "rtsp://127.0.0.1:9/sub", "sub-full")
    assert sub.decodes(True) and sub.decodes(False)  # GOP not known yet: every picture
    sub.keyframes.extend([100.0, 101.0, 102.0, 103.0])
    assert sub.decodes(False), "decided at a keyframe only"
    assert sub.decodes(True) and sub.keyframes_only
    assert not sub.decodes(False)
    sub.keyframes.extend([103.0 + SUB_KEYFRAMES_MAX_GOP_S + 1.5, 103.0 + 2 * (SUB_KEYFRAMES_MAX_GOP_S + 1.5),
                          103.0 + 3 * (SUB_KEYFRAMES_MAX_GOP_S + 1.5)])
    assert not sub.decodes(False), "still keyframes only until the next keyframe"
    assert sub.decodes(True) and not sub.keyframes_only
    assert sub.decodes(False)  # a long GOP: every picture, so tiles keep coming

    main = CaptureThread("kf-main", "rtsp://127.0.0.1:9/main", "main-keyframes")
    assert main.decodes(True) and not main.decodes(False)
    off = CaptureThread("kf-off", "rtsp://127.0.0.1:9/main", "main-keyframes", decode=False)
    assert not off.decodes(True)
