"""One sharding rule for the ingest's agencies and the cameras (`ioc/core/sharding.py`).

The rule itself (stable across runs and hosts, adding a key moves only that key, even
balance), the two services agreeing on it, and real processes: two `ioc cameras` shards
while an admin adds a camera and a wall watches (nothing blanked, nothing moved), a camera
that changes owner keeps its retained tiles, and two `ioc ingest` shards that store every
reading once, each agency through the worker the rule names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import cv2
import numpy as np
import orjson
import pytest

from camera.service import CameraService
from ingest.rules import Rules
from ingest.service import IngestService
from ioc.core.accounts import broker_accounts, create_agency
from ioc.core.cameras import Camera
from ioc.core.contracts import topics
from ioc.core.settings import load_settings, parse_mqtt_url
from ioc.core.sharding import mine, owner
from ioc.core.storage import cameras as camera_store
from ioc.core.storage.modes import StorageMode
from tests.conftest import REPO, IngestProcess, service_env
from tests.rigs.brokers import make_broker_rig
from tests.rigs.children import end, preexec, track
from tests.rigs.mosquitto import MosquittoRig
from tests.rigs.mqtt_clients import Client

# -- the rule -------------------------------------------------------------------------------

# fixed answers: a change of hash (or of how the key and index are fed to it) would give
# running workers of two versions different ideas of who owns what, so it must show here
EXPECTED = {"pl-01": (0, 0, 0), "pl-02": (1, 2, 2), "pl-03": (1, 1, 4), "pl-04": (0, 0, 0),
            "so-gtvt": (1, 1, 1), "cong-an": (1, 2, 3), "ha-nam": (1, 1, 3)}


def test_owners_are_fixed_across_runs_and_hosts() -> None:
    assert {k: (owner(k, 2), owner(k, 3), owner(k, 5)) for k in EXPECTED} == EXPECTED
    # a child interpreter (another hash seed for Python's own hash()) agrees
    code = "from ioc.core.sharding import owner; print([owner(k, 3) for k in %r])" % sorted(EXPECTED)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == str([EXPECTED[k][1] for k in sorted(EXPECTED)])
    assert all(owner(k, 1) == 0 for k in EXPECTED)
    with pytest.raises(ValueError):
        owner("pl-01", 0)
    with pytest.raises(ValueError):
        mine(["pl-01"], 2, 2)


def test_adding_or_removing_a_key_moves_only_that_key() -> None:
    keys = [f"cam-{i:03d}" for i in range(200)]
    for count in (2, 3, 5):
        before = [set(mine(keys, i, count)) for i in range(count)]
        # a new key sorting first would shift every position in a split by sorted position
        for new in ("aaa-first", "cam-100a", "zzz-last"):
            after = [set(mine(keys + [new], i, count)) for i in range(count)]
            assert [a - {new} for a in after] == before
            assert sum(new in a for a in after) == 1
        fewer = [set(mine(keys[1:], i, count)) for i in range(count)]
        assert fewer == [b - {keys[0]} for b in before]


def test_changing_n_moves_about_one_in_n_and_only_to_the_new_shard() -> None:
    keys = [f"agency-{i}" for i in range(1000)]
    for count in (2, 3, 4):
        moved = [k for k in keys if owner(k, count) != owner(k, count + 1)]
        assert all(owner(k, count + 1) == count for k in moved)  # to the new shard, never between old ones
        assert abs(len(moved) - len(keys) / (count + 1)) < 0.25 * len(keys) / (count + 1), (count, len(moved))


@pytest.mark.parametrize("count", [2, 3])
def test_balance_over_a_thousand_ids(count: int) -> None:
    keys = [secrets.token_hex(4) for _ in range(1000)]  # any ids, not only tidy ones
    sizes = [len(mine(keys, i, count)) for i in range(count)]
    assert sum(sizes) == 1000
    assert all(abs(s - 1000 / count) < 0.15 * 1000 / count for s in sizes), sizes


def test_the_ingest_and_the_cameras_split_the_same_way() -> None:
    ids = [f"so-{i:02d}" for i in range(40)]
    cams = [Camera(id=i, name=i, main_url=f"rtsp://10.0.0.1/{i}") for i in ids]
    for count in (2, 3):
        for index in range(count):
            settings = load_settings(mqtt_url="mqtt://u:p@127.0.0.1:1883", ingest_shard=f"{index}/{count}")
            ingest = IngestService(settings, None, StorageMode.PLAIN)  # type: ignore[arg-type]
            ingest.rules = Rules(agencies={i: frozenset() for i in ids})
            subs, _ = ingest.subscriptions()
            agencies = {topics.agency_of_kpi_topic(s.topic) for s in subs}
            service = CameraService(cams, settings.require_mqtt(), shard=(index, count))
            assert agencies == {c.id for c in service.cameras} == {i for i in ids if owner(i, count) == index}


# -- cameras: real processes, a wall watching ------------------------------------------------

def _clip(path: Path) -> Path:
    """A small looping video with motion everywhere (a healthy picture to the camera checks)."""
    rng = np.random.default_rng(7)
    background = rng.integers(0, 255, (180, 320, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 180))
    assert writer.isOpened()
    for f in range(40):
        img = np.roll(background, f * 8, axis=1)
        cv2.rectangle(img, (f * 7, 60), (f * 7 + 40, 120), (255, 255, 255), -1)
        writer.write(img)
    writer.release()
    return path


def _file_camera(cam_id: str, clip: Path) -> Camera:
    return Camera(id=cam_id, name=f"Camera {cam_id}", main_url=clip.as_uri(), tile_stream="main")


class Wall:
    """A wall-like subscriber: every message on these cameras' live topics, in order."""

    def __init__(self, broker: MosquittoRig, password: str, cams: list[str]) -> None:
        self.cams = cams
        self.client = Client(broker.host, broker.service_port, "svc-api", password).wait_connected()
        self.client.subscribe(topics.LIVE_CAMERA_ALL)
        self.client.subscribe(topics.STATUS_CAMERA_ALL)

    def ours(self) -> list[tuple[str, str, bytes]]:
        """(camera, channel, payload) of our cameras' status and tiles."""
        out = []
        for m in list(self.client.messages):
            parts = m.topic.split("/")
            if m.topic.startswith(f"{topics.LIVE_PREFIX}camera/") and parts[4] in self.cams:
                out.append((parts[4], "/".join(parts[5:]), bytes(m.payload)))
        return out

    def blanked(self) -> list[tuple[str, str]]:
        return [(c, ch) for c, ch, p in self.ours() if p == b"" and ch in ("status", "tile", "tile/hd")]

    def wait_tiles(self, cams: list[str], timeout: float) -> None:
        self.client.wait_for(lambda _: {c for c, ch, p in self.ours() if ch == "tile" and p} >= set(cams), timeout)

    def presence(self, worker: str) -> set[str]:
        found = [m.payload for m in self.client.messages if m.topic == topics.camera_presence(worker)]
        return set(orjson.loads(found[-1]).get("cameras", [])) if found else set()


