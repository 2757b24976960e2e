"""The time machine's API against a real `ioc serve` (API + wall hub), Mosquitto and PostgreSQL:
the wall as it was at instant T (layout and pins then, KPI values as known then, alerts
open then, the recording of each camera tile at T), who may ask, and the replay command.

Readings and corrections go through the ingest's own upsert (`stage_and_upsert`), so a
correction is the UPDATE the ingest makes and the trigger of migration 0012 keeps the
revision it replaced.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from ioc.core.readings import Reading
from ioc.core.recordings import segment_path
from ioc.core.storage import reading_writes
from ioc.core.storage import recordings as rec_store
from tests.conftest import REPO, Agencies
from tests.helpers import staff_logins
from tests.rigs.serve import ServeProcess
from tests.test_wall_pages import CHROMIUM, CHROMIUM_ARGS, COUNTER_FROM_PIXELS, Watch

UTC = timezone.utc
RUN = secrets.token_hex(3)
KPI, AREA = "mt.aqi", f"9{int(RUN, 16) % 100000}"
CAM, OTHER_CAM = f"tm-cam-{RUN}", f"tm-other-{RUN}"
LAYOUT_A, LAYOUT_B = f"tm-a-{RUN}", f"tm-b-{RUN}"


def _layout(layout_id: str, tiles: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": layout_id, "name_vi": f"Cỗ máy thời gian {layout_id}", "cols": 12, "rows": 12, "tiles": tiles}


TILES_A = [
    {"id": "aqi", "kind": "kpi", "x": 4, "y": 4, "w": 2, "h": 2, "kpi": KPI, "area": AREA},
    {"id": "cam", "kind": "camera", "x": 6, "y": 4, "w": 2, "h": 2, "camera": CAM},
    {"id": "warn", "kind": "alerts", "x": 4, "y": 6, "w": 2, "h": 2},
    {"id": "aqi-chart", "kind": "chart", "x": 6, "y": 6, "w": 2, "h": 2, "kpi": KPI, "area": AREA, "bucket": "1m",
     "hours": 1},
]
TILES_B = [{"id": "note", "kind": "text", "x": 0, "y": 0, "w": 12, "h": 12, "text_vi": "B"}]


@dataclass
class Api:
    proc: ServeProcess
    heads: dict[str, dict[str, str]]
    root: Path
    users: dict[str, tuple[str, str]]

    async def get(self, path: str, role: str = "operator", **params: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.proc.base, timeout=20) as c:
            return await c.get(path, params=params, headers=self.heads[role])

    async def post(self, path: str, body: dict[str, Any], role: str = "operator") -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.proc.base, timeout=20) as c:
            return await c.post(path, json=body, headers=self.heads[role])

    async def put(self, path: str, body: dict[str, Any], role: str = "operator") -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.proc.base, timeout=20) as c:
            return await c.put(path, json=body, headers=self.heads[role])


@pytest.fixture(scope="module")
async def api(serve_env: dict[str, str], pool: asyncpg.Pool, agencies: Agencies,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    root = tmp_path_factory.mktemp("tm-recordings")
    proc = ServeProcess({**serve_env, "IOC_RECORDINGS_DIR": str(root)}, root.parent / "tm-serve.log", REPO)
    await asyncio.to_thread(proc.start)
    agency, agency_pw = await agencies.add(["mt"], prefix="tm")
    users, tokens = await staff_logins(pool, proc.base, "tm", more={"agency": (agency, agency_pw)})
    heads = {role: {"Authorization": f"Bearer {token}"} for role, token in tokens.items()}
    async with httpx.AsyncClient(base_url=proc.base, timeout=20) as c:
        r = await c.post("/api/v1/wall/screen-tokens", json={"name": f"tm{RUN}-screen-5"}, headers=heads["admin"])
        heads["screen"] = {"Authorization": f"Bearer {r.json()['token']}"}
    a = Api(proc, heads, root, users)
    for lid, tiles in ((LAYOUT_A, TILES_A), (LAYOUT_B, TILES_B)):
        assert (await a.put(f"/api/v1/wall/layouts/{lid}", _layout(lid, tiles))).status_code == 200
    yield a
    await a.post("/api/v1/wall/replay", {"action": "live"})
    await a.post("/api/v1/wall/switch", {"layout": "overview", "delay_s": 0})
    await asyncio.to_thread(proc.stop)


async def _write(pool: asyncpg.Pool, agency: str, ts: datetime, value: float, revision: int, received: datetime) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await reading_writes.stage_and_upsert(conn, [Reading(ts, KPI, AREA, value, agency, revision, None, received)])


async def _until(t: float) -> None:
    while time.time() < t:
        await asyncio.sleep(0.05)


async def test_the_wall_at_an_instant_is_the_wall_as_it_was_then(api: Api, pool: asyncpg.Pool) -> None:
    r = await api.post("/api/v1/wall/switch", {"layout": LAYOUT_A, "delay_s": 0})
    assert r.status_code == 200, r.text
    s0 = r.json()["at"]
    base = datetime.fromtimestamp(s0, UTC)
    agency = f"tm-{RUN}"
    # a reading received just after the switch, then its correction received 1 s later
    await _write(pool, agency, base + timedelta(seconds=0.1), 40.0, 0, base + timedelta(seconds=0.2))
    await _write(pool, agency, base + timedelta(seconds=0.1), 47.5, 1, base + timedelta(seconds=1.0))
    # an alert that ended before T, one open at T (acknowledged only after it), a camera's recording
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO alerts (kind, source, message_vi, started_at, ended_at) VALUES "
            "('kpi_target', $1, 'đã hết', $2, $3)", f"tm-ended-{RUN}", base - timedelta(seconds=10),
            base + timedelta(seconds=0.4))
        await conn.execute(
            "INSERT INTO alerts (kind, source, message_vi, started_at, acked_by, acked_at) VALUES "
            "('kpi_target', $1, 'đang mở', $2, 'someone', $3)", f"tm-open-{RUN}", base - timedelta(seconds=5),
            base + timedelta(seconds=1.2))
        await rec_store.add_segments(conn, [(CAM, s0 - 1, s0 + 3, 1000, segment_path(CAM, s0 - 1, s0 + 3)),
                                            (CAM, s0 + 3, s0 + 7, 1000, segment_path(CAM, s0 + 3, s0 + 7))])
    await _until(s0 + 2.0)
    r = await api.post("/api/v1/wall/switch", {"layout": LAYOUT_B, "delay_s": 0})
    s1 = r.json()["at"]
    await _until(s1 + 0.5)

    t = datetime.fromtimestamp(s0 + 0.5, UTC)
    r = await api.get("/api/v1/wall/at", t=t.isoformat())
    assert r.status_code == 200, r.text
    at_t = r.json()
    assert at_t["state"]["layout"] == LAYOUT_A, "a layout switch after T is not shown at T"
    assert at_t["timezone"] == "Asia/Ho_Chi_Minh" and at_t["t_local"].endswith("+07:00")
    assert at_t["tiles"]["aqi"]["value"] == 40.0, "a correction received after T is not shown at T"
    assert at_t["tiles"]["aqi"]["revision"] == 0
    sources = {a["source"]: a for a in at_t["alerts"]}
    assert f"tm-open-{RUN}" in sources and f"tm-ended-{RUN}" not in sources, "an alert ended before T is not open"
    assert sources[f"tm-open-{RUN}"]["acked_by"] is None, "acknowledged only after T"
    assert at_t["tiles"]["warn"]["alerts"] == at_t["alerts"]
    rec = at_t["tiles"]["cam"]["recording"]
    assert rec["offset_s"] == pytest.approx(1.5, abs=0.002)
    assert rec["segment"]["url"].startswith("/api/v1/recordings/segments/")
    assert [f["start"] for f in rec["following"]][:1] == [datetime.fromtimestamp(s0 + 3, UTC).isoformat()]

    # the same instant written in the wall's time zone is the same answer
    local = await api.get("/api/v1/wall/at", t=t.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).isoformat())
    assert local.json()["tiles"] == at_t["tiles"] and local.json()["t"] == at_t["t"]

    t2 = datetime.fromtimestamp(s0 + 1.5, UTC)  # after the correction arrived, before the switch
    at_t2 = (await api.get("/api/v1/wall/at", t=t2.isoformat())).json()
    assert at_t2["state"]["layout"] == LAYOUT_A
    assert at_t2["tiles"]["aqi"]["value"] == 47.5 and at_t2["tiles"]["aqi"]["revision"] == 1
    assert sources.keys() - {a["source"] for a in at_t2["alerts"]} == set()
    assert [a for a in at_t2["alerts"] if a["source"] == f"tm-open-{RUN}"][0]["acked_by"] == "someone"

    t3 = datetime.fromtimestamp(s1 + 0.2, UTC)
    at_t3 = (await api.get("/api/v1/wall/at", t=t3.isoformat(), screen=1)).json()
    assert at_t3["state"]["layout"] == LAYOUT_B and list(at_t3["tiles"]) == ["note"]
    assert at_t3["region"] == {"x": 0, "y": 0, "w": 4, "h": 4}

    before = datetime.fromtimestamp(s0 + 0.1, UTC)  # the reading's ts, not yet received
    assert (await api.get("/api/v1/wall/at", t=before.isoformat())).json()["tiles"]["aqi"]["value"] is None


async def test_a_kpi_tile_at_an_instant_shows_the_indicators_definition_then(api: Api, pool: asyncpg.Pool) -> None:
    """Renamed and given new targets after T, an indicator shows at T as it was defined then
    (its names, unit and target, so whether the value met its target then): before its first
    change as it was stored (seeded, as a shipped one is: no audit of its own), after it as
    each change the audit log recorded."""
    from ioc.core.catalogue.model import KpiDef
    from ioc.core.storage import catalogue

    kpi, layout = f"mt.tm_{RUN}", f"tm-c-{RUN}"
    seeded = {"id": kpi, "sector": "mt", "name_vi": "Chỉ số trước", "name_en": "Index before", "unit": "điểm",
              "kind": "gauge", "min": 0, "max": 500, "target": 50, "better": "lower"}
    async with pool.acquire() as conn:
        await catalogue.add_missing(conn, [], [KpiDef(**seeded)], [])
    tiles = [{"id": "k", "kind": "kpi", "x": 0, "y": 0, "w": 2, "h": 2, "kpi": kpi, "area": AREA}]
    assert (await api.put(f"/api/v1/wall/layouts/{layout}", _layout(layout, tiles))).status_code == 200
    r = await api.post("/api/v1/wall/switch", {"layout": layout, "delay_s": 0})
    s0 = r.json()["at"]
    base = datetime.fromtimestamp(s0, UTC)
    async with pool.acquire() as conn, conn.transaction():
        await reading_writes.stage_and_upsert(conn, [Reading(base, kpi, AREA, 40.0, f"tm-{RUN}", 0, None, base)])
    changes = [{**seeded, "name_vi": "Chỉ số sau", "name_en": "Index after", "unit": "đ", "target": 30},
               {**seeded, "name_vi": "Chỉ số cuối", "name_en": "Index last", "target": 45}]
    for n, doc in enumerate(changes, 1):
        await _until(s0 + n)
        assert (await api.put(f"/api/v1/kpis/{kpi}", doc, role="admin")).status_code == 200

    async def tile(t: float) -> tuple[Any, ...]:
        k = (await api.get("/api/v1/wall/at", t=_iso_at(t))).json()["tiles"]["k"]
        assert k["value"] == 40.0
        return k["name_vi"], k["name_en"], k["unit"], k["target"], k["status"]

    assert await tile(s0 + 0.5) == ("Chỉ số trước", "Index before", "điểm", 50, "met")  # as it was stored
    assert await tile(s0 + 1.5) == ("Chỉ số sau", "Index after", "đ", 30, "missed")
    # the present at once (the hub's own catalogue follows changes only every 30 s)
    assert await tile(time.time()) == ("Chỉ số cuối", "Index last", "điểm", 45, "met")


def test_an_indicator_changed_only_after_an_instant_was_then_as_it_shipped() -> None:
    from ioc.core.catalogue.shipped import shipped_catalogue
    from ioc.serve.api.routes_replay import metas_then
    from ioc.serve.wall.tiledata import meta_of

    aqi = next(k for k in shipped_catalogue()[1] if k.id == "mt.aqi")
    now = {"mt.aqi": meta_of({**aqi.model_dump(mode="json"), "name_vi": "đổi tên", "target": 1.0}),
           "x.new": meta_of({"id": "x.new", "name_vi": "mới", "name_en": "new", "target": 3})}
    changed_then = {**aqi.model_dump(mode="json"), "name_vi": "lần đổi đầu"}
    then = metas_then(now, {"mt.aqi": None, "x.new": None}, lambda: {aqi.id: aqi})
    assert then["mt.aqi"] == meta_of(aqi.model_dump(mode="json")), "changed only after: as it shipped"
    assert then["x.new"] is now["x.new"], "created after the instant: as it is now"
    assert metas_then(now, {"mt.aqi": changed_then}, dict)["mt.aqi"].name_vi == "lần đổi đầu"
    assert metas_then(now, {}, dict) == now


async def test_a_whole_walls_recordings_at_an_instant_come_from_one_query(pool: asyncpg.Pool) -> None:
    """`around`, what /wall/at and a replay's start read: per camera and stream, the segment
    holding T with the ones that follow within 5 minutes of its end, or the gap's edges."""
    a, b, none = f"tm-around-a-{RUN}", f"tm-around-b-{RUN}", f"tm-around-none-{RUN}"
    t0 = time.time() - 3600
    seg = [(a, t0, t0 + 4), (a, t0 + 4, t0 + 8), (a, t0 + 8, t0 + 12), (a, t0 + 12, t0 + 16),
           (a, t0 + 16 + 400, t0 + 420),  # after a gap of more than 5 minutes
           (b, t0 - 30, t0 - 20), (b, t0 + 60, t0 + 64)]
    async with pool.acquire() as conn:
        await rec_store.add_segments(conn, [(c, s, e, 10, segment_path(c, s, e)) for c, s, e in seg])
        await rec_store.add_segments(conn, [(a, t0 + 1, t0 + 5, 5, segment_path(a, t0 + 1, t0 + 5, "sub"))], "sub")
        at = datetime.fromtimestamp(t0 + 2, UTC)
        found = await rec_store.around(conn, [a, b, none, a], at)
        at_end = await rec_store.around(conn, [a], datetime.fromtimestamp(t0 + 15, UTC))
        gap = await rec_store.around(conn, [a], datetime.fromtimestamp(t0 + 100, UTC))
        only_sub = await rec_store.around(conn, [a, b], at, streams=("sub",))

    def start(row: dict[str, Any] | None) -> float | None:
        return None if row is None else row["started_at"].timestamp()

    main = found[(a, "main")]
    assert start(main["segment"]) == pytest.approx(t0) and main["segment"]["stream"] == "main"
    assert [start(r) for r in main["following"]] == [pytest.approx(t0 + 4), pytest.approx(t0 + 8)]
    assert start(found[(a, "sub")]["segment"]) == pytest.approx(t0 + 1)
    assert found[(a, "sub")]["segment"]["path"].split("/")[-2] == "sub"
    assert found[(a, "sub")]["following"] == []
    other = found[(b, "main")]  # a gap: the last recorded time before T and the first after
    assert other["segment"] is None and other["following"] == []
    assert other["before"].timestamp() == pytest.approx(t0 - 20)
    assert other["after"].timestamp() == pytest.approx(t0 + 60)
    assert (none, "main") not in found and (b, "sub") not in found  # never recorded: nothing
    assert at_end[(a, "main")]["following"] == [], "the next segment starts more than 5 minutes later"
    assert gap[(a, "main")]["segment"] is None
    assert gap[(a, "main")]["before"].timestamp() == pytest.approx(t0 + 16)
    assert gap[(a, "main")]["after"].timestamp() == pytest.approx(t0 + 416)
    assert list(only_sub) == [(a, "sub")] and only_sub[(a, "sub")]["segment"]["id"] == found[(a, "sub")]["segment"]["id"]


