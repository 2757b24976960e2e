"""The RTSP camera rig is real: OpenCV (FFmpeg backend) reads its H.264 cameras and faults.

Needs ``sudo bash tests/rigs/rtsp/setup.sh`` (Debian packages + media) and
``opencv-python-headless``.  Besides pass/fail it prints figures (CPU, open time, latency,
stall and kill behaviour) at the end of the module, also under ``-q``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.rigs.rtsp.counter import CounterError, decode_counter, draw_counter
from tests.rigs.rtsp.probe import Frame, RtspError, RtspProbe
from tests.rigs.rtsp.rig import BlackHole, CameraFleet, Mount, RtspRig, check_setup, refused_url

import camera  # noqa: F401,E402 - sets OPENCV_FFMPEG_IS_THREAD_SAFE before the first open here

try:
    import cv2
except ImportError:  # pragma: no cover - a clear failure, not a silent skip
    cv2 = None

REPO = Path(__file__).resolve().parents[1]
TCP = "rtsp_transport;tcp"
# FFmpeg's stream probing makes an open take ~2 s; without it ~0.1-0.5 s (the first keyframe).
# OpenCV serialises opens (see test_opencv_serialises_opens_not_reads), so it adds up.
FAST_OPEN = TCP + "|analyzeduration;0|probesize;32|fpsprobesize;0"
_OPEN_LOCK = threading.Lock()
FIGURES: list[str] = []


def figure(line: str) -> None:
    FIGURES.append(line)


@pytest.fixture(scope="module", autouse=True)
def _print_figures(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capman is None or not FIGURES:
        return
    with capman.global_and_fixture_disabled():  # shown under -q too
        reporter.write_line("")
        reporter.write_line("RTSP rig figures:")
        for line in FIGURES:
            reporter.write_line(f"  {line}")


@pytest.fixture(scope="module")
def cv() -> Iterator[Any]:
    if cv2 is None:
        pytest.fail("opencv-python-headless is not installed: pip install opencv-python-headless", pytrace=False)
    old = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = TCP  # read by OpenCV at each open
    yield cv2
    if old is None:
        os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
    else:
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = old


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspRig]:
    check_setup()  # RigSetupError says to run setup.sh
    r = RtspRig(log_dir=tmp_path_factory.mktemp("rtsp"))  # stall: 3 s
    r.start()
    yield r
    r.stop()


def open_capture(url: str, *, open_ms: int = 5000, read_ms: int = 5000, threads: int = 0,
                 options: str = TCP, must_open: bool = True) -> Any:
    """cv2.VideoCapture as the camera service opens it; ``options`` is
    OPENCV_FFMPEG_CAPTURE_OPTIONS, which OpenCV reads at each open (hence the lock)."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms]
    if threads:
        params += [cv2.CAP_PROP_N_THREADS, threads]
    with _OPEN_LOCK:
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = options
        try:
            cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = TCP
    if must_open:
        assert cap.isOpened(), f"OpenCV could not open {url}"
    return cap


# -- recordings of the healthy and faulty streams, made in parallel -----------------------

@dataclass
class Recording:
    """Per-frame statistics of a few seconds of one stream, read as the camera service will."""

    name: str
    open_s: float = 0.0
    t: list[float] = field(default_factory=list)  # when read() returned
    shape: list[tuple[int, ...]] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    change: list[float] = field(default_factory=list)  # mean |diff| to the previous frame (grey, 160x90)
    sharpness: list[float] = field(default_factory=list)  # variance of the Laplacian
    counter: list[int | None] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    error: str | None = None

    def fps(self, skip_s: float = 1.0) -> float:
        """Frames per second after the first ``skip_s`` (the open leaves a burst of buffered frames)."""
        t = np.array(self.t)
        t = t[t >= t[0] + skip_s]
        return (len(t) - 1) / (t[-1] - t[0])


# the streets are opened exactly as the issue says; the rest with FAST_OPEN, to save time
RECORDED = {"street-360p": TCP, "street-720p": TCP, "street-1080p": TCP, "black-360p": FAST_OPEN,
            "frozen-360p": FAST_OPEN, "blurred-360p": FAST_OPEN, "counter-360p": FAST_OPEN,
            "counter-1080p": FAST_OPEN}


