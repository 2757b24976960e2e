"""Waiting on the database without sleeping blindly."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import asyncpg


async def wait_value(
    pool: asyncpg.Pool, sql: str, *args: Any, until: Callable[[Any], bool], timeout: float = 15.0
) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        async with pool.acquire() as conn:
            value = await conn.fetchval(sql, *args)
        if until(value):
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s; last value {value!r} for {sql}")
