"""Versioned SQL migrations, safe to run twice and from several processes at once.

Files in `migrations/` are named `NNNN_name.sql`, or `NNNN_name.<mode>.sql` for a step that
exists only in one storage mode. Each version is applied in its own transaction and recorded
in `schema_migrations`; an advisory lock makes concurrent starts wait for each other.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from importlib import resources

import asyncpg

from ioc.core.storage.modes import StorageMode, apply_timescale_policies, choose_mode
from ioc.core.storage.rollups import refresh_aggregate

log = logging.getLogger("ioc.storage")

MIGRATE_LOCK_KEY = 0x10C_0001  # whoever migrates holds it (a test holds it to show a command does not)
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(plain|timescale))?\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    mode: StorageMode | None
    sql: str


def load_migrations() -> list[Migration]:
    out = []
    for entry in resources.files("ioc.core.storage").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if not m:
            continue
        mode = StorageMode(m.group(3)) if m.group(3) else None
        out.append(Migration(int(m.group(1)), m.group(2), mode, entry.read_text(encoding="utf-8")))
    out.sort(key=lambda x: (x.version, x.name))
    return out


@dataclass(frozen=True)
class MigrateResult:
    mode: StorageMode
    timescale_version: str | None
    applied: list[str]


async def migrate(
    conn: asyncpg.Connection,
    *,
    timezone: str,
    wanted_mode: str = "auto",
    compress_after_days: int = 30,
    retention_days: int = 0,
    upto: int | None = None,
) -> MigrateResult:
    """Apply what is missing (up to version `upto`: an upgrade in steps, as the tests of
    upgrades need), then, on TimescaleDB, the policies and a first full refresh of any
    continuous aggregate a migration (re)created."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK_KEY)
    paused = False
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        mode, version = await choose_mode(conn, wanted_mode)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        created: list[str] = []
        for mig in load_migrations():
            if mig.version in done or (mig.mode is not None and mig.mode is not mode):
                continue
            if upto is not None and mig.version > upto:
                break
            if mode is StorageMode.TIMESCALE:
                # before each step: a step may drop and make again an aggregate a policy job
                # is refreshing ("tuple concurrently deleted"), and the step before may have
                # just added a policy whose job starts at once
                await _pause_refresh_jobs(conn)
                paused = True
            sql = mig.sql.replace("{{timezone}}", _quote_literal(timezone))
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", mig.version, mig.name
                )
                if mig.version == 1:
                    await conn.execute(
                        "INSERT INTO ioc_meta (key, value) VALUES ('storage_mode', $1), ('timezone', $2)",
                        mode.value,
                        timezone,
                    )
            applied.append(f"{mig.version:04d}_{mig.name}")
            created += _VIEW.findall(sql)
            done.add(mig.version)
        if mode is StorageMode.TIMESCALE:
            await apply_timescale_policies(
                conn, compress_after_days=compress_after_days, retention_days=retention_days
            )
            if created and not paused:
                await _pause_refresh_jobs(conn)
                paused = True
            await _materialize(conn, created)
        return MigrateResult(mode, version, applied)
    finally:
        if paused:
            await _resume_refresh_jobs(conn)
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK_KEY)


_VIEW = re.compile(r"CREATE MATERIALIZED VIEW\s+(\w+)", re.IGNORECASE)


async def _materialize(conn: asyncpg.Connection, views: list[str]) -> None:
    """A continuous aggregate made again (a migration cannot add columns to one) starts
    empty. Real-time aggregation answers for it from the readings, but only above its
    watermark: once the refresh policy has run over its recent window (7 days hourly, 35
    daily), older history would fall below the watermark unmaterialized and vanish from every
    series. So each is refreshed whole here, once, in the order made (the daily one reads
    the hourly). Outside any transaction: TimescaleDB refuses one around a refresh."""
    for view in dict.fromkeys(views):
        started = time.monotonic()
        await refresh_aggregate(conn, view, None, None)
        log.info("continuous aggregate materialized", extra={"view": view, "seconds": round(time.monotonic() - started, 1)})


_REFRESH_JOBS = "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_refresh_continuous_aggregate'"
JOB_WAIT_S = 120.0


async def _pause_refresh_jobs(conn: asyncpg.Connection) -> None:
    """Unschedule the aggregates' refresh policies and wait for any run in progress to end:
    TimescaleDB runs them in background workers whenever they are due, beside a migration."""
    if not await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"):
        return
    await conn.execute(f"SELECT alter_job(job_id, scheduled => false) FROM ({_REFRESH_JOBS}) j")
    deadline = time.monotonic() + JOB_WAIT_S
    while await conn.fetchval(
            f"""SELECT count(*) FROM timescaledb_information.job_stats
                 WHERE job_status = 'Running' AND job_id IN ({_REFRESH_JOBS})"""):
        if time.monotonic() > deadline:
            raise RuntimeError(f"a continuous aggregate refresh job still runs after {JOB_WAIT_S:.0f} s: "
                               "run `ioc migrate` again once it has finished")
        await asyncio.sleep(0.2)


async def _resume_refresh_jobs(conn: asyncpg.Connection) -> None:
    """Schedule the refresh policies again (those a step made while others were paused too)."""
    if await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"):
        await conn.execute(f"SELECT alter_job(job_id, scheduled => true) FROM ({_REFRESH_JOBS}) j")


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
