"""Recording end to end: real RTSP cameras, a real `ioc cameras`, real PostgreSQL, ffprobe.

One run of the camera service (module fixture `recorded`) records a continuous camera, a
camera whose tiles read its sub-stream (both its streams are recorded), an `events` camera
(black picture) and a camera with recording off; drops a camera mid-recording; is killed
-9 while a segment is open and started again. The tests then check the files, the index
and the playback API against what that run left.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from camera.recording import QUOTA_FULL, RecordingConfig, RecordingKeeper
from ioc.core.accounts import create_agency, create_user, get_user
from ioc.core.recordings import UnsafePath, inside, segment_path
from ioc.core.settings import SettingsError, load_settings
from ioc.core.storage import alerts as alert_store
from ioc.core.storage import recordings as rec_store
from ioc.serve.api.app import create_app
from ioc.serve.wall.alerts import CAMERA_TEXT
from tests.conftest import REPO
from tests.rigs.children import end, preexec, track
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.rtsp.rig import Mount, RtspRig, media_path

UTC = timezone.utc
RUN = secrets.token_hex(2)
CONT, SUB, EVENTS, OFF = f"rc-{RUN}", f"rs-{RUN}", f"re-{RUN}", f"ro-{RUN}"
LATER = f"rl-{RUN}"  # two streams, recording turned on while the service runs


def probe(path: Path) -> dict[str, Any]:
    """ffprobe's verdict on one file: codec and decoded frames (it decodes them all)."""
    res = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_name,nb_read_frames:format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60)
    doc = json.loads(res.stdout or "{}")
    streams = doc.get("streams") or [{}]
    return {"rc": res.returncode, "errors": res.stderr.strip(), "codec": streams[0].get("codec_name"),
            "frames": int(streams[0].get("nb_read_frames") or 0)}


def assert_plays(path: Path) -> None:
    p = probe(path)
    assert p["rc"] == 0 and p["codec"] == "h264" and p["frames"] > 0 and not p["errors"], (path, p)


def files(root: Path, camera: str, suffix: str = ".mp4") -> list[Path]:
    return sorted(p for p in (root / camera).rglob(f"*{suffix}") if p.is_file())


class CameraProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "cameras"], env=self.env, cwd=REPO,
                                     stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec())
        log.close()
        track(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            end(self.proc)


def camera_env(broker: MosquittoRig, passwords: dict[str, str], db_url: str, root: Path, registry: Path,
               **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_MQTT_URL": broker.url_for("svc-camera", passwords["svc-camera"]), "IOC_DATABASE_URL": db_url,
                "IOC_CAMERA_REGISTRY": str(registry), "PYTHONPATH": str(REPO), "IOC_CAMERA_RELOAD_S": "1",
                "IOC_CAMERA_WORKER_ID": f"cam-rec-{secrets.token_hex(3)}", "IOC_RECORDINGS_DIR": str(root),
                "IOC_RECORDING_SEGMENT_S": "1", "IOC_RECORDING_CLIP_BEFORE_S": "3", "IOC_RECORDING_CLIP_AFTER_S": "2",
                "IOC_RECORDING_RETENTION_EVERY_S": "1", **extra})
    return env


async def wait_for(check: Any, timeout: float, what: str) -> Any:
    """Poll an async check until it returns something truthy (generous deadlines, busy CI)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


async def segment_rows(pool: asyncpg.Pool, camera: str, stream: str | None = "main") -> list[asyncpg.Record]:
    """A camera's index rows of one stream (None: both), oldest first."""
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT * FROM recording_segments WHERE camera = $1 AND stream = coalesce($2, stream) "
                                "ORDER BY started_at", camera, stream)


@dataclass
class Recorded:
    root: Path
    drop_at: float = 0.0
    back_at: float = 0.0
    part_at_kill: str | None = None
    playable_after_kill: list[str] = field(default_factory=list)
    unplayable_after_kill: list[str] = field(default_factory=list)
    event_started: datetime | None = None
    unindexed_sub: list[str] = field(default_factory=list)  # sub segments whose index rows the test removed
    log: str = ""


