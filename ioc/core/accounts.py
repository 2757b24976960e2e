"""Agencies and user accounts: people who log in to the API, agencies and services on MQTT.

One `users` table serves both doors. An agency's account (role `agency`) logs in to the
broker to publish and to the API to read its own data; service accounts (`ingest`, `api`,
`camera`) exist only on the broker; people (`admin`, `operator`, `leader`) only on the API.
Passwords are generated, shown once, and stored as Mosquitto-compatible PBKDF2 hashes, so
the broker's password file is written straight from this table.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import asyncpg

from ioc.core.mqtt.broker_files import BrokerAccount
from ioc.core.mqtt.client_ids import reserved_for_services, why_reserved
from ioc.core.passwords import (
    BROKER_ITERATIONS,
    HUMAN_ITERATIONS,
    hash_password,
    iterations_of,
    new_password,
    verify_password,
)
from ioc.core.storage import account_events, audit, catalogue
from ioc.core.storage import accounts as store

HUMAN_ROLES = ("admin", "operator", "leader")
SERVICE_ROLES = ("ingest", "api", "camera")
SCREEN_ROLE = "screen"  # a kiosk browser on the wall: long-lived token, no password use
ROLES = (*HUMAN_ROLES, "agency", *SERVICE_ROLES, SCREEN_ROLE)
_AGENCY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,31}$")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,31}$")


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    agency_id: str | None
    display_name: str
    disabled: bool


async def create_agency(
    conn: asyncpg.Connection,
    agency_id: str,
    *,
    name_vi: str,
    name_en: str = "",
    sectors: list[str],
    actor: str,
) -> str:
    """Create an agency and its account; return the password (shown once, never stored)."""
    if not _AGENCY_ID.match(agency_id):
        raise AccountError("agency id: 2-32 characters, lowercase letters, digits, '-' or '_', starting with a letter or digit")
    if reserved_for_services(agency_id):
        # on the broker an agency's client id is its name: it must never be a service's
        raise AccountError(why_reserved(agency_id))
    if not name_vi.strip():
        raise AccountError("an agency needs a name")
    known = await catalogue.sector_ids(conn)
    unknown = [s for s in sectors if s not in known]
    if unknown:
        raise AccountError(f"unknown sector(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if not sectors:
        raise AccountError("an agency reports at least one sector (--sector)")
    password = new_password()
    async with conn.transaction():
        if await store.agency_exists(conn, agency_id):
            raise AccountError(f"agency {agency_id!r} exists already")
        if await store.username_taken(conn, agency_id):
            raise AccountError(f"the name {agency_id!r} is already taken by an account")
        try:
            await store.insert_agency(conn, agency_id, name_vi.strip(), name_en.strip(), sorted(set(sectors)))
        except asyncpg.UniqueViolationError:
            raise AccountError(f"agency {agency_id!r} exists already") from None
        await store.insert_user(conn, agency_id, await _hash_for("agency", password), "agency",
                                name_vi.strip(), agency_id=agency_id)
        await audit.record(conn, actor, "agency.created", agency_id, {"sectors": sorted(set(sectors))})
        await catalogue.notify_changed(conn, agency_id)
    return password


async def create_user(
    conn: asyncpg.Connection,
    username: str,
    *,
    role: str,
    actor: str,
    display_name: str = "",
    password: str | None = None,
) -> str:
    if role not in ROLES or role == "agency":
        raise AccountError(f"role must be one of {', '.join(r for r in ROLES if r != 'agency')} (agencies: `ioc agency add`)")
    if not _USERNAME.match(username):
        raise AccountError("user name: 2-32 characters, lowercase letters, digits, '.', '-' or '_'")
    password = password or new_password()
    if len(password) < 12:
        raise AccountError("a password needs at least 12 characters")
    try:
        async with conn.transaction():
            await store.insert_user(conn, username, await _hash_for(role, password), role, display_name)
            await audit.record(conn, actor, "user.created", username, {"role": role})
    except asyncpg.UniqueViolationError:
        raise AccountError(f"user {username!r} exists already") from None
    return password


async def reset_password(conn: asyncpg.Connection, username: str, *, actor: str) -> str:
    password = new_password()
    async with conn.transaction():
        row = await store.login_row(conn, username)
        if row is None or not await store.set_password_hash(conn, username, await _hash_for(row["role"], password)):
            raise AccountError(f"no account named {username!r}")
        await audit.record(conn, actor, "user.password_reset", username, {})
    return password


async def set_disabled(conn: asyncpg.Connection, username: str, disabled: bool, *, actor: str) -> None:
    async with conn.transaction():
        role = await store.set_user_disabled(conn, username, disabled)
        if role is None:
            raise AccountError(f"no account named {username!r}")
        if role == "agency":
            await store.set_agency_disabled(conn, username, disabled)
            await catalogue.notify_changed(conn, username)
        await audit.record(conn, actor, "user.disabled" if disabled else "user.enabled", username, {})
        await account_events.notify(conn, username)  # every API node drops its tokens' principal


async def _hash_for(role: str, password: str) -> str:
    """People's passwords get OWASP's iterations; broker logins (agencies, services) fewer,
    as the broker derives every CONNECT's key on its one thread (ioc/core/passwords.py)."""
    iterations = HUMAN_ITERATIONS if role in HUMAN_ROLES else BROKER_ITERATIONS
    return await asyncio.to_thread(hash_password, password, iterations)


async def authenticate(conn: asyncpg.Connection, username: str, password: str) -> User | None:
    row = await store.login_row(conn, username)
    # PBKDF2 takes milliseconds: off the event loop. An unknown name costs the same time
    # as a real check, so timing does not reveal which names exist.
    encoded = _DUMMY_HASH if row is None else row["password_hash"]
    ok = await asyncio.to_thread(verify_password, password, encoded)
    if row is None or not ok or row["disabled"]:
        return None
    if row["role"] in HUMAN_ROLES and iterations_of(row["password_hash"]) < HUMAN_ITERATIONS:
        # made before people's hashes got stronger: the password is at hand only now
        await store.set_password_hash(conn, row["username"], await _hash_for(row["role"], password))
    return User(row["username"], row["role"], row["agency_id"], row["display_name"], row["disabled"])


async def get_user(conn: asyncpg.Connection, username: str) -> User | None:
    row = await store.user_row(conn, username)
    return User(**dict(row)) if row else None


async def broker_accounts(conn: asyncpg.Connection) -> list[BrokerAccount]:
    rows = await store.enabled_with_roles(conn, ["agency", *SERVICE_ROLES])
    return [BrokerAccount(r["username"], r["password_hash"], r["role"]) for r in rows]


_DUMMY_HASH = hash_password("not-a-real-password-just-timing", HUMAN_ITERATIONS)  # an unknown name: a person's cost