async def test_who_may_look_at_the_past_and_replay_it(api: Api, pool: asyncpg.Pool) -> None:
    r = await api.post("/api/v1/wall/switch", {"layout": LAYOUT_A, "delay_s": 0})
    s0 = r.json()["at"]
    async with pool.acquire() as conn:
        await rec_store.add_segments(conn, [
            (CAM, s0 + 0.2, s0 + 4, 1000, segment_path(CAM, s0 + 0.2, s0 + 4)),
            (OTHER_CAM, s0 + 0.2, s0 + 4, 1000, segment_path(OTHER_CAM, s0 + 0.2, s0 + 4))])
        ids = {r["camera"]: r["id"] for r in await conn.fetch(
            "SELECT camera, id FROM recording_segments WHERE camera = ANY($1::text[]) AND started_at = $2",
            [CAM, OTHER_CAM], datetime.fromtimestamp(s0 + 0.2, UTC))}
    for cam in (CAM, OTHER_CAM):
        (api.root / segment_path(cam, s0 + 0.2, s0 + 4)).parent.mkdir(parents=True, exist_ok=True)
        (api.root / segment_path(cam, s0 + 0.2, s0 + 4)).write_bytes(b"\0" * 1000)
    await _until(s0 + 1)
    t = datetime.fromtimestamp(s0 + 0.5, UTC).isoformat()
    assert (await api.get("/api/v1/wall/at", role="leader", t=t)).status_code == 200
    assert (await api.get("/api/v1/wall/at", role="agency", t=t)).status_code == 403
    assert (await api.get("/api/v1/wall/at", role="screen", t=t)).status_code == 403, "live: no past for screens"
    assert (await api.get(f"/api/v1/recordings/segments/{ids[CAM]}", role="screen")).status_code == 403
    assert (await api.get("/api/v1/wall/at", t="2026-01-01T10:00:00")).status_code == 422, "no time zone"
    future = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
    assert (await api.get("/api/v1/wall/at", t=future)).status_code == 422
    assert (await api.post("/api/v1/wall/replay", {"action": "start", "t": t}, role="leader")).status_code == 403
    assert (await api.post("/api/v1/wall/replay", {"action": "pause"})).status_code in (200, 409)

    r = await api.post("/api/v1/wall/replay", {"action": "start", "t": t, "speed": 4})
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["replay"]["speed"] == 4 and started["replay"]["t"] == pytest.approx(s0 + 0.5)
    assert started["at"] > time.time() - 0.5, "every screen starts at an instant announced ahead"
    state = (await api.get("/api/v1/wall/state")).json()
    assert state["replay"]["t"] == pytest.approx(s0 + 0.5)
    # while the wall replays, a screen sees the past and plays the cameras the wall showed then
    assert (await api.get("/api/v1/wall/at", role="screen", t=t, screen=5)).status_code == 200
    assert (await api.get(f"/api/v1/recordings/segments/{ids[CAM]}", role="screen")).status_code == 200
    assert (await api.get(f"/api/v1/recordings/segments/{ids[OTHER_CAM]}", role="screen")).status_code == 403
    assert (await api.get(f"/api/v1/cameras/{CAM}/recordings/at", role="screen", t=t)).status_code == 403

    async def replay(body: dict[str, Any]) -> dict[str, Any]:
        r = await api.post("/api/v1/wall/replay", body)
        assert r.status_code == 200, r.text
        return r.json()

    paused = (await replay({"action": "pause"}))["replay"]
    assert paused["paused"] and paused["t"] >= s0 + 0.5
    stepped = (await replay({"action": "step", "step_s": -2}))["replay"]
    assert stepped["t"] == pytest.approx(paused["t"] - 2) and stepped["paused"]
    assert (await api.post("/api/v1/wall/replay", {"action": "speed", "speed": 17})).status_code == 422
    live = await replay({"action": "live"})
    assert live["replay"] is None
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT actor, details FROM audit_log WHERE action = 'wall.replay' ORDER BY id DESC LIMIT 4")
    assert [r["actor"] for r in rows] == [api.users["operator"][0]] * 4
    assert '"live"' in rows[0]["details"] and '"step"' in rows[1]["details"]
    # back to live is announced ahead: the screens' last looks at the past are answered until then
    assert (await api.get("/api/v1/wall/at", role="screen", t=t)).status_code == 200
    await _until(live["at"] + 2.1)
    assert (await api.get(f"/api/v1/recordings/segments/{ids[CAM]}", role="screen")).status_code == 403
    assert (await api.get("/api/v1/wall/at", role="screen", t=t)).status_code == 403


