"""The demo's accounts and secrets: made once, kept in `<data dir>/secrets.json`, shown every run.

People (admin, operator, leader), the services' broker accounts and the simulated agencies
get generated passwords on the first run. Later runs find them in the secrets file (mode
0600) and make the database agree with it, so the same logins keep working. In a database
the demo does not own (IOC_DATABASE_URL set) an account that exists with another password
is left alone and reported, never reset.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from ioc.core import accounts
from ioc.core.passwords import hash_password, new_password, verify_password

PEOPLE = (("admin", "admin", "Quản trị hệ thống (demo)"),
          ("operator", "operator", "Cán bộ vận hành IOC (demo)"),
          ("leader", "leader", "Lãnh đạo tỉnh (demo)"))
SERVICES = (("demo-ingest", "ingest"), ("demo-cameras", "camera"), ("demo-api", "api"))
ACTOR = "ioc-demo"


class Secrets:
    """A small JSON file of generated secrets, readable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.data = {}

    def get(self, section: str, key: str, make: Any = None) -> str:
        box = self.data.setdefault(section, {})
        if key not in box and make is not None:
            box[key] = make()
        return box.get(key)  # type: ignore[no-any-return]

    def put(self, section: str, key: str, value: str) -> None:
        self.data.setdefault(section, {})[key] = value

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=2, ensure_ascii=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


def token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Logins:
    people: dict[str, str | None] = field(default_factory=dict)  # None: exists, password not ours
    services: dict[str, str] = field(default_factory=dict)
    agencies: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


async def _align(conn: asyncpg.Connection, username: str, password: str, owned: bool) -> bool:
    """Make `username`'s password `password` if the database is ours; True when it works."""
    stored = await conn.fetchval("SELECT password_hash FROM users WHERE username = $1", username)
    if await asyncio.to_thread(verify_password, password, stored):
        return True
    if not owned:
        return False
    await conn.execute("UPDATE users SET password_hash = $2, disabled = false WHERE username = $1",
                       username, await asyncio.to_thread(hash_password, password))
    await conn.execute("UPDATE agencies SET disabled = false WHERE id = $1", username)
    return True


async def ensure_logins(conn: asyncpg.Connection, box: Secrets, agencies: list[dict[str, Any]], *,
                        owned: bool) -> Logins:
    out = Logins()
    wanted = [(name, role, display, "people") for name, role, display in PEOPLE]
    wanted += [(name, role, "", "services") for name, role in SERVICES]
    for name, role, display, section in wanted:
        password = box.get(section, name, new_password)
        if await conn.fetchval("SELECT true FROM users WHERE username = $1", name):
            ok = await _align(conn, name, password, owned)
        else:
            await accounts.create_user(conn, name, role=role, actor=ACTOR, display_name=display, password=password)
            ok = True
        if section == "people":
            out.people[name] = password if ok else None
        elif ok:
            out.services[name] = password
        else:
            out.skipped.append(name)
    for agency in agencies:
        aid = agency["id"]
        password = box.get("agencies", aid)
        if not await conn.fetchval("SELECT true FROM agencies WHERE id = $1", aid):
            password = await accounts.create_agency(conn, aid, name_vi=agency["name_vi"], name_en=agency["name_en"],
                                                    sectors=agency["sectors"], actor=ACTOR)
            box.put("agencies", aid, password)
        elif password is None or not await _align(conn, aid, password, owned):
            if not owned:
                out.skipped.append(aid)
                continue
            password = await accounts.reset_password(conn, aid, actor=ACTOR)
            box.put("agencies", aid, password)
        out.agencies[aid] = password
    box.save()
    return out
