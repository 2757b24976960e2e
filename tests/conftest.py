"""Shared fixtures: a fresh PostgreSQL database, a real Mosquitto, `ioc ingest` processes.

Everything here is the real thing: the PostgreSQL server on 127.0.0.1:5432 (a database
of our own, dropped at the end), Mosquitto started from the files `ioc broker config`
writes, and the ingest run as the `ioc` command in a child process.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from ioc.core.accounts import broker_accounts, create_agency, create_user
from ioc.core.settings import load_settings
from ioc.core.storage.pool import create_pool
from ioc.core.storage.setup import prepare_database
from tests.rigs.brokers import BrokerRig, make_broker_rig
from tests.rigs.children import read_text
from tests.rigs.mqtt_clients import Client
from tests.rigs.serve import ServeProcess

ADMIN_DSN = os.environ.get("IOC_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parents[1]
SPOOL = Path(tempfile.mkdtemp(prefix="ioc-test-spool-"))  # this run's: a spool left by another never replays here
# the apps and services the tests start would otherwise make ./recordings in the checkout
RECORDINGS = Path(tempfile.mkdtemp(prefix="ioc-test-recordings-"))
os.environ.setdefault("IOC_RECORDINGS_DIR", str(RECORDINGS))
# the monthly reports' schedule would make last month's reports of every test agency in the
# background of every app a test starts: tests/test_monthly_report.py drives it itself
os.environ.setdefault("IOC_REPORT_SCHEDULE", "false")


def _dsn_for(dbname: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
async def db_url() -> AsyncIterator[str]:
    name = f"ioc_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _dsn_for(name)
    settings = load_settings(database_url=url)
    pool = await create_pool(url, app="ioc-test-setup")
    await prepare_database(pool, settings)
    await pool.close()
    yield url
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def storage_mode(db_url: str) -> str:
    """The mode the test database got: "plain" on plain PostgreSQL (CI), "timescale" where
    the server has the extension (README, "Running the tests on TimescaleDB")."""
    conn = await asyncpg.connect(db_url)
    try:
        return str(await conn.fetchval("SELECT value FROM ioc_meta WHERE key = 'storage_mode'"))
    finally:
        await conn.close()


async def timescale_available(db_url: str) -> bool:
    conn = await asyncpg.connect(db_url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"))
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(db_url, app="ioc-test", min_size=1, max_size=6)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def service_passwords(pool: asyncpg.Pool) -> dict[str, str]:
    out = {}
    async with pool.acquire() as conn:
        for name, role in (("svc-ingest", "ingest"), ("svc-api", "api"), ("svc-camera", "camera")):
            out[name] = await create_user(conn, name, role=role, actor="test")
    return out


@pytest.fixture(scope="session")
async def broker(
    tmp_path_factory: pytest.TempPathFactory, pool: asyncpg.Pool, service_passwords: dict[str, str]
) -> AsyncIterator[BrokerRig]:
    async with pool.acquire() as conn:
        accounts = await broker_accounts(conn)
    rig = make_broker_rig(tmp_path_factory.mktemp("mosquitto"), accounts)
    rig.start()
    yield rig
    rig.stop()


class Agencies:
    """Creates agencies with unique ids and tells the broker about them."""

    def __init__(self, pool: asyncpg.Pool, rig: BrokerRig) -> None:
        self.pool = pool
        self.rig = rig

    async def add(self, sectors: list[str], prefix: str = "ag") -> tuple[str, str]:
        agency_id = f"{prefix}-{secrets.token_hex(3)}"
        async with self.pool.acquire() as conn:
            password = await create_agency(conn, agency_id, name_vi=f"Cơ quan {agency_id}", sectors=sectors, actor="test")
            accounts = await broker_accounts(conn)
        await asyncio.to_thread(self.rig.reload_accounts, accounts)
        return agency_id, password


@pytest.fixture(scope="session")
async def agencies(pool: asyncpg.Pool, broker: BrokerRig) -> Agencies:
    return Agencies(pool, broker)


class IngestProcess:
    """`ioc ingest` in a child process, with its log kept for the assertions."""

    def __init__(self, env: dict[str, str], log_path: Path, worker_id: str) -> None:
        self.env = env
        self.log_path = log_path
        self.worker_id = worker_id
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> "IngestProcess":
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "ingest", "--worker-id", self.worker_id],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"mqtt connected"' in self.log_text(offset):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"ioc ingest exited with {self.proc.returncode}:\n{self.log_text(offset)[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"ioc ingest did not connect in {timeout} s:\n{self.log_text(offset)[-3000:]}")

    def log_text(self, offset: int = 0) -> str:
        return read_text(self.log_path, offset)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def ingest_env(db_url: str, broker: BrokerRig, service_passwords: dict[str, str]) -> dict[str, str]:
    return service_env(db_url, broker.url_for("svc-ingest", service_passwords["svc-ingest"]),
                       IOC_INGEST_HEARTBEAT_S="0.5")


def service_env(db_url: str, mqtt_url: str, **settings: str) -> dict[str, str]:
    """This environment without any IOC_ setting of the developer's, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": db_url, "IOC_MQTT_URL": mqtt_url, "IOC_LOG_FORMAT": "json",
                "PYTHONPATH": str(REPO), "IOC_INGEST_SPOOL_DIR": str(SPOOL), "IOC_REPORT_SCHEDULE": "false",
                "IOC_RECORDINGS_DIR": str(RECORDINGS), **settings})
    return env