def _record(rig: RtspRig, name: str, seconds: float, rec: Recording) -> None:
    _record_once(rig, name, seconds, rec)
    if rec.error is not None and not rec.t:
        # seen once in CI: the last of the eight queued opens succeeded and its first read
        # failed; a stream that really is broken fails the second open too
        FIGURES.append(f"{name}: first capture gave no frame ({rec.error}); opened again")
        rec.error = None
        _record_once(rig, name, seconds, rec)


def _record_once(rig: RtspRig, name: str, seconds: float, rec: Recording) -> None:
    try:
        t0 = time.monotonic()
        cap = open_capture(rig.url(name), options=RECORDED[name])
        rec.open_s = time.monotonic() - t0
        prev = None
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r0 = time.monotonic()
            ok, frame = cap.read()
            now = time.monotonic()
            if not ok:
                rec.error = (f"read() failed after {len(rec.t)} frames (the read took {now - r0:.2f} s, "
                             f"open {rec.open_s:.2f} s)")
                break
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            small = cv2.resize(grey, (160, 90), interpolation=cv2.INTER_AREA).astype(np.float32)
            rec.t.append(now)
            rec.shape.append(frame.shape)
            rec.mean.append(float(frame.mean()))
            rec.change.append(float(np.abs(small - prev).mean()) if prev is not None else float("nan"))
            rec.sharpness.append(float(cv2.Laplacian(grey, cv2.CV_64F).var()))
            prev = small
            if name.startswith("counter"):
                try:
                    idx = decode_counter(frame)
                    rec.counter.append(idx)
                    rec.latency.append(now - rig.sent_time(name, idx, at=now))
                except (CounterError, ValueError):
                    rec.counter.append(None)
        cap.release()
    except Exception as exc:  # reported by the tests that use it
        rec.error = f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="module")
def recordings(rig: RtspRig, cv: Any) -> dict[str, Recording]:
    recs = {n: Recording(n) for n in RECORDED}
    threads = [threading.Thread(target=_record, args=(rig, n, 5.5, recs[n])) for n in RECORDED]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r in recs.values():
        assert r.error is None, f"{r.name}: {r.error}\n{rig.log_text()[-2000:]}"
    opens = {n: f"{r.open_s:.2f}" for n, r in recs.items()}
    figure(f"OpenCV open, 8 captures opened at once from threads (they queue): {opens}")
    return recs


def test_counter_pattern_round_trip() -> None:
    frame = np.full((360, 640, 3), 90, np.uint8)
    for idx in (0, 1, 2, 1494, 0x5A5A, 65535):
        assert decode_counter(draw_counter(frame, idx)) == idx
        assert decode_counter(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if cv2 else frame[..., 0]) == idx
    with pytest.raises(CounterError):
        decode_counter(np.full((360, 640, 3), 90, np.uint8))  # no pattern
    damaged = draw_counter(frame.copy(), 1234)
    damaged[32:64, 0:32] = 255 - damaged[32:64, 0:32]  # complement row no longer matches
    with pytest.raises(CounterError):
        decode_counter(damaged)


def test_server_streams_start_at_a_keyframe_in_real_time(rig: RtspRig) -> None:
    with RtspProbe(rig.url("street-360p")) as probe:
        frames = probe.read_frames(2.5)
        assert "H264/90000" in probe.sdp and "sprop-parameter-sets" in probe.sdp
    assert frames and frames[0].keyframe, f"first NAL units {frames[0].nal_types if frames else None}"
    assert 7 in frames[0].nal_types and 8 in frames[0].nal_types  # SPS/PPS in-band before the IDR
    # the first fresh keyframe follows within one GOP; from then on 25 fps, paced, RTP +3600
    live = frames[1:]
    assert live[0].keyframe
    gaps = np.diff([f.arrival for f in live])
    ts_steps = np.diff([f.rtp_ts for f in live]) % (1 << 32)
    assert 0.035 < float(np.median(gaps)) < 0.045, gaps
    assert set(ts_steps.tolist()) == {3600}
    keys = [i for i, f in enumerate(live) if f.keyframe]
    assert set(np.diff(keys).tolist()) <= {25}, keys
    first_wait = frames[1].arrival - frames[0].arrival
    figure(f"probe: first frame = the latest IDR at once, next IDR after {first_wait:.2f} s, "
           f"then {1 / float(np.median(gaps)):.1f} fps")