# -- the replay on the real wall pages, in Chromium -------------------------------------------------
# The frame number burnt into the rig's counter clip (tests/rigs/rtsp/counter.py), read from the
# replaying camera tile's <video>: drawn on a canvas, 16 blocks of 32 px, MSB first, and below
# them the same bits inverted.
READ_VIDEO_COUNTER = """(tile) => {
  const v = tile.querySelector("video.rec-active");  // the one on show (the other loads what comes next)
  if (!v || v.readyState < 2) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  const value = (%s)(g.getImageData(0, 0, 512, 64).data);
  return { value, time: v.currentTime, paused: v.paused, position: window.__ioc.replayer.position() };
}""" % COUNTER_FROM_PIXELS
FPS = 25  # the counter clip's frame rate


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def _a_past(api: Api, pool: asyncpg.Pool) -> tuple[float, float]:
    """Layout A from s0 with a reading received at s0 + 0.2 (61) and its correction received at
    s0 + 2 (68.5), the camera recorded from s0 (the counter clip's first 10 s in two segments,
    remuxed as the camera service writes them), then layout B from s1 = s0 + 8; returns (s0, s1)."""
    from tests.rigs.rtsp.rig import media_path

    await api.post("/api/v1/wall/replay", {"action": "live"})  # whatever an earlier test left
    r = await api.post("/api/v1/wall/switch", {"layout": LAYOUT_A, "delay_s": 0})
    s0 = r.json()["at"]
    base = datetime.fromtimestamp(s0, UTC)
    agency = f"tmp-{RUN}"
    await _write(pool, agency, base + timedelta(seconds=0.1), 61.0, 0, base + timedelta(seconds=0.2))
    await _write(pool, agency, base + timedelta(seconds=0.1), 68.5, 1, base + timedelta(seconds=2.0))
    rows = []
    for start in (0, 5):  # two segments of 5 s, cut on the clip's keyframes (one a second)
        rel = segment_path(CAM, s0 + start, s0 + start + 5)
        (api.root / rel).parent.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-v", "error", "-y", "-ss", str(start), "-i", str(media_path("counter-360p.mp4")), "-t", "5",
            "-an", "-c", "copy", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
            str(api.root / rel))
        assert await proc.wait() == 0
        rows.append((CAM, s0 + start, s0 + start + 5, (api.root / rel).stat().st_size, rel))
    async with pool.acquire() as conn:
        await rec_store.add_segments(conn, rows)
    await _until(s0 + 8)
    r = await api.post("/api/v1/wall/switch", {"layout": LAYOUT_B, "delay_s": 0})
    assert r.status_code == 200
    return s0, r.json()["at"]


