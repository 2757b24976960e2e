"""Running a service's tasks together: the first one to fail stops them all, loudly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def run_together(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Wait until a task fails (its exception propagates) or all end; cancel the rest."""
    tasks = list(tasks)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
