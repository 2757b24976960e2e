"""Is the database's schema the one this version of ioc was written for? Read, never changed.

Only `ioc migrate` (and the demo, and the compose `setup` job that runs it) creates or updates
the schema. Every service and admin command checks at start instead: a database that is empty
or behind is refused with the command to run, one migrated by a newer ioc with the advice to
upgrade, so a service never runs against tables it does not know, and two versions started
side by side never race to change the schema.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from ioc.core.settings import Settings
from ioc.core.storage.migrate import load_migrations
from ioc.core.storage.modes import StorageMode, stored_mode, timescale_version

log = logging.getLogger("ioc.storage")


class SchemaError(RuntimeError):
    """The database's schema does not fit this version; the message says what to do."""


@dataclass(frozen=True)
class SchemaInfo:
    """What the services need from a database whose schema fits."""

    mode: StorageMode
    timezone: str
    applied: list[str]  # "0001_core", ... in order
    timescale_version: str | None

    @property
    def version(self) -> int:
        return int(self.applied[-1][:4])


async def applied_migrations(conn: asyncpg.Connection) -> dict[int, str]:
    """version -> name of the migrations recorded in the database (none when it has no schema)."""
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return {}
    return {r["version"]: r["name"] for r in await conn.fetch("SELECT version, name FROM schema_migrations")}


def refuse_newer(done: dict[int, str]) -> int:
    """SchemaError when a newer ioc migrated this database (which this one must not touch,
    not even its policies); else the newest migration this version ships."""
    newest = max(m.version for m in load_migrations())
    ahead = [v for v in done if v > newest]
    if ahead:
        raise SchemaError(f"database schema was migrated by a newer version of ioc ({max(ahead):04d}); "
                          f"this one knows up to {newest:04d}: upgrade ioc")
    return newest


async def check_schema(pool: asyncpg.Pool) -> SchemaInfo:
    """The database's storage mode and time zone, or SchemaError when its schema does not fit."""
    async with pool.acquire() as conn:
        done = await applied_migrations(conn)
        mode = await stored_mode(conn)
        ts_version = await timescale_version(conn, create=False)
        timezone = await conn.fetchval("SELECT value FROM ioc_meta WHERE key = 'timezone'") if mode else None
    shipped = load_migrations()
    newest = refuse_newer(done)
    if mode is None or not done or timezone is None:
        raise SchemaError(f"database has no ioc schema yet (this version needs {newest:04d}): run `ioc migrate`")
    wanted = {m.version: m.name for m in shipped if m.mode in (None, mode)}
    for version, name in sorted(done.items()):
        if wanted.get(version) != name:
            ours = f"{version:04d}_{wanted[version]}" if version in wanted else f"no {version:04d} for {mode.value} mode"
            raise SchemaError(f"database migration {version:04d}_{name} is not this version's ({ours}): "
                              "the database was migrated by another build of ioc; run that build")
    missing = sorted(set(wanted) - set(done))
    if missing:
        at = max(done)
        needs = (f"is at {at:04d}, this version needs {max(wanted):04d}" if at < max(wanted)
                 else f"lacks {', '.join(f'{v:04d}' for v in missing)}")
        raise SchemaError(f"database schema {needs}: run `ioc migrate`")
    if mode is StorageMode.TIMESCALE and ts_version is None:
        raise SchemaError("this database was set up with TimescaleDB, but the extension is missing now")
    applied = [f"{v:04d}_{done[v]}" for v in sorted(done)]
    return SchemaInfo(mode, timezone, applied, ts_version)


def log_storage(info: SchemaInfo, settings: Settings) -> None:
    """Say at start which storage mode runs, and when the database's day boundaries differ from the settings'."""
    if info.mode is StorageMode.TIMESCALE:
        log.info("storage: TimescaleDB %s (hypertable, compression, continuous aggregates)", info.timescale_version,
                 extra={"mode": "timescale", "schema": info.applied[-1]})
    else:
        log.info("storage: plain PostgreSQL (roll-ups computed by the service)%s",
                 "" if info.timescale_version is None else f"; TimescaleDB {info.timescale_version} present but not used",
                 extra={"mode": "plain", "schema": info.applied[-1]})
    if info.timezone != settings.timezone:
        log.warning("this database buckets days in %s (set at creation), not IOC_TIMEZONE=%s", info.timezone, settings.timezone)
