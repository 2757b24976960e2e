"""The `users` and `agencies` tables. The rules (roles, names, passwords, hashing) are in
`ioc.core.accounts`; these functions only read and write rows, inside the caller's
transaction, and say what they found so the caller can phrase the error."""

from __future__ import annotations

from typing import Any

import asyncpg


async def agency_exists(conn: asyncpg.Connection, agency_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM agencies WHERE id = $1", agency_id))


async def username_taken(conn: asyncpg.Connection, username: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM users WHERE username = $1", username))


async def insert_agency(conn: asyncpg.Connection, agency_id: str, name_vi: str, name_en: str, sectors: list[str]) -> None:
    """Raises UniqueViolationError when the id exists."""
    await conn.execute(
        "INSERT INTO agencies (id, name_vi, name_en, sectors) VALUES ($1, $2, $3, $4)",
        agency_id, name_vi, name_en, sectors,
    )


async def insert_user(conn: asyncpg.Connection, username: str, password_hash: str, role: str, display_name: str,
                      agency_id: str | None = None) -> None:
    """Raises UniqueViolationError when the name exists."""
    await conn.execute(
        "INSERT INTO users (username, password_hash, role, agency_id, display_name) VALUES ($1, $2, $3, $4, $5)",
        username, password_hash, role, agency_id, display_name,
    )


async def set_password_hash(conn: asyncpg.Connection, username: str, password_hash: str) -> bool:
    """False when there is no such account."""
    done = await conn.execute("UPDATE users SET password_hash = $2 WHERE username = $1", username, password_hash)
    return not done.endswith(" 0")


async def set_user_disabled(conn: asyncpg.Connection, username: str, disabled: bool) -> str | None:
    """The account's role, or None when there is no such account."""
    return await conn.fetchval("UPDATE users SET disabled = $2 WHERE username = $1 RETURNING role", username, disabled)


async def set_agency_disabled(conn: asyncpg.Connection, agency_id: str, disabled: bool) -> None:
    await conn.execute("UPDATE agencies SET disabled = $2 WHERE id = $1", agency_id, disabled)


async def login_row(conn: asyncpg.Connection, username: str) -> asyncpg.Record | None:
    """The account with its password hash, for checking a password."""
    return await conn.fetchrow(
        "SELECT username, password_hash, role, agency_id, display_name, disabled FROM users WHERE username = $1",
        username,
    )


async def user_row(conn: asyncpg.Connection, username: str) -> asyncpg.Record | None:
    """The account without its password hash."""
    return await conn.fetchrow(
        "SELECT username, role, agency_id, display_name, disabled FROM users WHERE username = $1", username
    )


async def enabled_with_roles(conn: asyncpg.Connection, roles: list[str]) -> list[asyncpg.Record]:
    """username, password_hash, role of enabled accounts with these roles (the broker's)."""
    return await conn.fetch(
        "SELECT username, password_hash, role FROM users WHERE role = ANY($1::text[]) AND NOT disabled ORDER BY username",
        roles,
    )


async def agencies_overview(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every agency with when its latest reading arrived."""
    rows = await conn.fetch(
        """SELECT a.id, a.name_vi, a.name_en, a.sectors, a.disabled, a.created_at,
                  (SELECT max(received_at) FROM kpi_latest l WHERE l.agency = a.id) AS last_reading_at
             FROM agencies a ORDER BY a.id"""
    )
    return [dict(r) for r in rows]


async def agency_row(conn: asyncpg.Connection, agency_id: str) -> asyncpg.Record | None:
    """id, name_vi, name_en, sectors, disabled of one agency."""
    return await conn.fetchrow("SELECT id, name_vi, name_en, sectors, disabled FROM agencies WHERE id = $1", agency_id)
