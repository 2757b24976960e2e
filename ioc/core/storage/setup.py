"""Bringing a database up to date: migrations, the shipped catalogue, the TimescaleDB policies.

This is admin work: `ioc migrate`, the demo and the test rigs do it; services only check
the result (`schema.check_schema`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from ioc.core.catalogue.store import seed_shipped
from ioc.core.settings import Settings
from ioc.core.storage.migrate import migrate
from ioc.core.storage.modes import StorageMode
from ioc.core.storage.schema import SchemaInfo, applied_migrations, check_schema, log_storage, refuse_newer

log = logging.getLogger("ioc.storage")


@dataclass(frozen=True)
class DatabaseInfo:
    mode: StorageMode
    timescale_version: str | None
    timezone: str
    applied: list[str]  # the migrations this run applied
    schema: SchemaInfo


async def prepare_database(pool: asyncpg.Pool, settings: Settings) -> DatabaseInfo:
    """Migrate, seed and apply the policies, then check the result as a service would (a
    database migrated by a newer ioc is refused here too)."""
    async with pool.acquire() as conn:
        refuse_newer(await applied_migrations(conn))
        result = await migrate(
            conn,
            timezone=settings.timezone,
            wanted_mode=settings.storage_mode,
            compress_after_days=settings.compress_after_days,
            retention_days=settings.retention_days,
        )
        seeded = await seed_shipped(conn)
    if result.applied:
        log.info("schema migrated", extra={"applied": result.applied, "seeded": seeded})
    info = await check_schema(pool)
    log_storage(info, settings)
    return DatabaseInfo(info.mode, result.timescale_version, info.timezone, result.applied, info)
