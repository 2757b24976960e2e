"""A throwaway database for a benchmark: created on the server at IOC_BENCH_PG_ADMIN_URL
(default postgresql://postgres@127.0.0.1:5432/postgres), migrated, dropped at the end."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from ioc.core.settings import Settings, load_settings
from ioc.core.storage.pool import create_pool
from ioc.core.storage.setup import prepare_database


@asynccontextmanager
async def scratch_database(timezone: str, pool_size: int = 3) -> AsyncIterator[tuple[asyncpg.Pool, Settings]]:
    admin_url = os.environ.get("IOC_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"ioc_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        settings = load_settings(database_url=admin_url.rpartition("/")[0] + "/" + name, timezone=timezone)
        pool = await create_pool(settings.require_database_url(), app="ioc-bench", min_size=1, max_size=pool_size)
        try:
            await prepare_database(pool, settings)
            yield pool, settings
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
