"""The scheduled reports: from the 1st of each month (at `IOC_REPORT_HOUR`, local time),
last month's report of each province in force at its end and of each enabled agency, in
Vietnamese. Every `ioc serve` node runs this loop; `Maker.make`'s lock and the unique row
make each report once. A node that was down on the 1st makes them when it comes back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from ioc.core.storage import accounts as account_store
from ioc.core.storage import catalogue
from ioc.core.storage import reports as report_store
from ioc.core.storage.reports import ReportKey
from ioc.serve.reports.make import Maker, ReportBusy
from ioc.serve.reports.model import shift_month

log = logging.getLogger("ioc.reports")


def due_month(now: datetime, hour: int) -> date:
    """The month whose reports are due at local time `now`: last month, from `hour` on the 1st
    (before it, the month before that, made already)."""
    first = now.date().replace(day=1)
    return shift_month(first, -1 if (now.day > 1 or now.hour >= hour) else -2)


async def provinces(conn: asyncpg.Connection, month: date) -> list[str]:
    """The provinces in force on the month's last day."""
    last_day = shift_month(month, 1) - timedelta(days=1)
    return [a.code for a in await catalogue.list_areas(conn, level="province", on=last_day)]


async def scheduled_keys(conn: asyncpg.Connection, month: date) -> list[ReportKey]:
    in_force = await provinces(conn, month)
    agencies = [a["id"] for a in await account_store.agencies_overview(conn) if not a["disabled"]]
    keys = [ReportKey(month, p, None, "vi") for p in in_force]
    return keys + [ReportKey(month, p, a, "vi") for p in in_force for a in agencies]


async def run_due(maker: Maker, now: datetime, hour: int) -> list[int]:
    """Make the due reports that are missing; the ids this node made."""
    month = due_month(now, hour)
    made = []
    async with maker.pool.acquire() as conn:
        keys = [k for k in await scheduled_keys(conn, month) if await report_store.find(conn, k) is None]
    for key in keys:
        try:
            row, stored = await maker.make(key, made_by="schedule", replace=False)
        except ReportBusy:
            continue  # another node is on it
        except Exception as exc:  # noqa: BLE001 - one report's failure must not hold up the others
            log.error("scheduled report not made, retrying next round",
                      extra={"month": f"{key.month:%Y-%m}", "area": key.area, "agency": key.agency,
                             "error": str(exc)[:300]})
            continue
        if stored:
            made.append(row["id"])
    return made


async def schedule_loop(maker: Maker, hour: int, every_s: float) -> None:
    tz = ZoneInfo(maker.timezone)
    while True:
        try:
            await run_due(maker, datetime.now(tz), hour)
        except Exception as exc:  # noqa: BLE001 - logged, tried again next round
            log.error("scheduled reports not made, retrying", extra={"error": str(exc)[:300]})
        await asyncio.sleep(every_s)