def _log_events(path: Path, names: set[str]) -> list[tuple[str, str]]:
    """(message, camera) of the camera service's come-and-go log lines."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            rec = orjson.loads(line)
            if isinstance(rec, dict) and rec.get("msg") in names:
                out.append((rec["msg"], rec.get("camera", "")))
    return out


COME_AND_GO = {"camera added", "camera removed", "camera changed", "camera moved away"}


@contextlib.contextmanager
def _camera_shards(tmp_path: Path, broker: MosquittoRig, password: str, db_url: str,
                   worker: str, count: int) -> Iterator[list[tuple[str, Path]]]:
    """`ioc cameras --shard i/count` for every i, reloading the camera list every second."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_MQTT_URL": broker.url_for("svc-camera", password), "IOC_DATABASE_URL": db_url,
                "IOC_CAMERA_RELOAD_S": "1", "PYTHONPATH": str(REPO), "IOC_CAMERA_WORKER_ID": worker,
                "IOC_LOG_FORMAT": "json", "IOC_CAMERA_TILE_FPS": "2"})
    procs, shards = [], []
    try:
        for i in range(count):
            log_path = tmp_path / f"cameras-{i}of{count}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "ioc.cli", "cameras", "--shard", f"{i}/{count}"],
                                        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=preexec())
            track(proc)
            procs.append(proc)
            shards.append((f"{worker}-{i}of{count}", log_path))
        yield shards
        assert all(p.poll() is None for p in procs), "a camera shard died"
    finally:
        for p in procs:
            end(p)


