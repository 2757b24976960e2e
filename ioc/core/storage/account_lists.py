"""The listings `ioc agency list` and `ioc user list` print: read-only, in a stable order."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class AgencyLine:
    id: str
    name_vi: str
    sectors: list[str]
    disabled: bool


@dataclass(frozen=True)
class UserLine:
    username: str
    role: str
    disabled: bool
    display_name: str


async def list_agencies(conn: asyncpg.Connection) -> list[AgencyLine]:
    """Every agency, disabled ones included, by id."""
    rows = await conn.fetch("SELECT id, name_vi, sectors, disabled FROM agencies ORDER BY id")
    return [AgencyLine(r["id"], r["name_vi"], list(r["sectors"]), r["disabled"]) for r in rows]


async def list_users(conn: asyncpg.Connection) -> list[UserLine]:
    """Every user and service account, disabled ones included, by role then name."""
    rows = await conn.fetch("SELECT username, role, disabled, display_name FROM users ORDER BY role, username")
    return [UserLine(r["username"], r["role"], r["disabled"], r["display_name"]) for r in rows]
