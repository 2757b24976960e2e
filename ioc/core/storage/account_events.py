"""Telling every process at once that an account changed: NOTIFY ioc_accounts.

A disable (from the API or from `ioc user disable`, which has no broker connection) sends
the user name on the channel inside its own transaction, so listeners hear it exactly when
the change is visible. Each `ioc serve` node holds one listening connection: it forgets the
cached principal and closes that user's websockets. While that connection is down the node
cannot hear anything, so it says so (`healthy`) and callers fall back to short cache lives;
after a reconnect it reports `None`, meaning "anything may have changed meanwhile".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import asyncpg

log = logging.getLogger("ioc.accounts")
CHANNEL = "ioc_accounts"

# a user name that changed, or None: missed notifications possible, recheck everyone
OnChange = Callable[[str | None], None]


async def notify(conn: asyncpg.Connection, username: str) -> None:
    """Call inside the transaction that makes the change: delivered at its commit only."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, username)


async def inactive_among(db: asyncpg.Pool | asyncpg.Connection, usernames: Iterable[str]) -> set[str]:
    """Those of these names that no longer may use a token: unknown or disabled."""
    names = sorted(set(usernames))
    active = await db.fetch("SELECT username FROM users WHERE username = ANY($1::text[]) AND NOT disabled", names)
    return set(names) - {r["username"] for r in active}


class AccountListener:
    """One connection LISTENing on `ioc_accounts`, checked every second, reconnected when lost."""

    def __init__(self, dsn: str, on_change: OnChange, *, check_every_s: float = 1.0, retry_s: float = 1.0) -> None:
        self.dsn = dsn
        self.on_change = on_change
        self.check_every_s = check_every_s
        self.retry_s = retry_s
        self._conn: asyncpg.Connection | None = None

    @property
    def healthy(self) -> bool:
        """True while notifications can arrive; false as soon as the connection is known lost."""
        return self._conn is not None and not self._conn.is_closed()

    def _heard(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self.on_change(payload)

    def _lost(self, conn: object) -> None:
        self._conn = None

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.dsn, server_settings={"application_name": "ioc-account-listener"})
        try:
            conn.add_termination_listener(self._lost)
            await conn.add_listener(CHANNEL, self._heard)
            self._conn = conn
            log.info("account listener connected", extra={"channel": CHANNEL})
            self.on_change(None)
            while True:
                await asyncio.sleep(self.check_every_s)
                # a peer that vanished without a reset shows up only when we ask something
                await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=self.check_every_s)
        finally:
            self._conn = None
            conn.terminate()

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged, reconnected
                log.warning("account listener lost, reconnecting; principals cached briefly meanwhile",
                            extra={"error": str(exc)[:300] or type(exc).__name__})
                await asyncio.sleep(self.retry_s)