def _ids_split_over(count: int, n: int) -> tuple[str, list[str]]:
    """A fresh prefix and n camera ids of it that every one of `count` shards has some of."""
    while True:
        prefix = f"sh{secrets.token_hex(3)}"
        ids = [f"{prefix}-c{i}" for i in range(1, n + 1)]
        if {owner(c, count) for c in ids} == set(range(count)):
            return prefix, ids


async def test_a_camera_added_while_two_shards_run_moves_no_other(
        tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str], pool: asyncpg.Pool,
        db_url: str) -> None:
    clip = _clip(tmp_path / "clip.mp4")
    prefix, first = _ids_split_over(2, 4)
    # sorts before the others: in a split by sorted position it would shift every one of them
    new = f"{prefix}-a0"
    async with pool.acquire() as conn:
        for cam_id in first:
            await camera_store.put_camera(conn, _file_camera(cam_id, clip), "test", create=True)
    wall = Wall(broker, service_passwords["svc-api"], [*first, new])
    try:
        with _camera_shards(tmp_path, broker, service_passwords["svc-camera"], db_url,
                            f"shard-{secrets.token_hex(2)}", 2) as shards:
            await asyncio.to_thread(wall.wait_tiles, first, 60)
            # each shard runs exactly the cameras the rule gives it (its birth message lists them)
            for i, (worker, _) in enumerate(shards):
                assert wall.presence(worker) & set(first) == {c for c in first if owner(c, 2) == i}

            async with pool.acquire() as conn:  # an admin adds a camera while both run
                await camera_store.put_camera(conn, _file_camera(new, clip), "test", create=True)
            await asyncio.to_thread(wall.wait_tiles, [new], 30)
            seen = len(wall.ours())
            await asyncio.sleep(4)  # a few more reloads: anything that would move has moved
            after = wall.ours()[seen:]
            assert {c for c, ch, p in after if ch == "tile" and p} >= set(first), "every camera kept publishing"

            events = {worker: _log_events(log, COME_AND_GO) for worker, log in shards}
            owner_worker = shards[owner(new, 2)][0]
            assert events[owner_worker] == [("camera added", new)], events
            assert [e for w, evs in events.items() if w != owner_worker for e in evs] == [], events
            assert wall.blanked() == [], "a camera's retained status or tile was cleared"

            # removing it from the registry still takes it off the wall (by its owner alone)
            async with pool.acquire() as conn:
                await camera_store.delete_camera(conn, new, "test")
            await asyncio.to_thread(wall.client.wait_for, lambda _: (new, "status") in wall.blanked(), 15)
            assert {c for c, _ in wall.blanked()} == {new}
            assert _log_events(shards[owner(new, 2)][1], {"camera removed"}) == [("camera removed", new)]
    finally:
        wall.client.close()
        async with pool.acquire() as conn:
            for cam_id in first:
                await camera_store.delete_camera(conn, cam_id, "test")


async def test_a_camera_that_changes_owner_is_never_blanked(
        tmp_path: Path, broker: MosquittoRig, service_passwords: dict[str, str]) -> None:
    """The old owner lets go without clearing: the retained tile stays until the new one publishes.

    A running process's share changes when N changes; here one service is told its new shard
    (1 of 2 after 0 of 1) at run time, with the same camera list.
    """
    clip = _clip(tmp_path / "clip.mp4")
    _, ids = _ids_split_over(2, 4)
    cams = [_file_camera(c, clip) for c in ids]
    listed = list(cams)

    async def listing() -> list[Camera]:
        return list(listed)

    target = parse_mqtt_url(broker.url_for("svc-camera", service_passwords["svc-camera"]))
    service = CameraService(cams, target, worker_id=f"move-{secrets.token_hex(2)}", reload=listing,
                            reload_every_s=0.3)
    wall = Wall(broker, service_passwords["svc-api"], ids)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.to_thread(wall.wait_tiles, ids, 30)
        stays = {c for c in ids if owner(c, 2) == 1}
        service.shard = (1, 2)  # N went from 1 to 2: the others now belong to shard 0
        deadline = time.monotonic() + 10
        while set(service.monitors) != stays and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert set(service.monitors) == stays
        await asyncio.sleep(1.0)
        assert wall.blanked() == [], "a camera that moved to another shard was taken off the wall"
        # a wall node starting now still gets every camera's retained tile and status
        late = Wall(broker, service_passwords["svc-api"], ids)
        try:
            await asyncio.to_thread(late.client.wait_for, lambda _: {(c, ch) for c, ch, p in late.ours() if p} >=
                                    {(c, ch) for c in ids for ch in ("tile", "status")}, 10)
        finally:
            late.client.close()
        # one removed from the registry altogether is still cleared
        gone = sorted(stays)[0]
        listed[:] = [c for c in cams if c.id != gone]
        await asyncio.to_thread(wall.client.wait_for, lambda _: (gone, "status") in wall.blanked(), 10)
        assert {c for c, _ in wall.blanked()} == {gone}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        wall.client.close()