@pytest.fixture(scope="session")
def ingest(ingest_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestProcess]:
    """One ingest worker for the whole session (tests that kill it use their own)."""
    proc = IngestProcess(ingest_env, tmp_path_factory.mktemp("ingest") / "ingest.log", "ingest-main").start()
    yield proc
    proc.stop()


@pytest.fixture
def ingest_factory(ingest_env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    made: list[IngestProcess] = []

    def make(worker_id: str, **env: str) -> IngestProcess:
        p = IngestProcess({**ingest_env, **env}, tmp_path / f"{worker_id}.log", worker_id)
        made.append(p)
        return p

    yield make
    for p in made:
        p.kill()


@pytest.fixture(scope="session")
def serve_env(db_url: str, broker: BrokerRig, service_passwords: dict[str, str]) -> dict[str, str]:
    return service_env(db_url, broker.url_for("svc-api", service_passwords["svc-api"]),
                       IOC_JWT_SECRET="wall-test-secret-" + "x" * 32, IOC_WALL_SWITCH_DELAY_S="1.0")


@pytest.fixture(scope="session")
def wall_api(serve_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One `ioc serve` with its wall hub for the session (tests that restart it use their own)."""
    proc = ServeProcess(serve_env, tmp_path_factory.mktemp("serve") / "serve.log", REPO).start()
    yield proc
    proc.stop()


@dataclass
class Stack:
    """A database, broker and ingest of one test's own, which it may break freely."""

    db_name: str
    db_url: str
    pool: asyncpg.Pool
    rig: BrokerRig
    agency: str
    agency_pw: str
    ingest_env: dict[str, str]
    tmp: Path
    started: list[IngestProcess]

    def ingest(self, worker_id: str = "resilient-1") -> IngestProcess:
        proc = IngestProcess(self.ingest_env, self.tmp / f"{worker_id}.log", worker_id)
        self.started.append(proc)
        return proc

    def publisher(self) -> Client:
        return Client(self.rig.host, self.rig.port, self.agency, self.agency_pw).wait_connected()


@pytest.fixture
async def stack(tmp_path: Path, ingest_env: dict[str, str]) -> AsyncIterator[Stack]:
    name = f"ioc_test_r_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _dsn_for(name)
    pool = await create_pool(url, app="ioc-test-resilience", max_size=3)
    await prepare_database(pool, load_settings(database_url=url))
    async with pool.acquire() as conn:
        pw = await create_agency(conn, "moitruong", name_vi="Sở Tài nguyên và Môi trường", sectors=["mt"], actor="test")
        ingest_pw = await create_user(conn, "svc-ingest", role="ingest", actor="test")
        accounts = await broker_accounts(conn)
    rig = make_broker_rig(tmp_path / "broker", accounts).start()
    env = {**ingest_env, "IOC_DATABASE_URL": url, "IOC_MQTT_URL": rig.url_for("svc-ingest", ingest_pw),
           "IOC_INGEST_SPOOL_DIR": str(tmp_path / "spool")}
    stack = Stack(name, url, pool, rig, "moitruong", pw, env, tmp_path, [])
    yield stack
    for proc in stack.started:
        proc.kill()
    rig.stop()
    await pool.close()
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()