async def test_a_replay_on_the_screens_shows_the_past_and_returns_to_live_together(
        api: Api, pool: asyncpg.Pool, chromium: Any) -> None:
    from playwright.async_api import expect

    s0, s1 = await _a_past(api, pool)
    tokens = {5: api.heads["screen"]["Authorization"][7:]}
    async with httpx.AsyncClient(base_url=api.proc.base, timeout=20) as c:
        for n in (1, 9):
            r = await c.post("/api/v1/wall/screen-tokens", json={"name": f"tm{RUN}-screen-{n}"},
                             headers=api.heads["admin"])
            tokens[n] = r.json()["token"]
    ctx = await chromium.new_context(viewport={"width": 1920, "height": 1080}, locale="vi-VN",
                                    timezone_id="Europe/Paris")  # the pages must not use the device's zone
    watch = Watch(api.proc.base)
    try:
        pages = {}
        for n, token in tokens.items():
            page = watch.attach(await ctx.new_page())
            await page.goto(f"{api.proc.base}/wall/screen.html?screen={n}#token={token}")
            await expect(page.locator("body")).to_have_attribute("data-layout", LAYOUT_B, timeout=15000)
            pages[n] = page
        p5 = pages[5]
        assert await p5.locator("body").get_attribute("data-replay") in (None, "off")

        # the wall into replay at T, paused (the reading had arrived, its correction not yet)
        t = datetime.fromtimestamp(s0 + 1.0, UTC)
        r = await api.post("/api/v1/wall/replay", {"action": "start", "t": t.isoformat(), "paused": True})
        assert r.status_code == 200, r.text
        for page in pages.values():
            await expect(page.locator("body")).to_have_attribute("data-replay", "on", timeout=10000)
            banner = page.locator("#replay-banner")
            await expect(banner).to_be_visible()
            await expect(banner.locator(".vi")).to_contain_text("ĐANG PHÁT LẠI QUÁ KHỨ")
            await expect(banner.locator(".en")).to_contain_text("REPLAY OF THE PAST")
            await expect(banner.locator(".en")).to_contain_text("paused")
        # the past layout (A, not the live B) with the KPI value as it was known then
        past = p5.locator("#past")
        kpi = past.locator('.slot[data-tile="aqi"] .kpi-number')
        await expect(kpi).to_have_attribute("data-value", "61", timeout=10000)
        # shown from the past the hub sent with the replay: no screen had to ask /wall/at first
        asked = "() => [window.__ioc.replayer.pushedShown, window.__ioc.replayer.fetches]"
        assert [await page.evaluate(asked) for page in pages.values()] == [[1, 0]] * len(pages)
        # and its chart as it was known then (the series today holds the correction, 68.5)
        chart = past.locator('.slot[data-tile="aqi-chart"] .tile')
        q = {"kpi": KPI, "area": AREA, "bucket": "1m", "start": (t - timedelta(hours=1)).isoformat(), "end": t.isoformat()}
        then = (await api.get("/api/v1/series", **q, as_of=t.isoformat())).json()["points"][-1]["value"]
        today = (await api.get("/api/v1/series", **q)).json()["points"][-1]["value"]
        assert then != today  # the minute's mean with 61, and with its correction 68.5
        await expect(chart).to_have_attribute("data-last-value", str(then).removesuffix(".0"), timeout=10000)
        assert await past.locator('.slot[data-tile="note"]').count() == 0
        local = t.astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))  # the pages' device is in Paris: the wall's zone shows
        await expect(p5.locator("#replay-banner .vi")).to_contain_text(local.strftime("%d/%m/%Y %H:%M:%S"))
        cam = past.locator('.slot[data-tile="cam"] .tile')
        await expect(cam).to_have_attribute("data-segment", re.compile(r"^\d+$"), timeout=15000)
        # the video shows the frame of the replayed instant (the clip's burnt-in frame number)
        await _frame_is(p5, cam, 1.0)
        await p5.screenshot(path=str(api.root.parent / "replay-screen-5.png"))
        r = await api.post("/api/v1/wall/replay", {"action": "step", "step_s": 0.52})
        assert r.status_code == 200, r.text
        await _frame_is(p5, cam, 1.52)
        # a later instant: the correction had arrived by then
        later = datetime.fromtimestamp(s0 + 2.5, UTC)
        r = await api.post("/api/v1/wall/replay", {"action": "seek", "t": later.isoformat()})
        assert r.status_code == 200, r.text
        await expect(kpi).to_have_attribute("data-value", "68.5", timeout=10000)
        assert await p5.evaluate(asked) == [3, 0], "a step and a seek come with their instant's past too"
        await _frame_is(p5, cam, 2.5)
        # played at 1x across the end of the first segment: the next one plays on
        first = await cam.get_attribute("data-segment")
        r = await api.post("/api/v1/wall/replay", {"action": "seek", "t": _iso_at(s0 + 4.2)})
        assert r.status_code == 200, r.text
        await _frame_is(p5, cam, 4.2)
        r = await api.post("/api/v1/wall/replay", {"action": "resume", "speed": 1})
        assert r.status_code == 200, r.text
        await expect(cam).not_to_have_attribute("data-segment", first, timeout=15000)
        await _frame_at_least(p5, cam, 5.2 * FPS)
        # played at 8x, the replay moves on by itself: past the switch to B, the past shows B
        r = await api.post("/api/v1/wall/replay", {"action": "resume", "speed": 8})
        assert r.status_code == 200, r.text
        await expect(past.locator('.slot[data-tile="note"]')).to_have_count(1, timeout=15000)
        assert float(await p5.locator("body").get_attribute("data-replay-at")) >= s1 - 1
        assert await past.locator('.slot[data-tile="aqi"]').count() == 0

        # back to live: every screen at the announced instant, the live layout again
        r = await api.post("/api/v1/wall/replay", {"action": "live"})
        at = r.json()["at"]
        for page in pages.values():
            await expect(page.locator("body")).to_have_attribute("data-replay", "off", timeout=10000)
            await expect(page.locator("#replay-banner")).to_be_hidden()
        shown = [await page.evaluate("() => window.__ioc.replayChanged") for page in pages.values()]
        assert max(shown) - min(shown) < 1.0 and min(shown) >= at - 0.3, (shown, at)
        await expect(pages[1].locator('.slot[data-tile="note"]')).to_be_visible()
        assert await p5.locator("#past .slot").count() == 0
        assert not watch.errors, watch.errors
        assert not watch.foreign(), watch.foreign()
    finally:
        await ctx.close()


