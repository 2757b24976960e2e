"""Which storage mode a database runs in: TimescaleDB or plain PostgreSQL.

The mode is chosen once, when the schema is first created, and kept in `ioc_meta`, so a
database never flips between plain tables and hypertables under the same names. Each start
detects the extension again and says which mode runs.
"""

from __future__ import annotations

import enum
import logging

import asyncpg

log = logging.getLogger("ioc.storage")


class StorageMode(str, enum.Enum):
    PLAIN = "plain"
    TIMESCALE = "timescale"


async def timescale_version(conn: asyncpg.Connection, *, create: bool) -> str | None:
    """The installed TimescaleDB version; with `create`, install it when the server offers it."""
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    if version or not create:
        return version
    offered = await conn.fetchval("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
    if not offered:
        return None
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as exc:
        # Typically: the library is not in shared_preload_libraries.
        log.warning("timescaledb is offered but cannot be created: %s", exc)
        return None
    return await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")


async def stored_mode(conn: asyncpg.Connection) -> StorageMode | None:
    exists = await conn.fetchval("SELECT to_regclass('ioc_meta') IS NOT NULL")
    if not exists:
        return None
    value = await conn.fetchval("SELECT value FROM ioc_meta WHERE key = 'storage_mode'")
    return StorageMode(value) if value else None


async def choose_mode(conn: asyncpg.Connection, wanted: str = "auto") -> tuple[StorageMode, str | None]:
    """Decide the mode for a database that has none yet, or confirm the stored one."""
    kept = await stored_mode(conn)
    version = await timescale_version(conn, create=kept is None or kept is StorageMode.TIMESCALE)
    if kept is not None:
        if kept is StorageMode.TIMESCALE and version is None:
            raise RuntimeError("this database was set up with TimescaleDB, but the extension is missing now")
        if kept is StorageMode.PLAIN and version is not None:
            log.warning("TimescaleDB %s is installed, but this database was set up in plain mode; staying plain", version)
        return kept, version
    if wanted == "timescale" and version is None:
        raise RuntimeError("IOC_STORAGE_MODE=timescale, but the TimescaleDB extension is not available on this server")
    if wanted == "plain" or version is None:
        return StorageMode.PLAIN, version
    return StorageMode.TIMESCALE, version


async def apply_timescale_policies(conn: asyncpg.Connection, *, compress_after_days: int, retention_days: int) -> None:
    """Compression and retention follow the settings at every start (re-added if changed)."""
    await conn.execute("SELECT remove_compression_policy('readings', if_exists => true)")
    await conn.execute(
        f"SELECT add_compression_policy('readings', INTERVAL '{int(compress_after_days)} days')"
    )
    await conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
    if retention_days > 0:
        await conn.execute(f"SELECT add_retention_policy('readings', INTERVAL '{int(retention_days)} days')")
