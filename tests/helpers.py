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


async def staff_logins(pool: asyncpg.Pool, base: str, prefix: str,
                       roles: tuple[str, ...] = ("admin", "operator", "leader"),
                       more: dict[str, tuple[str, str]] | None = None,
                       ) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """New accounts of these roles (named `<prefix><role[:3]><random>`), logged in through the
    API at `base`; `more` adds existing (name, password) pairs. Returns (role -> (name,
    password), role -> token)."""
    import secrets

    import httpx

    from ioc.core.accounts import create_user

    users = dict(more or {})
    async with pool.acquire() as conn:
        for role in roles:
            name = f"{prefix}{role[:3]}{secrets.token_hex(3)}"
            users[role] = (name, await create_user(conn, name, role=role, actor="test"))
    tokens = {}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for role, (name, password) in users.items():
            r = await http.post("/api/v1/auth/token", data={"username": name, "password": password})
            assert r.status_code == 200, (role, r.text)
            tokens[role] = r.json()["access_token"]
    return users, tokens
