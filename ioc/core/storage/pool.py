"""The asyncpg pool every service uses."""

from __future__ import annotations

import asyncpg


async def create_pool(dsn: str, *, app: str, min_size: int = 1, max_size: int = 8) -> asyncpg.Pool:
    # UTC on the session keeps timestamptz text output and date_trunc() predictable;
    # local-day buckets name their time zone explicitly.
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings={"application_name": app, "timezone": "UTC"},
        command_timeout=120,
    )
    assert pool is not None
    return pool
