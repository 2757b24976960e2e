"""The contracts between processes are defined once (ioc.core.contracts) and round-trip.

The topic-literal check reads the shipped code (the services, the core, the extras, the
pages, docker/ and bench/); tests are left out on purpose: they state the wire format
independently, so that a changed topic fails them instead of being followed silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.code_strings import code_strings
from ioc.core.contracts import camera, kpi, tile_frame, topics, video_frame, wall, wall_frames
from ioc.core.contracts.camera import CameraStatus

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["ioc", "ingest", "camera", "dashboards", "docker", "bench"]
TOPICS_MODULE = REPO / "ioc/core/contracts/topics.py"
TOPIC_TEXT = re.compile(r"ioc/v1\b|v1/devices/")


def topic_literals_in_python(path: Path, root: Path = REPO) -> list[str]:
    """Where a string in code (not a docstring or comment) spells out a topic."""
    return [f"{path.relative_to(root)}:{line}: {value[:80]!r}"
            for line, value in code_strings(path) if TOPIC_TEXT.search(value)]


def defined_topics() -> set[str]:
    return {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}


def test_no_topic_literal_outside_the_contracts() -> None:
    offenders: list[str] = []
    for top in SHIPPED:
        for path in sorted((REPO / top).rglob("*")):
            if not path.is_file() or path == TOPICS_MODULE or "__pycache__" in path.parts:
                continue
            if path.suffix == ".py":
                offenders += topic_literals_in_python(path)
            elif path.suffix in (".js", ".html", ".sh", ".yaml", ".yml", ".toml", ".conf") or path.name == "Dockerfile":
                # non-Python files cannot import the module: they may name only a topic it defines
                for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    for used in re.findall(r"ioc/v1/[A-Za-z0-9_/+#-]*", line):
                        if used not in defined_topics():
                            offenders.append(f"{path.relative_to(REPO)}:{n}: {used!r}")
    assert not offenders, "topic spelled out outside ioc.core.contracts.topics:\n" + "\n".join(offenders)


def test_the_literal_check_finds_a_topic(tmp_path: Path) -> None:
    """The check itself: an f-string or bytes topic in code is found, a docstring is not."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""Publishes on ioc/v1/kpi/<agency>."""\nT = f"ioc/v1/live/kpi/{1}"\nB = b"ioc/v1/ack/x"\n')
    found = sorted(topic_literals_in_python(bad, tmp_path))
    assert [f.split(":")[1] for f in found] == ["2", "3"]


def test_topic_builders_and_parsers_agree() -> None:
    assert topics.agency_of_kpi_topic(topics.kpi("tthc")) == "tthc"
    assert topics.agency_of_kpi_topic(topics.kpi("tthc") + "/x") is None
    assert topics.agency_of_kpi_topic(topics.ack("tthc")) is None
    assert topics.parse_live_kpi(topics.live_kpi("tthc.dossiers_received", "347")) == ("tthc.dossiers_received", "347")
    for channel in topics.CAMERA_CHANNELS:
        assert topics.parse_live_camera(topics.live_camera("pl-01", channel)) == ("pl-01", channel)
    assert topics.parse_live_camera(topics.live_kpi("a", "b")) is None
    assert topics.parse_camera_reference(topics.camera_reference("pl-03")) == "pl-03"
    assert topics.parse_wall_demand(topics.wall_demand("node-1")) == "node-1"
    assert topics.shared("ioc-ingest", topics.KPI_ALL) == "$share/ioc-ingest/" + topics.KPI_ALL


def test_tile_frame_round_trip_and_refusals() -> None:
    head: tile_frame.TileHeader = {"camera": "pl-01", "seq": 7, "captured_at": 1.5, "width": 640, "height": 360,
                                   "variant": "sd"}
    payload = tile_frame.encode_tile(head, b"\xff\xd8jpeg")
    got, jpeg = tile_frame.decode_tile(bytearray(payload))
    assert got == head and jpeg == b"\xff\xd8jpeg"
    for bad in (b"", b"IOCT", b"JPEG" + payload[4:], payload[:8], b"IOCT\x00\x03abc"):
        with pytest.raises(ValueError):
            tile_frame.decode_tile(bad)


def test_wall_picture_frame_round_trip() -> None:
    frame = wall_frames.picture_frame("cam-main", "pl-02", {"seq": 3, "captured_at": 2.0, "width": 1920,
                                                            "height": 1080}, b"jpeg")
    head, jpeg = wall_frames.parse_picture_frame(frame)
    assert head["tile"] == "cam-main" and head["camera"] == "pl-02" and head["seq"] == 3 and jpeg == b"jpeg"
    with pytest.raises(ValueError):
        wall_frames.parse_picture_frame(frame[:7])


def test_camera_status_event_and_command() -> None:
    status = CameraStatus("pl-01", state="online", flags={"black": True, "frozen": False})
    doc = camera.decode_status(camera.encode_status(status))
    assert doc["camera"] == "pl-01" and doc["healthy"] is False and status.faults() == {"black"}
    assert CameraStatus("x", state="offline").faults() == {"offline"}
    assert CameraStatus("x").faults() == set()
    # the status says whether the camera's video plays live, or why the wall shows snapshots
    assert doc["video"] is None and doc["video_reason"] is None
    snapshots = CameraStatus("x", state="online", video_reason="hevc: not playable in browsers, snapshots only")
    doc = camera.decode_status(camera.encode_status(snapshots))
    assert doc["video"] is None and "snapshots only" in doc["video_reason"]
    assert camera.decode_status(camera.encode_status(CameraStatus("y", video="h264")))["video"] == "h264"
    event = camera.decode_event(camera.encode_event("pl-01", "black", "started", 10.0, "too dark"))
    assert event == {"camera": "pl-01", "kind": "black", "state": "started", "at": 10.0, "reason": "too dark"}
    assert camera.decode_reference_command(camera.encode_reference_command("op-lan")) == "op-lan"
    assert camera.decode_presence(camera.encode_presence(True, ["a"])) == {"state": "online", "cameras": ["a"]}
    for bad in (b"[]", b'{"state": "online"}', b"{"):
        with pytest.raises(ValueError):
            camera.decode_status(bad)


