"""Who a token's user is, remembered briefly so that not every request asks PostgreSQL.

An entry lives `ttl_s` while the node hears account notifications (a disable drops the
entry at once), and only `fallback_ttl_s` while it does not: a revoked token must stop
working within about a second or two on every node either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

P = TypeVar("P")


class PrincipalCache(Generic[P]):
    def __init__(self, ttl_s: float = 10.0, fallback_ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self.fallback_ttl_s = fallback_ttl_s
        self.listening: Callable[[], bool] = lambda: False
        # bumped by every drop: a lookup that started before a drop must not store its answer
        self.generation = 0
        self._entries: dict[str, tuple[float, P | None]] = {}

    def get(self, username: str) -> tuple[bool, P | None]:
        """(found, principal); a cached None means "unknown or disabled"."""
        hit = self._entries.get(username)
        ttl = self.ttl_s if self.listening() else self.fallback_ttl_s
        if hit is None or time.monotonic() - hit[0] > ttl:
            return False, None
        return True, hit[1]

    def put(self, username: str, principal: P | None, generation: int) -> None:
        if generation != self.generation:
            return
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[username] = (time.monotonic(), principal)

    def drop(self, username: str) -> None:
        self.generation += 1
        self._entries.pop(username, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