def _iso_at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


async def _frame_at_least(page: Any, cam: Any, frame: float) -> None:
    """The video plays on to at least this frame of the clip."""
    await _video_until(page, cam, lambda r: r["value"] >= frame, f"frame {frame:.0f} or later")


async def _frame_is(page: Any, cam: Any, offset_s: float) -> None:
    """The paused video shows the frame of `offset_s` into the clip, within one frame."""
    want = offset_s * FPS
    await _video_until(page, cam, lambda r: r["paused"] and abs(r["value"] - want) <= 1.01,
                       f"frame {want:.1f}, paused")


async def _video_until(page: Any, cam: Any, ok: Any, wanted: str) -> None:
    """Read the counter from the tile's <video> until `ok(reading)` (20 s at most)."""
    deadline = time.monotonic() + 20
    last = None
    while time.monotonic() < deadline:
        try:
            last = await cam.evaluate(READ_VIDEO_COUNTER, timeout=2000)
        except Exception as exc:  # the tile is being remade: look again
            last = {"error": str(exc)[:80]}
        if last and last.get("value") is not None and ok(last):
            return
        await page.wait_for_timeout(200)
    state = await page.evaluate("""() => ({body: {...document.body.dataset},
      past: [...document.querySelectorAll('#past .slot')].map((s) => s.dataset.tile)})""")
    raise AssertionError(f"the video shows {last}, wanted {wanted}; {state}")