def test_live_kpi_and_ack() -> None:
    live = kpi.decode_live(kpi.encode_live("aqi", "347", 1.0, 82.5, 0, "stnmt", 2.0))
    assert live["value"] == 82.5 and live["area"] == "347"
    for bad in (b'{"kpi": "aqi", "area": "347", "value": "x"}', b'{"kpi": "aqi", "area": "347", "value": true}',
                b'{"kpi": "aqi", "value": 1}', b"nope"):
        with pytest.raises(ValueError):
            kpi.decode_live(bad)
    ack = kpi.decode_ack(kpi.encode_ack("partial", [{"index": 1, "reason": "unknown kpi"}], accepted=1, msg_id="m"))
    assert ack["rejected_count"] == 1 and ack["accepted"] == 1 and ack["msg_id"] == "m"


def test_result_topics_and_rows() -> None:
    """The per-reading answer to a message that asked for one (the HTTP endpoint's path)."""
    assert topics.parse_result(topics.result("stnmt", "abc123")) == ("stnmt", "abc123")
    for bad in ("ioc/v1/result/stnmt", "ioc/v1/result/stnmt/a/b", "ioc/v1/result/+/x", "ioc/v1/ack/stnmt", "ioc/v1/result//x"):
        assert topics.parse_result(bad) is None
    rows: list[kpi.RowResult] = [{"index": 0, "kpi": "aqi", "area": "347", "msg_id": None, "status": "accepted"},
                                 {"index": 1, "kpi": "x", "area": "347", "msg_id": None, "status": "refused",
                                  "reason": "unknown kpi 'x'"}]
    doc = kpi.decode_result(kpi.encode_result("abc123", 1.5, rows))
    assert doc == {"request": "abc123", "received_at": 1.5, "results": rows}
    for bad in (b"[]", b'{"request": "a"}', b'{"request": "a", "results": [{"status": "maybe"}]}'):
        with pytest.raises(ValueError):
            kpi.decode_result(bad)
    # under the broker's packet limit whatever the rows: slimmed first, then cut and said so
    long_rows: list[kpi.RowResult] = [{"index": i, "kpi": "k" * 100, "area": "a" * 100, "msg_id": "m" * 128,
                                       "status": "refused", "reason": "r" * 1000} for i in range(14000)]
    body = kpi.encode_result("abc", 1.0, long_rows)
    doc = kpi.decode_result(body)
    assert len(body) <= kpi.MAX_RESULT_BYTES and doc["truncated"] is True
    assert doc["results"][0] == {"index": 0, "status": "refused", "reason": "r" * 120}
    slim = kpi.decode_result(kpi.encode_result("abc", 1.0, long_rows[:8000]))
    assert "truncated" not in slim and len(slim["results"]) == 8000 and "kpi" not in slim["results"][0]


def test_video_frame_round_trip_and_codec_string() -> None:
    head: video_frame.VideoHeader = {"camera": "pl-01", "stream": "main", "seq": 1, "captured_at": 2.5, "key": True,
                                     "codec": "avc1.64001f", "width": 1920, "height": 1080}
    au = b"\x00\x00\x00\x01\x67\x64\x00\x1f" + b"\x00\x00\x00\x01\x65data"
    got, body = video_frame.decode_video(video_frame.encode_video(head, au))
    assert got == head and bytes(body) == au
    assert video_frame.avc_codec_string(au[:8]) == "avc1.64001f"
    assert video_frame.avc_codec_string(b"\x67\x42\xc0\x1e") == "avc1.42c01e"
    for bad in (b"IOCT" + au, b"IOCV\x00\x02{}", video_frame.encode_video({**head, "stream": "hd"}, au)):  # type: ignore[typeddict-item]
        with pytest.raises(ValueError):
            video_frame.decode_video(bad)
    with pytest.raises(ValueError):
        video_frame.avc_codec_string(b"\x00\x00\x01\x68\xce")  # a PPS


def test_wall_state_alerts_demand() -> None:
    state = wall.WallState("overview", 4, 12.5, {"cam-a": "pl-02"})
    got, doc = wall.decode_state(wall.encode_state(state, {"id": "overview"}))
    assert got == state and doc == {"id": "overview"}
    replaying = wall.WallState("overview", 5, 13.0, {}, wall.Replay(1000.0, 20.0, 4.0, False, "op"))
    assert wall.decode_state(wall.encode_state(replaying, None))[0] == replaying
    assert replaying.replay is not None and replaying.replay.position(22.5) == 1010.0
    assert replaying.replay.position(19.0) == 1000.0  # before it starts: its first instant
    assert wall.decode_alerts(wall.encode_alerts([{"id": 1}])) == [{"id": 1}]
    demand = wall.Demand(hd=frozenset({"b", "a"}), video_sub=frozenset({"c"}))
    assert wall.decode_demand(wall.encode_demand(demand, 1.0)) == demand
    assert wall.encode_demand(wall.Demand(), 1.0) == b"" and wall.decode_demand(b"") == wall.Demand()
    assert wall.decode_demand(b'{"hd": ["x"], "at": 1}') == wall.Demand(hd=frozenset({"x"}))  # an older node