def test_street_360p(recordings: dict[str, Recording]) -> None:
    r = recordings["street-360p"]
    assert set(r.shape) == {(360, 640, 3)}
    assert 23.5 <= r.fps() <= 26.5, r.fps()
    change = np.array(r.change[1:])
    # walking people: every frame differs from the last by > 0.05 grey level on average (the least
    # where the footage turns round); a frozen picture stays < 0.02, see test_frozen_after_three_seconds
    assert np.median(change) > 0.2 and change.min() > 0.05, "the street must move"
    figure(f"street-360p: {r.fps():.2f} fps read, median change {np.median(change):.2f} grey levels/frame")


@pytest.mark.parametrize("name,shape", [("street-720p", (720, 1280, 3)), ("street-1080p", (1080, 1920, 3))])
def test_street_sizes(recordings: dict[str, Recording], name: str, shape: tuple[int, int, int]) -> None:
    r = recordings[name]
    assert set(r.shape) == {shape}
    # eight captures decode at once on two cores: a 1080p reader can fall a few hundred ms
    # behind and catch up inside the window, which reads as up to ~30 fps; a server sending as
    # fast as it can is far above that (hundreds). Below 25, a reader on a busy machine (a CI box, load
    # 5-30) decodes 1080p slower than it arrives (seen: 12 fps): a reader's rate cannot tell
    # a slow reader from a slow server there, so the band below catches a stall or a flood
    assert 8.0 <= r.fps() <= 40.0, r.fps()


def test_black(recordings: dict[str, Recording]) -> None:
    r = recordings["black-360p"]
    assert len(r.mean) > 100 and max(r.mean) < 1.0, max(r.mean)


def test_frozen_after_three_seconds(recordings: dict[str, Recording]) -> None:
    # per-client timeline: the n-th frame read is file frame n (0: the IDR sent at DESCRIBE)
    r = recordings["frozen-360p"]
    change = np.array(r.change)
    assert len(change) > 120  # 75 moving + at least 45 still
    assert np.nanmax(change[1:75]) > 0.3 and np.nanmedian(change[1:75]) > 0.2, "the first 3 s move"
    still = change[76:]
    # a repeated picture still decodes to tiny differences: each new IDR (1/s) requantises it
    assert still.max() < 0.05, still.max()
    figure(f"frozen-360p: change {np.nanmedian(change[1:75]):.2f} while moving, max {still.max():.3f} when frozen")


def test_blurred(recordings: dict[str, Recording]) -> None:
    sharp = np.median(recordings["street-360p"].sharpness)
    blurred = np.median(recordings["blurred-360p"].sharpness)
    assert blurred < sharp / 10, (sharp, blurred)
    assert np.median(recordings["blurred-360p"].change[1:]) > 0.02  # blurred, not frozen
    figure(f"Laplacian variance: street-360p {sharp:.0f}, blurred-360p {blurred:.1f}")


@pytest.mark.parametrize("name", ["counter-360p", "counter-1080p"])
def test_counter_increments_by_one(recordings: dict[str, Recording], rig: RtspRig, name: str) -> None:
    r = recordings[name]
    n = rig.ready["mounts"][name]["frames"]
    assert None not in r.counter, "every frame carries a readable counter"
    values = np.array(r.counter)
    # frame 0 is the IDR sent at DESCRIBE; from the fresh IDR on, every frame is the next one
    assert values[1] % 25 == 0
    steps = np.diff(values[1:]) % n
    assert steps.tolist() == [1] * len(steps), steps
    lat = np.array(r.latency[2:]) * 1000
    figure(f"{name}: latency server send -> read() returns: median {np.median(lat):.0f} ms, "
           f"p95 {np.percentile(lat, 95):.0f} ms (OpenCV default threads)")
    # a reader that keeps up sees the frame within 500 ms; one on a busy machine decoding
    # slower than 25 fps falls behind by however long the window is (seen: 1.8 s at load 7):
    # then the frames must still be the next ones (above) and its delay must not exceed what
    # falling behind over the window explains (a server holding frames back would)
    # behind: reading slower than 25 fps, or its delay grew over the window (a server holding
    # frames back delays them all alike; a reader that cannot keep up drifts later and later)
    behind = r.fps() < 22.5 or float(np.median(lat[-10:]) - np.median(lat[:10])) > 100
    assert np.median(lat) < (500 if not behind else 1000 * (r.t[-1] - r.t[0] + 1.0)), (np.median(lat), r.fps())


# -- stall: frames stop, connection stays --------------------------------------------------