async def test_the_console_previews_the_past_alone_and_drives_the_screens(
        api: Api, pool: asyncpg.Pool, chromium: Any) -> None:
    """The operator picks an instant in the console: the preview replays it on the mini-wall
    only (the screens stay live), "replay on the wall" puts the screens into it, and "back to
    live" ends it; each command is audited with the operator's name."""
    import math

    from playwright.async_api import expect

    from tests.test_wall_pages import log_in

    s0, _ = await _a_past(api, pool)
    t = math.ceil(s0 + 0.3)  # a whole second (the picker's step), after the reading, before its correction
    local = datetime.fromtimestamp(t, ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%Y-%m-%dT%H:%M:%S")
    ctx = await chromium.new_context(viewport={"width": 1600, "height": 1000}, locale="vi-VN",
                                     timezone_id="Europe/Paris")
    watch = Watch(api.proc.base)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{api.proc.base}/wall/console.html")
        await log_in(page, api.users["operator"])
        await expect(page.locator("body")).to_have_attribute("data-layout", LAYOUT_B, timeout=15000)
        await page.locator("#replay-t").fill(local)
        await page.locator("#replay-speed").select_option("1")
        await page.locator("#replay-preview").click()
        await expect(page.locator("body")).to_have_attribute("data-replay", "preview", timeout=10000)
        mini = page.locator("#mini-past")
        await expect(mini.locator('.slot[data-tile="aqi"] .kpi-number')).to_have_attribute("data-value", "61",
                                                                                          timeout=10000)
        await expect(page.locator("#replay-status")).to_contain_text("Đang xem trước")
        assert (await api.get("/api/v1/wall/state")).json()["replay"] is None, "a preview leaves the screens live"
        await page.locator("#replay-pause").click()
        await expect(page.locator("#replay-status")).to_contain_text("tạm dừng", timeout=10000)
        await page.locator("#replay-live").click()
        await expect(page.locator("body")).to_have_attribute("data-replay", "off", timeout=10000)
        await expect(mini).to_be_hidden()

        await page.locator("#replay-wall").click()
        await expect(page.locator("body")).to_have_attribute("data-replay", "wall", timeout=10000)
        state = (await api.get("/api/v1/wall/state")).json()
        assert state["replay"] and state["replay"]["t"] == t and state["replay"]["by"] == api.users["operator"][0]
        await expect(mini.locator('.slot[data-tile="cam"]')).to_have_count(1, timeout=10000)
        await page.locator("#replay-live").click()
        await expect(page.locator("body")).to_have_attribute("data-replay", "off", timeout=10000)
        assert (await api.get("/api/v1/wall/state")).json()["replay"] is None
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT action, details->>'action' AS what FROM audit_log WHERE actor = $1 "
                                    "AND action LIKE 'wall.replay%' ORDER BY id DESC LIMIT 5", api.users["operator"][0])
        assert [(r["action"], r["what"]) for r in rows] == [
            ("wall.replay", "live"), ("wall.replay", "start"), ("wall.replay_preview", "live"),
            ("wall.replay_preview", "pause"), ("wall.replay_preview", "start")]
        assert not watch.errors, watch.errors
    finally:
        await ctx.close()


