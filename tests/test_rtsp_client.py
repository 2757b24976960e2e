"""Our RTSP client (camera/rtsp_client.py) and the reader built on it (camera/rtp_reader.py)
against the RTSP rig's real GStreamer server, Digest authentication included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

import camera.capture as capture
from camera.rtsp_client import RtspError, RtspSession, UnsupportedCodec, parse_sdp
from ioc.core.contracts.video_frame import VideoHeader
from tests.rigs.rtsp.counter import decode_counter
from tests.rigs.rtsp.rig import Mount, RtspRig, check_setup, refused_url

USER, PASSWORD = "admin", "s3cr3t pass"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspRig]:
    check_setup()
    with RtspRig([Mount("cam", "counter-360p.mp4", auth=f"{USER}:{PASSWORD}")],
                 log_dir=tmp_path_factory.mktemp("rtsp")) as r:
        yield r


def _with(url: str, user: str, password: str) -> str:
    return url.replace("rtsp://", f"rtsp://{user}:{password.replace(' ', '%20')}@")


def test_digest_authentication_and_the_sdp(rig: RtspRig) -> None:
    session = RtspSession(_with(rig.url("cam"), USER, PASSWORD))
    try:
        track = session.open()
        assert (track.codec, track.packetization_mode, track.clock_rate) == ("H264", 1, 90000)
        assert [nal[0] & 0x1F for nal in track.parameter_sets] == [7, 8]  # SPS, PPS
        assert track.control.startswith(rig.url("cam"))
        assert session._auth is not None and session._auth.scheme == "digest"
        assert session.read(3.0) is not None
    finally:
        session.close()


def test_basic_authentication(tmp_path: Path) -> None:
    with RtspRig([Mount("cam", "counter-360p.mp4", auth=f"{USER}:{PASSWORD}", auth_scheme="basic")],
                 log_dir=tmp_path) as basic_rig:
        session = RtspSession(_with(basic_rig.url("cam"), USER, PASSWORD))
        try:
            session.open()
            assert session._auth is not None and session._auth.scheme == "basic"
            assert session.read(3.0) is not None
        finally:
            session.close()
        with pytest.raises(RtspError, match="401 Unauthorized: wrong user name or password"):
            RtspSession(_with(basic_rig.url("cam"), USER, "n0t-it")).open()


@pytest.mark.parametrize(("user", "password", "says"), [
    ("", "", "the camera wants a user name and password"),
    (USER, "n0t-it", "wrong user name or password"),
])
def test_refused_credentials_say_why(rig: RtspRig, user: str, password: str, says: str) -> None:
    url = _with(rig.url("cam"), user, password) if user else rig.url("cam")
    session = RtspSession(url)
    with pytest.raises(RtspError, match=f"DESCRIBE: 401 Unauthorized: {says}") as err:
        session.open()
    session.close()
    assert password not in str(err.value) or not password


def test_unknown_path_and_no_camera_say_why(rig: RtspRig) -> None:
    session = RtspSession(_with(rig.url("cam") + "-nope", USER, PASSWORD))
    with pytest.raises(RtspError, match="404 Not Found: no such stream path"):
        session.open()
    session.close()
    with pytest.raises(RtspError, match="cannot connect to 127.0.0.1:[0-9]+"):
        RtspSession(refused_url()).open()
    with pytest.raises(RtspError, match="not an rtsp:// URL"):
        RtspSession("http://127.0.0.1/x")


def test_keep_alive_within_the_session_timeout(rig: RtspRig) -> None:
    session = RtspSession(_with(rig.url("cam"), USER, PASSWORD))
    try:
        session.open()
        assert session.session_timeout_s == 60.0  # what GStreamer's server gives
        session.session_timeout_s = 1.0  # as a camera with a short timeout would say
        packets = 0
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            packets += session.read(1.0) is not None
        assert session.keepalives_answered >= 2 and packets > 50
    finally:
        session.close()


def test_sdp_the_reader_cannot_take(rig: RtspRig) -> None:
    session = RtspSession(_with(rig.url("cam"), USER, PASSWORD))
    try:
        session.open()
    finally:
        session.close()
    sdp, base = session.sdp, rig.url("cam")
    assert parse_sdp(sdp, base).payload_type == 96
    with pytest.raises(UnsupportedCodec, match="sends H265, not H.264"):
        parse_sdp(sdp.replace("H264/90000", "H265/90000"), base)
    with pytest.raises(UnsupportedCodec, match="MJPEG"):
        parse_sdp(sdp.replace("RTP/AVP 96", "RTP/AVP 26").replace("a=rtpmap:96", "a=x"), base)
    with pytest.raises(UnsupportedCodec, match="packetization-mode 2"):
        parse_sdp(sdp.replace("packetization-mode=1", "packetization-mode=2"), base)
    with pytest.raises(RtspError, match="no video track"):
        parse_sdp(sdp.replace("m=video", "m=audio"), base)
    with pytest.raises(RtspError, match="malformed fmtp"):
        parse_sdp(sdp.replace("sprop-parameter-sets=", "sprop-parameter-sets=%%,"), base)


@pytest.mark.parametrize("reader", ["own", "ffmpeg"])
def test_one_session_feeds_the_video_and_the_tiles(rig: RtspRig, reader: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The capture thread through either reader: every access unit forwarded in order (the
    burnt-in numbers follow each other), and the tiles decoded from the same session."""
    monkeypatch.setattr(capture, "RTSP_READER", reader)
    units: list[tuple[VideoHeader, bytes]] = []
    thread = capture.CaptureThread("cam", _with(rig.url("cam"), USER, PASSWORD), "sub-full")
    thread.want_video = True
    thread.on_video = lambda header, data: units.append((header, data))
    thread.start()
    try:
        end = time.monotonic() + 15
        while len(units) < 40 and time.monotonic() < end and thread.is_alive():
            time.sleep(0.2)
        frame = thread.latest
    finally:
        thread.stop()
        thread.join(10)
    assert thread.reader == reader and thread.video == "h264", thread.error
    assert len(units) >= 40 and units[0][0]["key"] and frame is not None
    assert [h["seq"] for h, _ in units] == list(range(units[0][0]["seq"], units[0][0]["seq"] + len(units)))
    decoder = av.CodecContext.create("h264", "r")
    numbers = [decode_counter(p.to_ndarray(format="gray")) for _, d in units for p in decoder.decode(av.Packet(d))]
    live = numbers[1:]  # the first: the IDR the rig held at DESCRIBE
    assert all(b == a + 1 or b == 0 for a, b in zip(live, live[1:])), numbers
    assert decode_counter(frame.image) in numbers


def test_own_reader_says_why_it_could_not_open(rig: RtspRig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture, "RTSP_READER", "own")
    thread = capture.CaptureThread("cam", _with(rig.url("cam"), USER, "wrong"), "sub-full", open_timeout_s=3)
    thread.start()
    thread.join(10)
    assert thread.error == "the stream did not open: DESCRIBE: 401 Unauthorized: wrong user name or password"