@pytest.fixture(scope="module")
async def recorded(tmp_path_factory: pytest.TempPathFactory, broker: MosquittoRig,
                   service_passwords: dict[str, str], pool: asyncpg.Pool, db_url: str) -> AsyncIterator[Recorded]:
    tmp = tmp_path_factory.mktemp("recording")
    root = tmp / "recordings"
    out = Recorded(root)
    async with pool.acquire() as conn:
        for cam, mode in ((CONT, "continuous"), (SUB, "continuous"), (EVENTS, "events")):
            await rec_store.set_mode(conn, cam, mode, "test-admin")
    mounts = [Mount("rec-counter", "counter-360p.mp4"), Mount("rec-main", "street-720p.mp4"),
              Mount("street-360p", "street-360p.mp4"), Mount("frozen-360p", "frozen-360p.mp4", timeline="per-client")]
    with RtspRig(mounts) as rig:
        registry = tmp / "cameras.toml"
        registry.write_text(
            f'[[camera]]\nid = "{CONT}"\nname = "Liên tục"\nmain_url = "{rig.url("rec-counter")}"\n'
            f'[[camera]]\nid = "{SUB}"\nname = "Hai luồng"\nmain_url = "{rig.url("rec-main")}"\n'
            f'sub_url = "{rig.url("street-360p")}"\n'
            f'[[camera]]\nid = "{EVENTS}"\nname = "Sự kiện"\nmain_url = "{rig.url("frozen-360p")}"\n'
            f'[[camera]]\nid = "{OFF}"\nname = "Tắt"\nmain_url = "{rig.url("street-360p")}"\n'
            f'[[camera]]\nid = "{LATER}"\nname = "Bật sau"\nmain_url = "{rig.url("rec-main")}"\n'
            f'sub_url = "{rig.url("street-360p")}"\n', encoding="utf-8")
        svc = CameraProcess(camera_env(broker, service_passwords, db_url, root, registry), tmp / "cameras.log")
        svc.start()
        try:
            await wait_for(lambda: _count(pool, CONT, 4), 40, "four segments of the continuous camera")
            # the camera drops mid-recording, comes back a few seconds later
            out.drop_at = time.time()
            rig.offline("rec-counter")
            await wait_for(lambda: _status(pool, CONT, "offline"), 20, "the camera seen offline")
            await asyncio.sleep(2.0)
            rig.online("rec-counter")
            out.back_at = time.time()
            await wait_for(lambda: _count_after(pool, CONT, out.back_at, 2), 40, "recording after the camera came back")
            await wait_for(lambda: _count(pool, SUB, 2), 30, "the main stream of a sub-stream camera recorded")
            await wait_for(lambda: _count(pool, SUB, 2, "sub"), 30, "the sub-stream of a sub-stream camera recorded")
            async with pool.acquire() as conn:  # an admin turns recording on (the service follows its reload)
                await rec_store.set_mode(conn, LATER, "continuous", "test-admin")
            await wait_for(lambda: _count(pool, LATER, 2, "sub"), 40, "both streams recorded once the mode is on")
            await wait_for(lambda: _count(pool, EVENTS, 2), 40, "the events camera's clip around its frozen picture")
            async with pool.acquire() as conn:
                out.event_started = await conn.fetchval(
                    "SELECT min(started_at) FROM camera_events WHERE camera = $1 AND kind = 'frozen'", EVENTS)
            # killed -9 while a segment is being written
            deadline = time.monotonic() + 20
            while not files(root, CONT, ".part") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            parts = files(root, CONT, ".part")
            svc.kill()
            out.part_at_kill = str(parts[0]) if parts else None
            for f in files(root, CONT) + files(root, SUB) + files(root, EVENTS):
                (out.playable_after_kill if probe(f)["rc"] == 0 and probe(f)["frames"] > 0
                 else out.unplayable_after_kill).append(str(f))
            # as if the kill came between renaming sub segments into place and indexing them
            async with pool.acquire() as conn:
                out.unindexed_sub = [r["path"] for r in await conn.fetch(
                    "DELETE FROM recording_segments WHERE camera = $1 AND stream = 'sub' RETURNING path", SUB)]
            # started again: what the kill interrupted is cleaned up, what it left unindexed is indexed
            svc.start()
            await wait_for(lambda: _no_parts_from_before(root, parts), 30, "the interrupted segment removed")
            await wait_for(lambda: _all_indexed(pool, root, CONT), 30, "every closed segment indexed")
            await wait_for(lambda: _all_indexed(pool, root, SUB), 30, "every closed segment of both streams indexed")
        finally:
            svc.stop()
            out.log = (tmp / "cameras.log").read_text(errors="replace")
    yield out


async def _count(pool: asyncpg.Pool, camera: str, n: int, stream: str = "main") -> bool:
    return len(await segment_rows(pool, camera, stream)) >= n


async def _count_after(pool: asyncpg.Pool, camera: str, after: float, n: int) -> bool:
    return sum(r["started_at"].timestamp() > after for r in await segment_rows(pool, camera)) >= n


async def _status(pool: asyncpg.Pool, camera: str, state: str) -> bool:
    async with pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT state = $2 FROM camera_status_log WHERE camera = $1 ORDER BY at DESC LIMIT 1", camera, state)


async def _no_parts_from_before(root: Path, parts: list[Path]) -> bool:
    return not any(p.exists() for p in parts)


async def _all_indexed(pool: asyncpg.Pool, root: Path, camera: str) -> bool:
    on_disk = {str(p.relative_to(root)) for p in files(root, camera)}
    indexed = {r["path"] for r in await segment_rows(pool, camera, None)}
    return on_disk <= indexed


# -- the files and the index ------------------------------------------------------------------------
async def test_every_segment_plays_and_the_index_matches(recorded: Recorded, pool: asyncpg.Pool) -> None:
    for cam in (CONT, SUB, EVENTS):
        rows = await segment_rows(pool, cam)
        assert rows, cam
        for r in rows:
            path = recorded.root / r["path"]
            assert path.is_file() and path.stat().st_size == r["bytes"], r
            assert r["path"] == segment_path(cam, r["started_at"].timestamp(), r["ended_at"].timestamp())
            assert r["path"].startswith(f"{cam}/{r['started_at'].astimezone(UTC):%Y-%m-%d}/")
            assert 0 < (r["ended_at"] - r["started_at"]).total_seconds() <= 3.5, r  # short: closed at a drop
            assert_plays(path)
    assert not (recorded.root / OFF).exists()  # recording off: nothing written
    # the sub-stream camera records its main stream: 360p here, as the rig's "rec-main" mount
    assert _size(recorded.root / (await segment_rows(pool, SUB))[0]["path"]) == "1280,720"


def _size(path: Path) -> str:
    res = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, timeout=60)
    return res.stdout.strip()