# -- ingest: two shards, several agencies ------------------------------------------------------

async def test_two_ingest_shards_store_each_agency_once_through_its_owner(
        tmp_path: Path, pool: asyncpg.Pool, db_url: str, service_passwords: dict[str, str]) -> None:
    # agency k sends 40 * 2**k readings: a worker's count of accepted readings then names
    # exactly which agencies it handled
    while True:
        agencies = [f"sd{secrets.token_hex(3)}" for _ in range(4)]
        if {owner(a, 2) for a in agencies} == {0, 1}:
            break
    sizes = {a: 40 * 2 ** k for k, a in enumerate(agencies)}
    passwords = {}
    async with pool.acquire() as conn:
        for a in agencies:
            passwords[a] = await create_agency(conn, a, name_vi=f"Sở {a}", sectors=["tthc"], actor="test")
        accounts = await broker_accounts(conn)
    # a broker of its own: no other test's ingest worker may take a share
    rig = make_broker_rig(tmp_path / "broker", accounts).start()
    env = service_env(db_url, rig.url_for("svc-ingest", service_passwords["svc-ingest"]), IOC_INGEST_HEARTBEAT_S="0.3")
    tag = secrets.token_hex(2)
    workers = [IngestProcess({**env, "IOC_INGEST_SHARD": f"{i}/2"}, tmp_path / f"ingest-{i}.log",
                             f"shard-ingest-{i}-{tag}") for i in range(2)]
    pubs: list[Client] = []
    try:
        for w in workers:
            w.start()
        base = datetime.now(timezone.utc) - timedelta(days=5)
        for n, a in enumerate(agencies):
            pub = Client(rig.host, rig.port, a, passwords[a]).wait_connected()
            pubs.append(pub)
            await asyncio.to_thread(pub.publish_many, topics.kpi(a), [
                {"kpi": "tthc.dossiers_received", "area": "37", "value": i,
                 "ts": (base + timedelta(seconds=n * 100_000 + i)).isoformat()} for i in range(sizes[a])])
        expected = sum(sizes.values())
        deadline = time.monotonic() + 60
        async with pool.acquire() as conn:
            while time.monotonic() < deadline:
                stored = await conn.fetchval("SELECT count(*) FROM readings WHERE agency = ANY($1::text[])", agencies)
                if stored >= expected:
                    break
                await asyncio.sleep(0.2)
            per_agency = {r["agency"]: r["n"] for r in await conn.fetch(
                "SELECT agency, count(*) AS n FROM readings WHERE agency = ANY($1::text[]) GROUP BY agency", agencies)}
            assert per_agency == sizes, f"every reading stored once: {per_agency} of {sizes}"
            await asyncio.sleep(1.0)  # a heartbeat of each worker after its last batch
            rows = await conn.fetch("SELECT worker_id, readings_accepted, readings_duplicate FROM ingest_workers "
                                    "WHERE worker_id = ANY($1::text[])", [w.worker_id for w in workers])
        accepted = {r["worker_id"]: r["readings_accepted"] for r in rows}
        assert accepted == {w.worker_id: sum(sizes[a] for a in agencies if owner(a, 2) == i)
                            for i, w in enumerate(workers)}, (accepted, {a: owner(a, 2) for a in agencies})
        assert sum(r["readings_duplicate"] for r in rows) == 0
    finally:
        for pub in pubs:
            pub.close()
        for w in workers:
            w.stop()
        rig.stop()
