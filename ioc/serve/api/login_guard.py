"""Slowing down password guessing without letting a stranger lock a user out.

Failures count per (name, address) and, with a higher threshold, per address. A name
alone is never locked: otherwise anyone could keep the admin out by failing on purpose.
Behind a reverse proxy, `ioc serve` reads the client address from X-Forwarded-For.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque


class LoginGuard:
    def __init__(self, max_failures: int = 8, max_per_address: int = 40, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.max_per_address = max_per_address
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        q = self._failures[key]
        cutoff = time.monotonic() - self.window_s
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def _keys(self, username: str, address: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return (f"{username}@{address}", self.max_failures), (f"@{address}", self.max_per_address)

    def blocked_for(self, username: str, address: str) -> float:
        """Seconds until this name may try again from this address (0 when allowed)."""
        wait = 0.0
        for key, limit in self._keys(username, address):
            q = self._recent(key)
            if len(q) >= limit:
                wait = max(wait, q[0] + self.window_s - time.monotonic())
        return wait

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        if len(self._failures) > 100_000:
            self._failures.clear()
        for key, _ in self._keys(username, address):
            self._recent(key).append(now)

    def succeeded(self, username: str, address: str) -> None:
        self._failures.pop(f"{username}@{address}", None)