async def test_the_sub_stream_is_recorded_beside_the_main_one(recorded: Recorded, pool: asyncpg.Pool) -> None:
    """A camera with a sub-stream records it too, in its own directory, indexed as `sub`; a
    camera without one records its main stream only."""
    rows = await segment_rows(pool, SUB, "sub")
    assert len(rows) >= 2
    for r in rows:
        start, end = r["started_at"].timestamp(), r["ended_at"].timestamp()
        assert r["path"] == segment_path(SUB, start, end, "sub")
        assert r["path"].startswith(f"{SUB}/{r['started_at'].astimezone(UTC):%Y-%m-%d}/sub/"), r["path"]
        path = recorded.root / r["path"]
        assert path.is_file() and path.stat().st_size == r["bytes"]
        assert_plays(path)
        assert _size(path) == "640,360"  # the sub-stream (the main one is 1280x720)
    main = {r["path"] for r in await segment_rows(pool, SUB)}
    assert main and not main & {r["path"] for r in rows}
    assert not await segment_rows(pool, CONT, "sub")  # no sub_url, no sub-stream recording
    # turned on while the service ran: its tiles' reader (the sub-stream) took a recorder
    for stream, size in (("main", "1280,720"), ("sub", "640,360")):
        rows = await segment_rows(pool, LATER, stream)
        assert rows, stream
        assert_plays(recorded.root / rows[0]["path"])
        assert _size(recorded.root / rows[0]["path"]) == size
    # killed, its sub segments not indexed: indexed again at the next start, as sub segments
    assert recorded.unindexed_sub
    again = {r["path"]: r["stream"] for r in await segment_rows(pool, SUB, None)}
    assert all(again.get(p) == "sub" for p in recorded.unindexed_sub), recorded.unindexed_sub


async def test_kill_mid_segment_leaves_only_playable_files(recorded: Recorded, pool: asyncpg.Pool) -> None:
    assert recorded.part_at_kill is not None, "no segment was being written at the kill"
    assert recorded.playable_after_kill and not recorded.unplayable_after_kill
    assert not Path(recorded.part_at_kill).exists()  # removed at the next start
    assert "unfinished recording segment removed" in recorded.log


async def test_a_camera_that_drops_leaves_a_gap(recorded: Recorded, pool: asyncpg.Pool) -> None:
    rows = await segment_rows(pool, CONT)
    before = [r for r in rows if r["ended_at"].timestamp() <= recorded.back_at]
    after = [r for r in rows if r["started_at"].timestamp() >= recorded.drop_at]
    last, first = max(before, key=lambda r: r["ended_at"]), min(after, key=lambda r: r["started_at"])
    gap = (first["started_at"] - last["ended_at"]).total_seconds()
    assert gap >= 1.5, (last, first)  # the camera was away 2 s and more
    assert_plays(recorded.root / last["path"])  # closed cleanly where the stream ended
    # elsewhere the segments follow each other without a hole (cut on keyframes, end = next start)
    joined = sum(abs((b["started_at"] - a["ended_at"]).total_seconds()) < 0.01 for a, b in zip(rows, rows[1:]))
    assert joined >= len(rows) // 2


async def test_events_mode_records_around_the_event_with_pre_roll(recorded: Recorded, pool: asyncpg.Pool) -> None:
    rows = await segment_rows(pool, EVENTS)
    assert recorded.event_started is not None
    first = rows[0]["started_at"]
    # the pre-roll (3 s here) comes from memory: the clip starts before the event was seen
    assert first <= recorded.event_started - timedelta(seconds=2.5), (first, recorded.event_started)


# -- the playback API ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def api(recorded: Recorded, pool: asyncpg.Pool, db_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]]]]:
    settings = load_settings(database_url=db_url, jwt_secret="r" * 40, recordings_dir=str(recorded.root),
                             recording_clip_before_s=3, recording_clip_after_s=2)
    app = create_app(settings)
    heads: dict[str, dict[str, str]] = {}
    async with pool.acquire() as conn:
        for role in ("admin", "operator", "leader", "screen"):
            name = f"rp{role[:3]}{RUN}"
            pw = await create_user(conn, name, role=role, actor="test")
            heads[role] = {"username": name, "password": pw}
        agency = f"ragc-{RUN}"
        heads["agency"] = {"username": agency, "password": await create_agency(
            conn, agency, name_vi="Sở thử", sectors=["tthc"], actor="test")}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60) as c:
            async with pool.acquire() as conn:  # a wall screen's token is issued by an admin, not logged in for
                screen = await get_user(conn, heads.pop("screen")["username"])
            assert screen is not None
            tokens = {"screen": app.state.issuer.issue(screen)[0]}
            for role, cred in list(heads.items()):
                r = await c.post("/api/v1/auth/token", data=cred)
                assert r.status_code == 200, (role, r.text)
                tokens[role] = r.json()["access_token"]
            heads = {role: {"Authorization": f"Bearer {token}"} for role, token in tokens.items()}
            yield c, heads


async def test_list_shows_recordings_and_gaps(api: Any, recorded: Recorded, pool: asyncpg.Pool) -> None:
    c, h = api
    rows = await segment_rows(pool, CONT)
    start = rows[0]["started_at"] - timedelta(seconds=5)
    end = rows[-1]["ended_at"] + timedelta(seconds=5)
    r = await c.get(f"/api/v1/cameras/{CONT}/recordings", params={"start": start.isoformat(), "end": end.isoformat()},
                    headers=h["leader"])
    assert r.status_code == 200, r.text
    doc = r.json()
    kinds = [s["kind"] for s in doc["spans"]]
    assert kinds[0] == "gap" and kinds[-1] == "gap" and kinds.count("recording") >= 2  # the drop in between
    inner = [s for s in doc["spans"][1:-1] if s["kind"] == "gap"]
    assert any(datetime.fromisoformat(g["start"]).timestamp() >= recorded.drop_at - 3 for g in inner)
    assert len(doc["segments"]) == len(rows) and doc["segments"][0]["url"].startswith("/api/v1/recordings/segments/")


