"""What the ingest checks readings against: the catalogue, areas and agencies, in memory.

Validation runs for every reading at tens of thousands per second, so it reads plain dicts
and sets, never the database. The snapshot is reloaded when an admin changes the catalogue
(NOTIFY ioc_catalogue) and at a fixed interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from ioc.core.storage import catalogue


@dataclass(frozen=True, slots=True)
class KpiRule:
    sector: str
    lo: float
    hi: float
    integer: bool


@dataclass(frozen=True)
class Rules:
    kpis: dict[str, KpiRule] = field(default_factory=dict)
    areas: frozenset[str] = frozenset()
    # agency id -> sectors it may report; disabled agencies are absent
    agencies: dict[str, frozenset[str]] = field(default_factory=dict)


async def load_rules(conn: asyncpg.Connection) -> Rules:
    kpis = {
        r["id"]: KpiRule(r["sector"], r["min_value"], r["max_value"], r["integer_only"])
        for r in await catalogue.kpi_limits(conn)
    }
    return Rules(kpis, await catalogue.area_codes(conn), await catalogue.enabled_agency_sectors(conn))
