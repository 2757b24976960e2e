"""Bringing a database up to date at start: migrations, the shipped catalogue, the mode."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from ioc.core.catalogue.store import seed_shipped
from ioc.core.settings import Settings
from ioc.core.storage.migrate import migrate
from ioc.core.storage.modes import StorageMode

log = logging.getLogger("ioc.storage")


@dataclass(frozen=True)
class DatabaseInfo:
    mode: StorageMode
    timescale_version: str | None
    timezone: str
    applied: list[str]


async def prepare_database(pool: asyncpg.Pool, settings: Settings) -> DatabaseInfo:
    async with pool.acquire() as conn:
        result = await migrate(
            conn,
            timezone=settings.timezone,
            wanted_mode=settings.storage_mode,
            compress_after_days=settings.compress_after_days,
            retention_days=settings.retention_days,
        )
        seeded = await seed_shipped(conn)
        tz = await conn.fetchval("SELECT value FROM ioc_meta WHERE key = 'timezone'") or settings.timezone
    if result.mode is StorageMode.TIMESCALE:
        log.info("storage: TimescaleDB %s (hypertable, compression, continuous aggregates)", result.timescale_version,
                 extra={"mode": "timescale", "applied": result.applied})
    else:
        log.info("storage: plain PostgreSQL (roll-ups computed by the service)%s",
                 "" if result.timescale_version is None else f"; TimescaleDB {result.timescale_version} present but not used",
                 extra={"mode": "plain", "applied": result.applied})
    if tz != settings.timezone:
        log.warning("this database buckets days in %s (set at creation), not IOC_TIMEZONE=%s", tz, settings.timezone)
    _ = seeded
    return DatabaseInfo(result.mode, result.timescale_version, tz, result.applied)