LAYOUT_C = f"tm-c-{RUN}"
TILES_C = [  # on screen 5 (columns and rows 4-7 of 12): two small camera tiles, one large
    {"id": "cam-s", "kind": "camera", "x": 4, "y": 4, "w": 2, "h": 2, "camera": CAM},
    {"id": "cam-o", "kind": "camera", "x": 6, "y": 4, "w": 2, "h": 2, "camera": OTHER_CAM},
    {"id": "cam-l", "kind": "camera", "x": 4, "y": 6, "w": 4, "h": 2, "camera": CAM},
]
WATCH_STREAMS = """() => {
  window.__streams = {};
  new MutationObserver((changes) => {
    for (const c of changes) {
      const slot = c.target.closest(".slot");
      if (!slot || !c.target.dataset.stream) continue;
      const seen = (window.__streams[slot.dataset.tile] ||= []);
      if (seen[seen.length - 1] !== c.target.dataset.stream) seen.push(c.target.dataset.stream);
    }
  }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["data-stream"] });
}"""
# A tile is blank when no <video> is on show, or the one on show has no picture. One that is
# seeking (a drift corrected on a busy machine) keeps painting the picture it had: counted apart.
WATCH_TILE = """(tile) => {
  const st = (window.__recWatch = { blank: 0, seeking: 0, samples: 0, seq: [], stop: false });
  const step = () => {
    const v = tile.querySelector("video.rec-active");
    st.samples += 1;
    if (!v || getComputedStyle(v).visibility !== "visible" || v.readyState < 1) st.blank += 1;
    else if (v.readyState < 2) st[v.seeking ? "seeking" : "blank"] += 1;
    const now = `${tile.dataset.segment}/${tile.dataset.readAhead || ""}`;
    if (st.seq[st.seq.length - 1] !== now) st.seq.push(now);
    if (!st.stop) requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}"""


async def _record(api: Api, cam: str, clip: str, start: float, stream: str) -> list[tuple[str, float, float, int, str]]:
    """The clip's first 10 s as two 5 s fMP4 segments of `stream` from `start` (as the camera service writes)."""
    from tests.rigs.rtsp.rig import media_path

    rows = []
    for off in (0, 5):
        rel = segment_path(cam, start + off, start + off + 5, stream)  # type: ignore[arg-type]
        (api.root / rel).parent.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-v", "error", "-y", "-ss", str(off), "-i", str(media_path(clip)), "-t", "5", "-an", "-c", "copy",
            "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(api.root / rel))
        assert await proc.wait() == 0
        rows.append((cam, start + off, start + off + 5, (api.root / rel).stat().st_size, rel))
    return rows


async def test_replay_tiles_play_the_stream_their_size_calls_for_and_read_ahead(
        api: Api, pool: asyncpg.Pool, chromium: Any) -> None:
    """A small replay tile plays the recorded sub-stream, a large one the main stream (as live
    tiles do, after a quick first picture from the sub-stream); a small tile of a camera without
    a sub recording plays its main one. While a segment plays, the next one is fetched ahead,
    and the tile never goes blank crossing over."""
    from playwright.async_api import expect

    await api.post("/api/v1/wall/replay", {"action": "live"})
    assert (await api.put(f"/api/v1/wall/layouts/{LAYOUT_C}", _layout(LAYOUT_C, TILES_C))).status_code == 200
    r = await api.post("/api/v1/wall/switch", {"layout": LAYOUT_C, "delay_s": 0})
    s0 = r.json()["at"]
    main = await _record(api, CAM, "counter-1080p.mp4", s0, "main")
    sub = await _record(api, CAM, "counter-360p.mp4", s0, "sub")
    other = await _record(api, OTHER_CAM, "counter-360p.mp4", s0, "main")
    async with pool.acquire() as conn:
        await rec_store.add_segments(conn, main + other)
        await rec_store.add_segments(conn, sub, "sub")
        ids = {r["path"]: r["id"] for r in await conn.fetch(
            "SELECT id, path FROM recording_segments WHERE path = ANY($1::text[])", [x[4] for x in main + sub])}
    await _until(s0 + 10.5)
    r = await api.post("/api/v1/wall/switch", {"layout": LAYOUT_B, "delay_s": 0})
    assert r.status_code == 200
    # the API: both streams' segments per camera tile, and the stream the tile's size calls for
    doc = (await api.get("/api/v1/wall/at", t=_iso_at(s0 + 1))).json()["tiles"]
    assert doc["cam-s"]["recording"]["segment"]["id"] == ids[main[0][4]]
    assert doc["cam-s"]["recording_sub"]["segment"]["id"] == ids[sub[0][4]]
    assert doc["cam-s"]["recording_sub"]["following"][0]["id"] == ids[sub[1][4]]
    assert doc["cam-o"]["recording_sub"] is None and doc["cam-o"]["recording"] is not None
    assert {d["stream"] for d in doc.values()} == {"sub"}  # the console's mini-wall: small tiles

    async with _screen_5(api, chromium) as (page, watch):
        await page.evaluate(WATCH_STREAMS)
        r = await api.post("/api/v1/wall/replay", {"action": "start", "t": _iso_at(s0 + 1.0), "paused": True})
        assert r.status_code == 200, r.text
        past = page.locator("#past")
        small, large, other_tile = (past.locator(f'.slot[data-tile="{t}"] .tile') for t in ("cam-s", "cam-l", "cam-o"))
        await expect(small).to_have_attribute("data-stream", "sub", timeout=15000)
        await expect(small).to_have_attribute("data-segment", str(ids[sub[0][4]]))
        await expect(large).to_have_attribute("data-stream", "main", timeout=15000)
        await expect(large).to_have_attribute("data-segment", str(ids[main[0][4]]))
        await expect(other_tile).to_have_attribute("data-stream", "main", timeout=15000)  # no sub recording
        heights = {name: await tile.evaluate('(t) => t.querySelector("video.rec-active").videoHeight')
                   for name, tile in (("small", small), ("large", large))}
        assert heights == {"small": 360, "large": 1080}, heights
        # the large tile showed its sub-stream's picture first (quick), then its main one
        shown = await page.evaluate("() => window.__streams")
        assert shown["cam-l"] == ["sub", "main"] and shown["cam-s"] == ["sub"] and shown["cam-o"] == ["main"], shown
        await _frame_is(page, small, 1.0)  # the sub recording at the replayed instant
        await _frame_is(page, large, 1.0)  # and the main one, the same frame

        # played on from 3.0 s: the next sub segment is fetched before the first ends, and the
        # tile crosses over to it without a blank frame
        r = await api.post("/api/v1/wall/replay", {"action": "seek", "t": _iso_at(s0 + 3.0)})
        await _frame_is(page, small, 3.0)
        await small.evaluate(WATCH_TILE)
        r = await api.post("/api/v1/wall/replay", {"action": "resume", "speed": 1})
        assert r.status_code == 200, r.text
        first, second = str(ids[sub[0][4]]), str(ids[sub[1][4]])
        await expect(small).to_have_attribute("data-segment", second, timeout=15000)
        await _frame_at_least(page, small, 5.3 * FPS)
        st = await page.evaluate("() => { window.__recWatch.stop = true; return window.__recWatch; }")
        assert f"{first}/{second}" in st["seq"], st["seq"]  # read ahead while the first still played
        assert st["seq"].index(f"{first}/{second}") < st["seq"].index(f"{second}/{second}"), st["seq"]
        assert st["samples"] > 20 and st["blank"] == 0, st
        assert not watch.errors, watch.errors


