"""What the ingest checks readings against: the catalogue, areas and agencies, in memory.

Validation runs for every reading at tens of thousands per second, so it reads plain dicts
and sets, never the database. The snapshot is reloaded when an admin changes the catalogue
(NOTIFY ioc_catalogue) and at a fixed interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import asyncpg

from ioc.core.catalogue.lineage import Validity, validities
from ioc.core.storage import catalogue

UTC = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class KpiRule:
    sector: str
    lo: float
    hi: float
    integer: bool
    ratio: bool = False  # may carry numerator and denominator
    within: bool = True  # the numerator is a part of the denominator: never above it


@dataclass(frozen=True)
class Rules:
    kpis: dict[str, KpiRule] = field(default_factory=dict)
    areas: frozenset[str] = frozenset()
    # agency id -> sectors it may report; disabled agencies are absent
    agencies: dict[str, frozenset[str]] = field(default_factory=dict)
    # codes valid only for a time (a reform ended or began them); the rest are always valid
    area_validity: dict[str, Validity] = field(default_factory=dict)
    # the province's time zone: a unit's validity is in local days
    tz: ZoneInfo = UTC


async def load_rules(conn: asyncpg.Connection) -> Rules:
    kpis = {
        r["id"]: KpiRule(r["sector"], r["min_value"], r["max_value"], r["integer_only"], r["kind"] == "ratio",
                         r["numerator_within"])
        for r in await catalogue.kpi_limits(conn)
    }
    areas = await catalogue.list_areas(conn)
    return Rules(
        kpis,
        frozenset(a.code for a in areas),
        await catalogue.enabled_agency_sectors(conn),
        validities(areas, await catalogue.list_successions(conn)),
        ZoneInfo(await catalogue.province_timezone(conn)),
    )
