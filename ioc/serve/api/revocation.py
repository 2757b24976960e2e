"""A disabled account stops working on this node within a second or two: REST and websockets.

Listens for `ioc_accounts` notifications (sent by `ioc.core.accounts.set_disabled`, from the
API or the command line alike), drops the user's cached principal and has the wall hub close
that user's websockets. While the listener is down the principal cache keeps entries for a
second only; after it reconnects, everything cached is forgotten and every connected user
is rechecked, since notifications may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ioc.core.storage.account_events import AccountListener
from ioc.serve.api.principal_cache import PrincipalCache

log = logging.getLogger("ioc.api.auth")


class Revocation:
    def __init__(self, dsn: str, cache: PrincipalCache[Any], wall: Any | None) -> None:
        self.cache = cache
        self.wall = wall  # a WallNode, or None when the hub is off
        self.listener = AccountListener(dsn, self._changed)
        cache.listening = lambda: self.listener.healthy
        self._tasks: set[asyncio.Task[None]] = set()

    def _changed(self, username: str | None) -> None:
        if username is None:
            self.cache.clear()
        else:
            self.cache.drop(username)
            log.info("account changed, cached principal dropped", extra={"user": username})
        if self.wall is not None:
            task = asyncio.get_running_loop().create_task(
                self.wall.recheck_accounts(None if username is None else {username}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        try:
            await self.listener.run()
        finally:
            for t in list(self._tasks):
                t.cancel()