async def test_seek_to_an_instant_and_range_requests(api: Any, recorded: Recorded, pool: asyncpg.Pool) -> None:
    c, h = api
    rows = await segment_rows(pool, CONT)
    seg = rows[1]
    t = seg["started_at"] + (seg["ended_at"] - seg["started_at"]) / 2
    r = await c.get(f"/api/v1/cameras/{CONT}/recordings/at", params={"t": t.isoformat()}, headers=h["operator"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["segment"]["id"] == seg["id"] and abs(doc["offset_s"] - (t - seg["started_at"]).total_seconds()) < 0.01
    assert doc["following"] and doc["following"][0]["id"] == rows[2]["id"]
    whole = await c.get(doc["segment"]["url"], headers=h["operator"])
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.content == (recorded.root / seg["path"]).read_bytes()
    part = await c.get(doc["segment"]["url"], headers={**h["operator"], "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    # a time with no recording: a clear gap answer with the nearest recorded times
    long_ago = rows[0]["started_at"] - timedelta(hours=1)
    r = await c.get(f"/api/v1/cameras/{CONT}/recordings/at", params={"t": long_ago.isoformat()}, headers=h["operator"])
    assert r.status_code == 404 and "no recording" in r.json()["detail"]
    assert r.json()["nearest_before"] is None
    assert datetime.fromisoformat(r.json()["nearest_after"]) == rows[0]["started_at"]


async def test_export_is_one_mp4_with_its_sha256_in_the_audit_log(api: Any, recorded: Recorded,
                                                                  pool: asyncpg.Pool, tmp_path: Path) -> None:
    c, h = api
    rows = await segment_rows(pool, CONT)
    start, end = rows[0]["started_at"] + timedelta(seconds=0.5), rows[3]["ended_at"]
    r = await c.get(f"/api/v1/cameras/{CONT}/export", params={"start": start.isoformat(), "end": end.isoformat()},
                    headers=h["operator"])
    assert r.status_code == 200, r.text
    digest = hashlib.sha256(r.content).hexdigest()
    assert r.headers["x-content-sha256"] == digest
    out = tmp_path / "export.mp4"
    out.write_bytes(r.content)
    p = probe(out)
    assert p["rc"] == 0 and p["codec"] == "h264" and p["frames"] >= 50, p  # ~3-4 s of 25 fps, one file
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'recording.exported' "
                                  "AND subject = $1 ORDER BY id DESC LIMIT 1", f"camera/{CONT}")
    assert row is not None and row["actor"] == f"rpope{RUN}"
    assert json.loads(row["details"])["sha256"] == digest
    assert not list((recorded.root / ".exports").iterdir())  # the temporary file went with the answer
    # nothing recorded in the span: a gap answer
    r = await c.get(f"/api/v1/cameras/{CONT}/export", headers=h["operator"], params={
        "start": (start - timedelta(hours=2)).isoformat(), "end": (start - timedelta(hours=1)).isoformat()})
    assert r.status_code == 404 and r.json()["nearest_after"]


async def test_event_and_alert_clips_link_to_a_playable_export(api: Any, pool: asyncpg.Pool, tmp_path: Path) -> None:
    c, h = api
    r = await c.get(f"/api/v1/cameras/{EVENTS}/events", headers=h["operator"])
    assert r.status_code == 200
    black = next(e for e in r.json() if e["kind"] == "frozen")
    assert black["clip"].startswith(f"/api/v1/cameras/{EVENTS}/export?")
    clip = await c.get(black["clip"], headers=h["operator"])
    assert clip.status_code == 200, clip.text
    (tmp_path / "clip.mp4").write_bytes(clip.content)
    assert_plays(tmp_path / "clip.mp4")
    async with pool.acquire() as conn:  # an alert that names the camera (as the wall's alert keeper opens it)
        await conn.execute(
            "INSERT INTO alerts (kind, source, severity, message_vi, message_en, details, started_at) "
            "VALUES ('camera', $1, 'critical', 'x', 'x', $2::jsonb, $3) ON CONFLICT DO NOTHING",
            f"{EVENTS}/frozen", json.dumps({"camera": EVENTS, "fault": "frozen"}),
            datetime.fromisoformat(black["started_at"]))
    alerts = (await c.get("/api/v1/alerts", headers=h["operator"], params={"limit": 500})).json()
    mine = [a for a in alerts if a.get("camera") == EVENTS]
    assert mine and mine[0]["clip"].startswith(f"/api/v1/cameras/{EVENTS}/export?")
    assert (await c.get(mine[0]["clip"], headers=h["leader"])).status_code == 200


async def test_roles(api: Any, pool: asyncpg.Pool) -> None:
    c, h = api
    rows = await segment_rows(pool, CONT)
    span = {"start": rows[0]["started_at"].isoformat(), "end": rows[1]["ended_at"].isoformat()}
    reads = [(f"/api/v1/cameras/{CONT}/recordings", {"start": rows[0]["started_at"].isoformat(),
                                                      "end": rows[-1]["ended_at"].isoformat()}),
             (f"/api/v1/cameras/{CONT}/recordings/at", {"t": rows[0]["started_at"].isoformat()}),
             (f"/api/v1/recordings/segments/{rows[0]['id']}", {}), (f"/api/v1/cameras/{CONT}/recording", {}),
             (f"/api/v1/cameras/{CONT}/export", span)]
    for url, params in reads:
        for role in ("admin", "operator", "leader"):
            assert (await c.get(url, params=params, headers=h[role])).status_code == 200, (url, role)
        for role in ("agency", "screen"):
            assert (await c.get(url, params=params, headers=h[role])).status_code == 403, (url, role)
        assert (await c.get(url, params=params)).status_code == 401
    keep = f"/api/v1/cameras/{CONT}/recordings/keep"
    for role in ("leader", "agency", "screen"):
        assert (await c.post(keep, json=span, headers=h[role])).status_code == 403
    r = await c.post(keep, json={**span, "reason": "vụ va chạm"}, headers=h["operator"])
    assert r.status_code == 201 and r.json()["kept_by"] == f"rpope{RUN}"
    listed = await c.get(reads[0][0], params=reads[0][1], headers=h["leader"])
    assert all(x["kept"] for x in listed.json()["segments"][:2])
    async with pool.acquire() as conn:
        audit = await conn.fetchrow("SELECT actor FROM audit_log WHERE action = 'recording.kept' ORDER BY id DESC LIMIT 1")
    assert audit["actor"] == f"rpope{RUN}"
    assert (await c.delete(f"/api/v1/recordings/kept/{r.json()['id']}", headers=h["operator"])).status_code == 403
    assert (await c.delete(f"/api/v1/recordings/kept/{r.json()['id']}", headers=h["admin"])).status_code == 204
    # modes: admins only, audited
    mode = f"/api/v1/cameras/{OFF}/recording"
    assert (await c.put(mode, json={"mode": "continuous"}, headers=h["operator"])).status_code == 403
    assert (await c.put(mode, json={"mode": "sometimes"}, headers=h["admin"])).status_code == 422
    r = await c.put(mode, json={"mode": "events"}, headers=h["admin"])
    assert r.status_code == 200 and r.json()["mode"] == "events" and r.json()["changed_by"] == f"rpadm{RUN}"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT actor FROM audit_log WHERE action = 'camera.recording_mode' AND subject = $1",
                                   OFF) == f"rpadm{RUN}"
        await rec_store.set_mode(conn, OFF, "off", "test")


async def test_path_tricks_never_reach_outside(api: Any, recorded: Recorded, pool: asyncpg.Pool,
                                               tmp_path: Path) -> None:
    c, h = api
    secret = tmp_path / "outside" / "secret.mp4"
    secret.parent.mkdir()
    secret.write_bytes(b"SECRET-OUTSIDE-THE-RECORDINGS")
    op = h["operator"]
    t = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for cam in ("..", "%2e%2e", "..%2f..%2fetc", "%2fetc%2fpasswd", "a..b", "CON", f"{CONT}%00"):
        for url in (f"/api/v1/cameras/{cam}/recordings/at?t={t}", f"/api/v1/cameras/{cam}/export?start={t}&end={t}",
                    f"/api/v1/cameras/{cam}/recordings?start={t}&end={t}"):
            r = await c.get(url, headers=op)
            assert r.status_code in (404, 422) and b"SECRET" not in r.content, (url, r.status_code)
    for seg in ("..%2f..%2fetc%2fpasswd", "-1", "1e9", "%2e%2e", "0x10"):
        r = await c.get(f"/api/v1/recordings/segments/{seg}", headers=op)
        assert r.status_code in (404, 422) and b"SECRET" not in r.content
    # index rows that point through a symlink (a day directory, a file) or outside: never served
    cam_dir = recorded.root / CONT
    (cam_dir / "2001-01-01").symlink_to(secret.parent, target_is_directory=True)
    (cam_dir / "link.mp4").symlink_to(secret)
    async with pool.acquire() as conn:
        ids = [await conn.fetchval(
            "INSERT INTO recording_segments (camera, started_at, ended_at, bytes, path) VALUES ($1, $2, $3, 1, $4) "
            "RETURNING id", CONT, datetime(2001, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
            datetime(2001, 1, 1, tzinfo=UTC) + timedelta(minutes=i, seconds=4), path)
            for i, path in enumerate([f"{CONT}/2001-01-01/secret.mp4", f"{CONT}/link.mp4"])]
        for bad in ("/etc/passwd", f"{CONT}/../../outside/secret.mp4"):
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute("INSERT INTO recording_segments (camera, started_at, ended_at, bytes, path) "
                                   "VALUES ($1, now(), now() + interval '1 s', 1, $2)", CONT, bad)
    try:
        for sid in ids:
            r = await c.get(f"/api/v1/recordings/segments/{sid}", headers=op)
            assert r.status_code == 404 and b"SECRET" not in r.content
        r = await c.get(f"/api/v1/cameras/{CONT}/export", headers=op, params={
            "start": "2001-01-01T00:00:00+00:00", "end": "2001-01-01T00:05:00+00:00"})
        assert r.status_code == 404 and b"SECRET" not in r.content
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM recording_segments WHERE id = ANY($1::bigint[])", ids)
    for rel in ("/etc/passwd", "../x", f"{CONT}/../../x", f"{CONT}//x", "a\\b", f"{CONT}/2001-01-01/secret.mp4",
                f"{CONT}/link.mp4"):
        with pytest.raises(UnsafePath):
            inside(recorded.root, rel)


async def test_the_stream_parameter_lists_and_seeks_either_stream(api: Any, recorded: Recorded,
                                                                  pool: asyncpg.Pool) -> None:
    c, h = api
    main, sub = await segment_rows(pool, SUB), await segment_rows(pool, SUB, "sub")
    start = min(main[0]["started_at"], sub[0]["started_at"]) - timedelta(seconds=1)
    end = max(main[-1]["ended_at"], sub[-1]["ended_at"]) + timedelta(seconds=1)
    window = {"start": start.isoformat(), "end": end.isoformat()}
    for stream, rows in (("main", main), ("sub", sub), (None, main)):
        params = window if stream is None else {**window, "stream": stream}
        r = await c.get(f"/api/v1/cameras/{SUB}/recordings", params=params, headers=h["operator"])
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["segments"]] == [x["id"] for x in rows], stream
        assert {x["stream"] for x in r.json()["segments"]} == {stream or "main"}
    seg = sub[len(sub) // 2]
    t = seg["started_at"] + (seg["ended_at"] - seg["started_at"]) / 2
    r = await c.get(f"/api/v1/cameras/{SUB}/recordings/at", params={"t": t.isoformat(), "stream": "sub"},
                    headers=h["leader"])
    assert r.status_code == 200, r.text
    assert r.json()["segment"]["id"] == seg["id"] and r.json()["stream"] == "sub"
    body = await c.get(r.json()["segment"]["url"], headers=h["operator"])
    assert body.status_code == 200 and body.content == (recorded.root / seg["path"]).read_bytes()
    r = await c.get(f"/api/v1/cameras/{SUB}/recordings/at", params={"t": t.isoformat()}, headers=h["leader"])
    assert r.status_code == 200 and r.json()["segment"]["stream"] == "main"
    # a camera without a sub-stream: a gap answer for it, not its main stream
    cont = await segment_rows(pool, CONT)
    r = await c.get(f"/api/v1/cameras/{CONT}/recordings/at", headers=h["operator"],
                    params={"t": (cont[0]["started_at"] + timedelta(seconds=0.5)).isoformat(), "stream": "sub"})
    assert r.status_code == 404 and "sub-stream" in r.json()["detail"]
    # anything but main or sub: 422, saying what is allowed
    for bad in ("bogus", "MAIN", "", "../sub", "sub/../../main", "sub%00", "main ", "..", "/etc/passwd"):
        for url, params in ((f"/api/v1/cameras/{SUB}/recordings", window),
                            (f"/api/v1/cameras/{SUB}/recordings/at", {"t": t.isoformat()})):
            r = await c.get(url, params={**params, "stream": bad}, headers=h["operator"])
            assert r.status_code == 422, (bad, r.status_code, r.text)
            assert "stream must be one of main, sub" in r.json()["detail"][0]["msg"] and b"SECRET" not in r.content
    # exports (evidence, its SHA-256) are of the main stream
    r = await c.get(f"/api/v1/cameras/{SUB}/export", headers=h["operator"], params={
        "start": sub[0]["started_at"].isoformat(), "end": sub[-1]["ended_at"].isoformat()})
    assert r.status_code == 200, r.text
    out = recorded.root.parent / "sub-camera-export.mp4"
    out.write_bytes(r.content)
    assert _size(out) == "1280,720"


# -- retention and a full disk ---------------------------------------------------------------------------
async def _fake_segments(pool: asyncpg.Pool, root: Path, camera: str, starts: list[float], size: int,
                         stream: str = "main") -> None:
    rows = []
    for s in starts:
        rel = segment_path(camera, s, s + 4, stream)  # type: ignore[arg-type]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\0" * size)
        rows.append((camera, s, s + 4, size, rel))
    async with pool.acquire() as conn:
        await rec_store.add_segments(conn, rows, stream)  # type: ignore[arg-type]


async def _old_recent_and_kept(pool: asyncpg.Pool, root: Path, camera: str, recent: int,
                               sizes: dict[str, int]) -> list[float]:
    """Three segments 40 days old and `recent` from the last hour, of each stream in `sizes`
    (that many bytes each), in an index emptied first (the quota counts every camera's bytes);
    the first old one and the second recent one kept as evidence. Their starts."""
    now = time.time()
    starts = [now - 40 * 86400 + i * 4 for i in range(3)] + [now - 3600 + i * 4 for i in range(recent)]
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM recording_segments")
    for stream, size in sizes.items():
        await _fake_segments(pool, root, camera, starts, size, stream)
    async with pool.acquire() as conn:
        for s in (starts[0], starts[4]):
            await rec_store.keep(conn, camera, datetime.fromtimestamp(s + 1, UTC), datetime.fromtimestamp(s + 2, UTC),
                                 "bằng chứng", "op1")
    return starts


async def test_retention_deletes_both_streams_and_kept_spans_keep_both(pool: asyncpg.Pool, tmp_path: Path) -> None:
    cam = f"rb-{secrets.token_hex(2)}"
    root = tmp_path / "rec"
    starts = await _old_recent_and_kept(pool, root, cam, 4, {"main": 1000, "sub": 500})
    # by age: both streams of the old spans not kept go
    await RecordingKeeper(RecordingConfig(root, retention_days=30, every_s=1), pool).retain()
    for stream in ("main", "sub"):
        left = [round(r["started_at"].timestamp(), 2) for r in await segment_rows(pool, cam, stream)]
        assert left == [round(starts[i], 2) for i in (0, 3, 4, 5, 6)], stream
    # the quota (6000 bytes) counts both streams (4 recent spans of 1500 + the kept old one =
    # 7500): the oldest recent span not kept goes, with both its streams
    await RecordingKeeper(RecordingConfig(root, retention_days=30, quota_bytes=6000, every_s=1), pool).retain()
    for stream in ("main", "sub"):
        left = [round(r["started_at"].timestamp(), 2) for r in await segment_rows(pool, cam, stream)]
        assert left == [round(starts[i], 2) for i in (0, 4, 5, 6)], stream
    rows = await segment_rows(pool, cam, None)
    assert {str(p.relative_to(root)) for p in files(root, cam)} == {r["path"] for r in rows}
    assert sum(r["bytes"] for r in rows) <= 6000 and sum("/sub/" in r["path"] for r in rows) == 4


async def test_retention_by_days_and_quota_keeps_kept_spans(pool: asyncpg.Pool, tmp_path: Path) -> None:
    cam = f"rt-{secrets.token_hex(2)}"
    root = tmp_path / "rec"
    now = time.time()
    days = await _old_recent_and_kept(pool, root, cam, 5, {"main": 1000})
    keeper = RecordingKeeper(RecordingConfig(root, retention_days=30, quota_bytes=4000, every_s=1), pool)
    await keeper.retain()
    left = [r["started_at"].timestamp() for r in await segment_rows(pool, cam)]
    # by age: the two old ones not kept are gone; by quota (4 x 1000 bytes): the oldest recent one
    # not kept goes, the kept ones stay whatever their age
    assert [round(x, 2) for x in left] == [round(days[i], 2) for i in (0, 4, 6, 7)]
    on_disk = {str(p.relative_to(root)) for p in files(root, cam)}
    assert on_disk == {r["path"] for r in await segment_rows(pool, cam)}
    assert keeper._blocked is None
    # everything left kept and over the quota: recording is blocked until room returns
    async with pool.acquire() as conn:
        span = await rec_store.keep(conn, cam, datetime.fromtimestamp(now - 7200, UTC),
                                    datetime.fromtimestamp(now, UTC), "", "op1")
    keeper2 = RecordingKeeper(RecordingConfig(root, retention_days=30, quota_bytes=2500, every_s=1), pool)
    await keeper2.retain()
    assert keeper2._blocked == QUOTA_FULL and len(await segment_rows(pool, cam)) == 4
    async with pool.acquire() as conn:
        await rec_store.release(conn, span, "admin1")
    await keeper2.retain()
    assert keeper2._blocked is None and len(await segment_rows(pool, cam)) == 2  # only the two evidence spans


async def test_disk_quota_full_stops_recording_with_an_alert_and_it_resumes(
        tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str], pool: asyncpg.Pool,
        db_url: str) -> None:
    cam, other = f"rq-{RUN}", f"rk-{RUN}"
    root = tmp_path / "rec"
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM recording_segments")
        await rec_store.set_mode(conn, cam, "continuous", "test")
        span = await rec_store.keep(conn, cam, datetime.now(UTC) - timedelta(minutes=1),
                                    datetime.now(UTC) + timedelta(hours=1), "everything", "test")
    with RtspRig([Mount("q-counter", "counter-360p.mp4"), Mount("street-360p", "street-360p.mp4")]) as rig:
        registry = tmp_path / "cameras.toml"
        registry.write_text(f'[[camera]]\nid = "{cam}"\nname = "Q"\nmain_url = "{rig.url("q-counter")}"\n'
                            f'[[camera]]\nid = "{other}"\nname = "K"\nmain_url = "{rig.url("street-360p")}"\n',
                            encoding="utf-8")
        svc = CameraProcess(camera_env(broker, service_passwords, db_url, root, registry,
                                       IOC_RECORDING_QUOTA_BYTES="150000"), tmp_path / "cameras.log")
        svc.start()
        try:
            async def stopped() -> Any:
                async with pool.acquire() as conn:
                    return await conn.fetchrow("SELECT * FROM camera_events WHERE camera = $1 AND kind = 'recording' "
                                               "AND ended_at IS NULL", cam)
            event = await wait_for(stopped, 60, "recording stopped: the quota is all kept evidence")
            assert json.loads(event["details"])["reason"] == QUOTA_FULL
            async with pool.acquire() as conn:  # the wall's alert keeper turns the event into an alert
                await alert_store.follow_camera_events(conn, {k: v[0] for k, v in CAMERA_TEXT.items()},
                                                       {k: v[1] for k, v in CAMERA_TEXT.items()})
                alert = await conn.fetchrow("SELECT * FROM alerts WHERE source = $1 AND ended_at IS NULL",
                                            f"{cam}/recording")
            assert alert is not None and alert["message_en"].endswith("recording stopped"), alert
            n = len(await segment_rows(pool, cam))
            await asyncio.sleep(3)
            assert len(await segment_rows(pool, cam)) <= n + 1  # at most the segment open at the time
            async with pool.acquire() as conn:  # nothing else is affected: the cameras stay online
                states = {r["camera"]: r["state"] for r in await conn.fetch(
                    "SELECT DISTINCT ON (camera) camera, state FROM camera_status_log WHERE camera = ANY($1::text[]) "
                    "ORDER BY camera, at DESC", [cam, other])}
            assert states == {cam: "online", other: "online"}
            # room again (the evidence released): retention frees space and recording resumes by itself
            async with pool.acquire() as conn:
                await rec_store.release(conn, span, "test")
            resumed_at = datetime.now(UTC)

            async def resumed() -> Any:
                async with pool.acquire() as conn:
                    ended = await conn.fetchval("SELECT ended_at FROM camera_events WHERE id = $1", event["id"])
                    newer = await conn.fetchval("SELECT count(*) FROM recording_segments WHERE camera = $1 "
                                                "AND started_at > $2", cam, resumed_at)
                return ended is not None and newer >= 1
            await wait_for(resumed, 60, "recording resumed once there was room")
            async with pool.acquire() as conn:
                total = await rec_store.total_bytes(conn)
            assert total <= 150000 + 60000  # the quota holds, give or take the segment just indexed
        finally:
            svc.stop()
    log = (tmp_path / "cameras.log").read_text(errors="replace")
    assert QUOTA_FULL in log


def test_recordings_dir_is_validated_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SettingsError, match="IOC_RECORDINGS_DIR"):
        load_settings(recordings_dir=str(blocker / "recordings")).recordings_root()
    assert load_settings(recordings_dir=str(tmp_path / "ok")).recordings_root().is_dir()
    with pytest.raises(SettingsError, match="IOC_RECORDING_SEGMENT_S"):
        load_settings(recording_segment_s=0.1)
    with pytest.raises(SettingsError, match="IOC_RECORDING_SUB_STREAM"):
        load_settings(recording_sub_stream="sometimes")
    assert load_settings(recording_sub_stream="off").recording_sub_stream is False


async def test_sub_stream_recording_follows_its_setting_and_the_mode(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """IOC_RECORDING_SUB_STREAM off: only main streams are recorded; on: a camera's sub-stream
    too, where it has one and its mode is not off."""
    from camera.service import CameraService
    from ioc.core.cameras import Camera
    from ioc.core.settings import MqttTarget

    both = Camera(id="rs-both", name="Hai", main_url="rtsp://127.0.0.1:9/main", sub_url="rtsp://127.0.0.1:9/sub")
    one = Camera(id="rs-one", name="Một", main_url="rtsp://127.0.0.1:9/main")
    target = MqttTarget(host="127.0.0.1", port=9, username="u", password="p", tls=False)
    for sub_stream in (True, False):
        svc = CameraService([both, one], target, pool=pool, recording=RecordingConfig(tmp_path, sub_stream=sub_stream))
        assert svc.keeper is not None
        svc.keeper.apply_modes({"rs-both": "continuous", "rs-one": "events"})
        assert svc._records(both, "main") and svc._records(one, "main")
        assert svc._records(both, "sub") is sub_stream and not svc._records(one, "sub")
        svc.keeper.apply_modes({"rs-one": "events"})  # rs-both off
        assert not svc._records(both, "main") and not svc._records(both, "sub")


_FAILING_DISK = """
import json, resource, signal, sys, time
from pathlib import Path
from camera.capture import CaptureThread
from camera.recorder import Recorder
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (8000, hard))  # no segment fits: every write fails
states, done = [], []
rec = Recorder("fd-cam", Path(sys.argv[2]), segment_s=1.0, on_segment=done.append,
               on_state=lambda s, why: states.append([s, why, len(done)]))
rec.mode = "continuous"
reader = CaptureThread("fd-cam", sys.argv[1], "main-keyframes", decode=False)
reader.recorder = rec
reader.start()
deadline = time.monotonic() + 30
while not any(s[0] == "stopped" for s in states) and time.monotonic() < deadline:
    time.sleep(0.1)
frames_when_stopped = reader.frames
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # room again
deadline = time.monotonic() + 40
while not done and time.monotonic() < deadline:
    time.sleep(0.1)
time.sleep(1.5)
reader.stop(); reader.join(10)
print(json.dumps({"states": states, "segments": [d.path for d in done], "frames_when_stopped": frames_when_stopped,
                  "frames": reader.frames}))
"""


def test_a_failing_disk_stops_that_recorder_and_it_resumes(tmp_path: Path) -> None:
    """The write fails (here EFBIG from a file size limit, as ENOSPC would): the segment is
    dropped, the recorder says "stopped" with the reason, the reader goes on, and recording
    resumes by itself once writes succeed again."""
    root = tmp_path / "rec"
    with RtspRig([Mount("fd-counter", "counter-360p.mp4")]) as rig:
        res = subprocess.run([sys.executable, "-c", _FAILING_DISK, rig.url("fd-counter"), str(root)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"},
                             capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    states = [tuple(s[:2]) for s in out["states"]]
    assert ("stopped", "disk full") in states, out
    stopped_at = states.index(("stopped", "disk full"))
    assert ("continuous", None) in states[stopped_at:], out  # resumed
    assert out["states"][stopped_at][2] == 0  # nothing was indexed from the failing writes
    assert out["frames"] > out["frames_when_stopped"] > 0  # the camera kept streaming meanwhile
    assert out["segments"] and not list(root.rglob("*.part"))
    for rel in out["segments"]:
        assert_plays(root / rel)


@pytest.mark.parametrize("jump_s", [-30.0, 45.0])
def test_a_wall_clock_jump_keeps_every_segment_whole_and_aligned(tmp_path: Path, jump_s: float) -> None:
    """The wall clock steps (back or forward) 6 s into a recording: the segment then open
    keeps its times (its index spans exactly its media, so an instant in it lines up with
    its frames) and is not lost; the next segment follows the new clock. The camera's packets
    come from the counter clip, paced by a monotonic clock that advances with them."""
    import av

    from camera.recorder import Recorder

    done: list[Any] = []
    mono = [1000.0]
    root = tmp_path / "rec"
    rec = Recorder("jump-cam", root, segment_s=4.0, on_segment=done.append, on_state=lambda *_: None,
                   monotonic=lambda: mono[0])
    rec.mode = "continuous"
    wall0 = time.time() - 3600
    with av.open(str(media_path("counter-360p.mp4"))) as src:
        stream = src.streams.video[0]
        rec.begin(stream)
        for packet in src.demux(stream):
            if packet.pts is None or not packet.size:
                continue
            t = float(packet.pts * stream.time_base)
            if t > 14.0:
                break
            mono[0] = 1000.0 + t
            rec.packet(packet, wall0 + t + (jump_s if t >= 6.0 else 0.0))
        rec.end()
    segs = list(done)  # in the order written (after a jump back, not the order of their times)
    assert len(segs) >= 3, segs
    for s in segs:
        assert s.end > s.start
        assert_plays(root / s.path)
        media = probe(root / s.path)["frames"] / 25  # the clip's frame rate
        assert abs((s.end - s.start) - media) <= 0.041, (s, media)  # within one frame
    # before the jump: the clip's own times; the segment open at the jump keeps them
    assert segs[0].start == pytest.approx(wall0, abs=0.001)
    open_at_jump = next(s for s in segs if s.start - wall0 < 6.0 <= s.end - wall0)
    assert open_at_jump.end - wall0 == pytest.approx(8.0, abs=0.05)
    # from the next one on, the new clock: the clip's time plus the jump
    after = segs[segs.index(open_at_jump) + 1:]
    assert after and after[0].start - wall0 == pytest.approx(8.0 + jump_s, abs=0.05)
