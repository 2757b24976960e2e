"""The audit log: who did what to which thing, written one way and read one way.

Every operator and admin action goes through `record`, inside the transaction that makes
the change (so the log never claims a change that rolled back), and is also logged as a
structured line naming the actor, so the service's own log answers "who did that" without
a database query.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import orjson

log = logging.getLogger("ioc.audit")


async def record(conn: asyncpg.Connection, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4::jsonb)",
        actor, action, subject, orjson.dumps(details).decode(),
    )
    log.info("audit", extra={"user": actor, "action": action, "subject": subject})


async def entries(conn: asyncpg.Connection, *, subject: str | None, action: str | None,
                  limit: int) -> list[dict[str, Any]]:
    """Newest first; `subject` matches as a prefix (`camera/pl-01`, `alert/`)."""
    rows = await conn.fetch(
        """SELECT id, at, actor, action, subject, details::text AS details FROM audit_log
            WHERE ($1::text IS NULL OR starts_with(subject, $1)) AND ($2::text IS NULL OR action = $2)
            ORDER BY id DESC LIMIT $3""",
        subject, action, max(1, min(limit, 1000)),
    )
    return [{**dict(r), "details": orjson.loads(r["details"])} for r in rows]
