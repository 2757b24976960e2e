"""Slowing down password guessing without letting a stranger lock a user out.

Failures count per (name, address) and, with a higher threshold, per address. A name
alone is never locked: otherwise anyone could keep the admin out by failing on purpose.
Behind a reverse proxy, `ioc serve` reads the client address from X-Forwarded-For.

The counts live in PostgreSQL (`ioc.core.storage.login_failures`), not in this process:
with N API nodes behind a load balancer, a guesser must not get N times the tries.
"""

from __future__ import annotations

import logging
import random

import asyncpg

from ioc.core.storage import login_failures
from ioc.core.storage.login_failures import Db

log = logging.getLogger("ioc.api.auth")
_PRUNE_CHANCE = 0.02  # now and then a failure also forgets keys that went quiet


class LoginGuard:
    def __init__(self, max_failures: int = 8, max_per_address: int = 40, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.max_per_address = max_per_address
        self.window_s = window_s

    def _keys(self, username: str, address: str) -> list[tuple[str, int]]:
        return [(f"{username}@{address}", self.max_failures), (f"@{address}", self.max_per_address)]

    async def attempt(self, pool: asyncpg.Pool, username: str, address: str) -> float:
        """Seconds until this name may try again from this address; 0 means the attempt is
        counted as a failure already (until `succeeded` takes it back) and may check the
        password. Counting before the check is what stops a burst of parallel guesses."""
        wait = await login_failures.reserve(pool, self._keys(username, address), self.window_s)
        if wait <= 0 and random.random() < _PRUNE_CHANCE:
            gone = await login_failures.prune(pool, self.window_s)
            log.debug("login failures pruned", extra={"keys": gone})
        return wait

    async def succeeded(self, db: Db, username: str, address: str) -> None:
        await login_failures.clear(db, f"{username}@{address}")
        await login_failures.release(db, f"@{address}")
