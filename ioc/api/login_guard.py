"""Slowing down password guessing: too many failures for one name or address wait a while."""

from __future__ import annotations

import time
from collections import defaultdict, deque


class LoginGuard:
    def __init__(self, max_failures: int = 8, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        q = self._failures[key]
        cutoff = time.monotonic() - self.window_s
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def blocked_for(self, *keys: str) -> float:
        """Seconds until these keys may try again (0 when allowed)."""
        wait = 0.0
        for key in keys:
            q = self._recent(key)
            if len(q) >= self.max_failures:
                wait = max(wait, q[0] + self.window_s - time.monotonic())
        return wait

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key).append(now)
        if len(self._failures) > 100_000:
            self._failures.clear()

    def succeeded(self, username: str) -> None:
        self._failures.pop(username, None)
