"""Only `ioc migrate` changes the schema: services and admin commands check it and refuse.

Each test gets a database of its own, made empty like `conftest.db_url` makes one (but not
migrated), and runs the real `ioc` command in child processes against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from ioc.core.storage.migrate import MIGRATE_LOCK_KEY
from ioc.core.storage.pool import create_pool
from ioc.core.storage.schema import SchemaError, check_schema
from tests.conftest import ADMIN_DSN, REPO, _dsn_for, timescale_available
from tests.rigs.mosquitto import free_port


@pytest.fixture
async def empty_db() -> AsyncIterator[str]:
    name = f"ioc_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield _dsn_for(name)
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def child_env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    # nothing listens on port 1: the services must stop before they try the broker
    env.update({"IOC_DATABASE_URL": db_url, "IOC_MQTT_URL": "mqtt://nobody:secret@127.0.0.1:1",
                "IOC_JWT_SECRET": "s" * 40, "IOC_WALL_PORT": "0", "IOC_LOG_FORMAT": "json",
                "PYTHONPATH": str(REPO)})
    return env


def ioc(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioc.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def assert_refused(out: subprocess.CompletedProcess[str], advice: str) -> None:
    """Non-zero, the advice in one stderr line, no traceback."""
    assert out.returncode != 0, out.stderr
    assert advice in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert len([line for line in out.stderr.splitlines() if advice in line]) == 1, out.stderr


async def public_tables(db_url: str) -> list[str]:
    conn = await asyncpg.connect(db_url)
    try:
        return [r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    finally:
        await conn.close()


async def migrations(db_url: str) -> list[tuple[int, str, object]]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        return [tuple(r) for r in rows]
    finally:
        await conn.close()


def wait_for_log(proc: subprocess.Popen[bytes], log_path: Path, mark: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while mark not in log_path.read_text(errors="replace"):
        assert proc.poll() is None, log_path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {mark!r} in {timeout} s:\n{log_path.read_text(errors='replace')}"
        time.sleep(0.1)


async def test_services_refuse_an_empty_database_until_ioc_migrate(empty_db: str, tmp_path: Path) -> None:
    env = child_env(empty_db)
    assert_refused(ioc(env, "ingest"), "run `ioc migrate`")
    assert_refused(ioc(env, "cameras"), "run `ioc migrate`")
    assert_refused(ioc(env, "serve", "--host", "127.0.0.1", "--port", str(free_port())), "run `ioc migrate`")
    assert await public_tables(empty_db) == []

    done = ioc(env, "migrate")
    assert done.returncode == 0, done.stderr
    assert "database ready: storage mode" in done.stdout and "0001_core" in done.stdout

    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen([sys.executable, "-m", "ioc.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                 env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        ingest = subprocess.Popen([sys.executable, "-m", "ioc.cli", "ingest"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except httpx.TransportError:
                assert serve.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, "ioc serve did not answer in 60 s"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["database"] == "ok"
        # the ingest passed its check: it announces the storage mode, then looks for the broker
        mode = "TimescaleDB" if await timescale_available(empty_db) else "plain PostgreSQL"
        wait_for_log(ingest, log_path, f"storage: {mode}")
    finally:
        for proc in (serve, ingest):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_a_database_from_a_newer_version_is_refused_by_all(empty_db: str) -> None:
    env = child_env(empty_db)
    assert ioc(env, "migrate").returncode == 0
    conn = await asyncpg.connect(empty_db)
    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')")
    await conn.close()
    before = await migrations(empty_db)
    for args in (("ingest",), ("cameras",), ("serve", "--host", "127.0.0.1", "--port", str(free_port())), ("user", "list"),
                 ("migrate",)):
        out = ioc(env, *args)
        assert_refused(out, "upgrade ioc")
        assert "(9999)" in out.stderr, out.stderr
    assert await migrations(empty_db) == before


async def test_admin_commands_refuse_an_empty_database_and_create_nothing(empty_db: str, tmp_path: Path) -> None:
    env = child_env(empty_db)
    for args in (("user", "list"), ("agency", "list"), ("broker", "config", "--dir", str(tmp_path / "broker"))):
        assert_refused(ioc(env, *args), "run `ioc migrate`")
    assert await public_tables(empty_db) == []
    assert not (tmp_path / "broker" / "passwd").exists()


async def test_admin_commands_leave_a_migrated_database_as_it_is(empty_db: str) -> None:
    env = child_env(empty_db)
    assert ioc(env, "migrate").returncode == 0
    added = ioc(env, "user", "add", "op-check", "--role", "operator")
    assert added.returncode == 0, added.stderr
    before = await migrations(empty_db)
    conn = await asyncpg.connect(empty_db)
    try:
        # a shipped area an admin removed stays removed (seeding is `ioc migrate`'s work)
        leaf = await conn.fetchval("SELECT code FROM areas a WHERE NOT EXISTS "
                                   "(SELECT 1 FROM areas c WHERE c.parent_code = a.code) ORDER BY code LIMIT 1")
        await conn.execute("DELETE FROM areas WHERE code = $1", leaf)
        # whoever migrates (and so applies the TimescaleDB policies) waits for this lock:
        # a command that only checks the schema does not
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK_KEY)
        listed = ioc(env, "user", "list", timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert "op-check" in listed.stdout and "operator" in listed.stdout
        assert "op-check" in ioc(env, "user", "list", timeout=60).stdout
        assert await conn.fetchval("SELECT count(*) FROM areas WHERE code = $1", leaf) == 0
    finally:
        await conn.close()
    assert await migrations(empty_db) == before


async def test_check_schema_names_what_is_missing_or_foreign(empty_db: str) -> None:
    env = child_env(empty_db)
    pool = await create_pool(empty_db, app="ioc-test-schema", min_size=1, max_size=1)
    try:
        with pytest.raises(SchemaError, match=r"no ioc schema yet .*run `ioc migrate`"):
            await check_schema(pool)
        assert ioc(env, "migrate").returncode == 0
        info = await check_schema(pool)
        newest = info.version
        assert info.applied[0] == "0001_core" and info.timezone == "Asia/Ho_Chi_Minh"
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM schema_migrations WHERE version = $1", newest)
        with pytest.raises(SchemaError, match=rf"is at {newest - 1:04d}, this version needs {newest:04d}: run `ioc migrate`"):
            await check_schema(pool)
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, 'someone_elses')", newest)
        with pytest.raises(SchemaError, match=rf"{newest:04d}_someone_elses is not this version's"):
            await check_schema(pool)
    finally:
        await pool.close()
