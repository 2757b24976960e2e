"""Make a monthly report and keep it: gather, draw (PDF and XLSX), store.

Several `ioc serve` nodes run the same schedule, so making a report takes a PostgreSQL
advisory lock named after it (month, area, agency, language): the node that gets it makes
the report, the others skip it, and the unique row (`reports_one`) stops a duplicate even
if the lock were lost. Drawing is CPU work, done in a thread so the node's event loop (the
API, the wall hub) keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ioc.core.storage import reports as report_store
from ioc.core.storage.modes import StorageMode
from ioc.core.storage.reports import ReportKey
from ioc.serve.reports.fonts import Fonts
from ioc.serve.reports.gather import gather
from ioc.serve.reports.pdf import render_pdf
from ioc.serve.reports.xlsx import render_xlsx

log = logging.getLogger("ioc.reports")


class ReportBusy(RuntimeError):
    """Another node or request is making this report right now."""


@dataclass(frozen=True)
class Maker:
    pool: asyncpg.Pool
    timezone: str
    mode: StorageMode
    fonts: Fonts
    # rankings' queries at once, each on a pool connection of its own beside the two a report
    # holds (its lock and its figures): keep it below the pool's size minus two
    parallel: int = 1
    # one report at a time per node: each holds pool connections while it waits for more, so
    # several at once could take the whole pool and wait on each other (and starve the API)
    turn: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    async def build(self, key: ReportKey) -> tuple[bytes, bytes, int]:
        """(pdf, xlsx, milliseconds taken), nothing stored."""
        began = time.perf_counter()
        async with self.pool.acquire() as conn:
            data = await gather(conn, month=key.month, area=key.area, agency=key.agency, lang=key.lang,
                                timezone=self.timezone, mode=self.mode, pool=self.pool, parallel=self.parallel)
        pdf, xlsx = await asyncio.to_thread(lambda: (render_pdf(data, self.fonts), render_xlsx(data)))
        return pdf, xlsx, round((time.perf_counter() - began) * 1000)

    async def make(self, key: ReportKey, *, made_by: str, replace: bool) -> tuple[dict[str, Any], bool]:
        """Make and store the report; (its row, whether this call made it). Without `replace`
        (the schedule) an existing report is left as it is. ReportBusy while another holds it."""
        async with self.turn, self.pool.acquire() as lock:
            if not await report_store.try_lock(lock, key):
                raise ReportBusy(f"the report {key.month:%Y-%m} {key.area} {key.agency or ''} is being made elsewhere")
            try:
                if not replace and (found := await report_store.find(lock, key)) is not None:
                    return found, False
                pdf, xlsx, ms = await self.build(key)
                row, stored = await report_store.store(lock, key, pdf=pdf, xlsx=xlsx, made_by=made_by, build_ms=ms,
                                                       replace=replace)
            finally:
                await report_store.unlock(lock, key)
        log.info("report made", extra={"user": made_by, "report": row["id"], "month": f"{key.month:%Y-%m}",
                                       "area": key.area, "agency": key.agency, "lang": key.lang, "build_ms": ms,
                                       "pdf_bytes": row["pdf_bytes"], "xlsx_bytes": row["xlsx_bytes"]})
        return row, stored
