"""Rankings by unit: /api/v1/breakdown's rows for each KPI over the month."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from ioc.core.catalogue.model import KpiDef
from ioc.serve.reports.model import Ranking


async def rankings(conn: asyncpg.Connection, kpis: Sequence[KpiDef], *, area: str, start: datetime, end: datetime,
                   timezone: str) -> list[Ranking]:
    return []  # filled from ioc.core.storage.queries.breakdown once it lands