async def test_a_screen_gets_a_replay_ready_out_of_sight_and_starts_it_at_its_instant(
        api: Api, pool: asyncpg.Pool, chromium: Any) -> None:
    """Announced ahead (as every wall change is), a replay from live is made ready at once:
    the screen still shows live while its past tiles fetch and seek their recordings, held at
    the instant's picture; at `at` it shows them, already there, and they play from then."""
    from playwright.async_api import expect

    s0, _ = await _a_past(api, pool)
    async with _screen_5(api, chromium) as (page, watch):
        at, cam = await _made_ready(api, page, s0 + 1.0, 6)
        assert time.time() < at and await page.locator("body").get_attribute("data-replay") != "on", \
            "ready before its instant, and out of sight until then"
        await expect(page.locator("#past")).to_be_hidden()
        shown = await _shown_at(page, at)
        assert len(shown) == 1 and shown[0]["ready"] >= 2, shown  # its picture was there when it showed
        assert abs(shown[0]["time"] - 1.0) < 0.05, shown  # held at the instant's picture, not played ahead
        await _frame_at_least(page, cam, 2.0 * FPS)  # and it plays from then on
        assert not watch.errors, watch.errors


async def test_a_change_before_a_replay_shows_replaces_what_is_being_made_ready(
        api: Api, pool: asyncpg.Pool, chromium: Any) -> None:
    """The operator seeks before the announced start: the screen makes the new instant ready
    in place of the first, and shows that one's picture when it switches."""
    s0, _ = await _a_past(api, pool)
    async with _screen_5(api, chromium) as (page, watch):
        first_at, cam = await _made_ready(api, page, s0 + 1.0, 8)
        first = await cam.get_attribute("data-segment")
        r = await api.post("/api/v1/wall/replay", {"action": "seek", "t": _iso_at(s0 + 6.5), "delay_s": 3})
        assert r.status_code == 200, r.text
        at = r.json()["at"]
        assert at < first_at and time.time() < at
        shown = await _shown_at(page, at)
        assert len(shown) == 1 and shown[0]["ready"] >= 2 and shown[0]["segment"] != first, (first, shown)
        assert abs(shown[0]["time"] - 1.5) < 0.05, shown  # the second segment at the sought instant
        await _frame_at_least(page, cam, 7.0 * FPS)  # and it plays (the past switches to layout B at s0 + 8)
        assert not watch.errors, watch.errors


async def _made_ready(api: Api, page: Any, t: float, delay_s: float) -> tuple[float, Any]:
    """Start a replay of `t` announced `delay_s` ahead; once screen 5's past camera tile has
    its segment (out of sight), its `at` and that tile."""
    from playwright.async_api import expect

    r = await api.post("/api/v1/wall/replay", {"action": "start", "t": _iso_at(t), "speed": 1, "delay_s": delay_s})
    assert r.status_code == 200, r.text
    cam = page.locator('#past .slot[data-tile="cam"] .tile')
    await expect(cam).to_have_attribute("data-segment", re.compile(r"^\d+$"), timeout=15000)
    return r.json()["at"], cam


async def _shown_at(page: Any, at: float) -> list[dict[str, Any]]:
    """Once the screen shows the replay (not before `at`): what its camera tiles showed then."""
    from playwright.async_api import expect

    await expect(page.locator("body")).to_have_attribute("data-replay", "on", timeout=15000)
    changed, shown = await page.evaluate("() => [window.__ioc.replayChanged, window.__ioc.replayShownWith]")
    assert changed >= at - 0.05, (changed, at)
    return shown


@asynccontextmanager
async def _screen_5(api: Api, chromium: Any) -> AsyncIterator[tuple[Any, Watch]]:
    """Wall screen 5 in Chromium, showing the live layout B; back to live after."""
    from playwright.async_api import expect

    token = api.heads["screen"]["Authorization"][7:]
    ctx = await chromium.new_context(viewport={"width": 1920, "height": 1080})
    watch = Watch(api.proc.base)
    try:
        page = watch.attach(await ctx.new_page())
        await page.goto(f"{api.proc.base}/wall/screen.html?screen=5#token={token}")
        await expect(page.locator("body")).to_have_attribute("data-layout", LAYOUT_B, timeout=15000)
        yield page, watch
    finally:
        await ctx.close()
        await api.post("/api/v1/wall/replay", {"action": "live"})