def _stall_reads(url: str, threads: int, read_ms: int, out: dict[str, Any]) -> None:
    try:
        cap = open_capture(url, read_ms=read_ms, threads=threads)
        out["threads"] = cap.get(cv2.CAP_PROP_N_THREADS)
        t_open = time.monotonic()
        last, reads = None, []
        while len(reads) < 12 and time.monotonic() - t_open < 20:
            t1 = time.monotonic()
            ok, frame = cap.read()
            dt = time.monotonic() - t1
            value = decode_counter(frame) if ok else None
            if dt > 0.2 or not ok:
                reads.append({"at": round(t1 - t_open, 2), "took": round(dt, 3), "ok": ok,
                              "counter": value, "previous": last})
                if sum(1 for x in reads if not x["ok"]) >= 2:
                    break
            if ok:
                last = value
        out["reads"] = reads
        cap.release()
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"


def test_stall_keeps_connection_and_read_times_out(rig: RtspRig, cv: Any) -> None:
    read_ms = 1500
    results: dict[int, dict[str, Any]] = {1: {}, 0: {}}
    threads = [threading.Thread(target=_stall_reads, args=(rig.url("stall"), th, read_ms, results[th]))
               for th in results]
    for t in threads:
        t.start()
    # a raw client alongside: no frames after the stall, but no hang-up either
    with RtspProbe(rig.url("stall")) as probe:
        frames = probe.read_frames(3.0 + 1.5)
        quiet = probe.next_frame(3.0)
        assert quiet is None and not probe.closed_by_server
        stalled_status = rig.status()["mounts"]["stall"]
    for t in threads:
        t.join(40)
    span = frames[-1].arrival - frames[1].arrival
    assert 2.8 < span < 3.3, span  # ~3 s of live frames, then none
    assert stalled_status["clients"] >= 1 and stalled_status["live_clients"] >= 1
    for th, res in results.items():
        assert "error" not in res, res
        reads = res["reads"]
        slow = [x for x in reads if x["took"] > 0.2]
        assert all(read_ms / 1000 - 0.1 < x["took"] < read_ms / 1000 + 1.5 for x in slow), reads
        fails = [i for i, x in enumerate(reads) if not x["ok"]]
        assert fails, reads
        late = reads[: fails[0]]  # True after a timeout: frames that had arrived, held back
        for x in late:
            assert x["counter"] == x["previous"] + 1, f"not an old frame repeated: {x}"
        assert len(late) <= 2
        assert all(not x["ok"] for x in reads[fails[0]:]), "once failed, it stays failed"
        figure(f"stall, CAP_PROP_N_THREADS={res['threads']:.0f}, read timeout {read_ms} ms: "
               f"{len(late)} read(s) block {late[0]['took'] if late else 0:.2f} s and return True with "
               f"the next (held-back, not repeated) frame, then every read blocks "
               f"{reads[fails[0]]['took']:.2f} s and returns False")


def test_stall_and_resume_by_command(rig: RtspRig, cv: Any) -> None:
    cap = open_capture(rig.url("counter-360p"), options=FAST_OPEN, read_ms=500)
    cv_reads: list[tuple[float, bool]] = []
    stop = threading.Event()

    def read_cv() -> None:
        while not stop.is_set():
            ok, _ = cap.read()
            cv_reads.append((time.monotonic(), ok))

    reader = threading.Thread(target=read_cv)
    reader.start()
    with RtspProbe(rig.url("counter-360p")) as probe:
        before = probe.read_frames(1.2)
        rig.stall("counter-360p")
        t_stall = time.monotonic()
        during = probe.read_frames(2.0)
        assert rig.status()["mounts"]["counter-360p"]["clients"] >= 2
        rig.resume("counter-360p")
        t_resume = time.monotonic()
        after = probe.read_frames(1.3)
    stop.set()
    reader.join(5)
    cap.release()
    assert before and after
    assert all(f.arrival < t_stall + 0.1 for f in during), "nothing after the stall (one may be in flight)"
    # the frames missed were references: the stream goes on from the next keyframe, within 1 s
    assert after[0].keyframe and after[0].arrival - t_resume < 1.1
    assert len(after) >= 5
    # OpenCV: read() failed during the stall, and the capture stays failed when frames flow again
    first_fail = next(t for t, ok in cv_reads if not ok)
    assert t_stall < first_fail < t_resume
    assert not any(ok for t, ok in cv_reads if t > first_fail)
    figure(f"stall by command: OpenCV read() False {first_fail - t_stall:.2f} s into the stall "
           f"(read timeout 0.5 s); after resume it stays False ({sum(1 for t, _ in cv_reads if t > t_resume)} "
           f"reads): reopen after a failed read")


# -- kill: the server dies mid-stream, and comes back on the same port ------------------------

def test_kill_mid_stream_and_restart(cv: Any, tmp_path: Path) -> None:
    with RtspRig([Mount("street-360p", "street-360p.mp4")], log_dir=tmp_path) as rig:
        port = rig.port
        cap = open_capture(rig.url("street-360p"))
        t_read = time.monotonic()
        while time.monotonic() - t_read < 1.5:  # past the burst the open leaves buffered: live
            assert cap.read()[0]
        probe = RtspProbe(rig.url("street-360p"))
        probe.play()
        assert probe.next_frame(2.0) is not None
        t_kill = time.monotonic()
        rig.kill()
        reads = []
        for _ in range(6):
            t1 = time.monotonic()
            ok, _frame = cap.read()
            reads.append((round(t1 - t_kill, 3), round(time.monotonic() - t1, 3), ok))
            if not ok:
                break
        fail_after = reads[-1][0] + reads[-1][1]
        assert not reads[-1][2] and fail_after < 5.0, reads
        with pytest.raises(RtspError):
            while probe.next_frame(2.0) is not None:
                pass
        probe.close()

        t_restart = time.monotonic()
        rig.restart()
        assert rig.port == port
        cap2 = open_capture(rig.url("street-360p"))
        ok, frame = cap2.read()
        assert ok and frame.shape == (360, 640, 3)
        back = time.monotonic() - t_restart
        assert not cap.read()[0], "the old capture does not come back by itself"
        cap.release()
        cap2.release()
    figure(f"kill -9: read() returned True {sum(r[2] for r in reads)} more time(s) (frames held back), "
           f"then False {fail_after * 1000:.0f} ms after the kill; old capture stays dead; "
           f"restart on the same port + new capture reading in {back:.2f} s")


# -- a fleet: one stalled or dead camera does not delay the others; server CPU ----------------

def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_fleet_server_cpu_and_isolation(tmp_path: Path) -> None:
    with CameraFleet(10, "street-1080p.mp4", log_dir=tmp_path) as fleet:
        assert fleet.names[0] == "cam01" and fleet.names[-1] == "cam10"
        probes = {n: RtspProbe(fleet.url(n)) for n in fleet}
        for p in probes.values():
            p.play()
        frames: dict[str, list[Frame]] = {n: [] for n in fleet}
        stop = threading.Event()
        errors: list[str] = []

        def pump(name: str) -> None:
            try:
                while not stop.is_set():
                    f = probes[name].next_frame(0.5)
                    if f is not None:
                        frames[name].append(f)
            except RtspError as exc:
                errors.append(f"{name}: {exc}")

        threads = [threading.Thread(target=pump, args=(n,), daemon=True) for n in fleet]
        for t in threads:
            t.start()
        time.sleep(1.5)  # everyone past its first keyframe
        pid = fleet.pids()[0]
        c0, t0 = _proc_cpu_seconds(pid), time.monotonic()
        counts0 = {n: len(v) for n, v in frames.items()}
        time.sleep(8.0)
        wall = time.monotonic() - t0
        cpu_pct = 100 * (_proc_cpu_seconds(pid) - c0) / wall
        fps = {n: (len(frames[n]) - counts0[n]) / wall for n in fleet}
        # the stream runs in real time (25 fps on a quiet box; figures above): a busy CI box
        # slows the clients' reads, not the server, so only a stream that stalls fails here
        assert min(fps.values()) > 15, fps
        figure(f"server CPU, 10 x 1080p25 cameras, 1 client each (no re-encoding): {cpu_pct:.1f}% of one core "
               f"(clients got {min(fps.values()):.1f}-{max(fps.values()):.1f} fps)")

        # cam03 hangs, cam05 goes away: the other eight keep their 25 fps with no gap
        t_fault = time.monotonic()
        fleet.stall("cam03")
        fleet.offline("cam05")
        time.sleep(2.0)
        t_end = time.monotonic()
        stop.set()
        for t in threads:
            t.join(5)
        for p in probes.values():
            p.close()
        for n in fleet:
            window = [f.arrival for f in frames[n] if f.arrival > t_fault]
            if n == "cam03":
                assert len(window) <= 2
            elif n == "cam05":
                assert len(window) <= 2
            else:
                gaps = np.diff([t_fault, *window, t_end])
                # isolation, not speed: a fault that reached the other streams would stop them
                # for its whole 2 s; a busy CI box only slows the clients' reads (44 frames and a
                # 0.3 s gap were seen there)
                assert len(window) >= 30 and gaps.max() < 1.0, (n, len(window), gaps.max())
        assert errors == ["cam05: connection closed by the server"], errors
        assert cpu_pct < 60


# -- client CPU: what decoding costs the camera service ----------------------------------------

def test_client_cpu(rig: RtspRig) -> None:
    runs = [  # FAST_OPEN changes the open, not the decoding
        ("1080p25, all frames", "street-1080p", FAST_OPEN, 0),
        ("1080p25, all frames, 1 thread", "street-1080p", FAST_OPEN, 1),
        ("1080p25, keyframes only (avdiscard;nonkey)", "street-1080p", FAST_OPEN + "|avdiscard;nonkey", 0),
        ("360p25, all frames", "street-360p", FAST_OPEN, 0),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = {}
    for label, name, options, threads in runs:
        cmd = [sys.executable, "-m", "tests.rigs.rtsp.cv_measure", rig.url(name), "--options", options,
               "--seconds", "3", "--warmup", "1"]
        if threads:
            cmd += ["--threads", str(threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
        assert res.returncode == 0, res.stderr[-2000:]
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert out["opened"] and out["frames"] > 0, out
        results[label] = out
        figure(f"OpenCV client {label}: {out['cpu_pct']:.1f}% of one core at {out['fps']:.1f} fps "
               f"(open {out['open_s']:.2f} s, {out['threads']:.0f} decoder threads)")
    assert results["1080p25, all frames"]["fps"] > 15  # 25 on a quiet box (printed above); decoding is CPU-bound
    assert results["1080p25, keyframes only (avdiscard;nonkey)"]["fps"] < 2
    assert results["360p25, all frames"]["shape"] == [360, 640, 3]
    assert (results["1080p25, keyframes only (avdiscard;nonkey)"]["cpu_pct"]
            < results["1080p25, all frames"]["cpu_pct"])


# -- opens: a hung camera holds back no other -------------------------------------------

def test_a_hung_camera_holds_back_no_other_open(rig: RtspRig, cv: Any) -> None:
    """OpenCV runs VideoCapture opens one at a time in a process unless
    OPENCV_FFMPEG_IS_THREAD_SAFE is set, which the camera package does; the readers' gate
    then lets opens with the same options run together. A camera hanging in its open (a
    TCP peer that never answers) must not hold up a healthy camera's open, nor reads of an
    open capture."""
    from camera.capture import CaptureThread, join_captures

    healthy = open_capture(rig.url("street-360p"), options=FAST_OPEN)
    t_read = time.monotonic()
    while time.monotonic() - t_read < 1.0:  # drain the burst: read live
        assert healthy.read()[0]
    with BlackHole() as hole:
        hung = CaptureThread("hung", hole.url(), "sub-full", open_timeout_s=2.0)
        hung.start()
        time.sleep(0.2)
        t_open = time.monotonic()
        other = CaptureThread("other", rig.url("black-360p"), "sub-full", open_timeout_s=2.0)
        other.start()
        stamps = []
        while not other.opened.is_set() and time.monotonic() - t_open < 4.0:
            assert healthy.read()[0]
            stamps.append(time.monotonic())
        other_open_s = time.monotonic() - t_open
        hung.join(5)
        # what the camera service does on its way out: every reader stopped and joined
        assert join_captures(3.0) == 0 and not other.is_alive()
        assert hole.connections >= 1
    # a refused connection fails at once
    t = time.monotonic()
    refused = open_capture(refused_url(), must_open=False)
    refused_s = time.monotonic() - t
    assert not refused.isOpened() and refused_s < 1.0
    healthy.release()
    gaps = np.diff(stamps) if len(stamps) > 1 else np.array([0.0])
    assert other.opened.is_set() and not hung.opened.is_set() and hung.error, (hung.error, other.error)
    assert other_open_s < 1.6, f"a healthy open waited {other_open_s:.2f} s behind a hung one"
    assert gaps.max() < 0.2, gaps.max()
    figure(f"opens in parallel: a healthy camera opened in {other_open_s:.2f} s while another hung in its 2 s "
           f"open; reads of an open capture went on (max gap {gaps.max() * 1000:.0f} ms); "
           f"connection refused fails in {refused_s * 1000:.0f} ms")
