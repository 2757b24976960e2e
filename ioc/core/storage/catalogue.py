"""The catalogue's tables (sectors, KPIs, areas, agencies' sectors) in PostgreSQL.

Besides the API's reads and an admin's changes, the services keep in-memory copies (the
ingest validates against a snapshot, the wall hub labels tiles from one): those reload
whole, with plain full-table reads returning records.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import asyncpg

from ioc.core.catalogue.model import Area, KpiDef, Sector, parse_interval
from ioc.core.storage import audit

_KPI_COLUMNS = (
    "id, sector, name_vi, name_en, unit, unit_en, kind, min_value, max_value, integer_only, "
    "target, better, report_interval, description_vi, description_en"
)


def _kpi_args(k: KpiDef) -> tuple[Any, ...]:
    interval = parse_interval(k.interval) if k.interval else None
    return (
        k.id, k.sector, k.name_vi, k.name_en, k.unit, k.unit_en, k.kind, k.min, k.max,
        k.integer, k.target, k.better, interval, k.description_vi, k.description_en,
    )


async def add_missing(conn: asyncpg.Connection, sectors: Iterable[Sector], kpis: Iterable[KpiDef],
                      areas: Iterable[Area]) -> None:
    """Insert sectors, KPIs (marked built in) and areas (parents before children) that are
    not stored yet; never overwrite a stored one."""
    await conn.executemany(
        "INSERT INTO sectors (id, name_vi, name_en) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        [(s.id, s.name_vi, s.name_en) for s in sectors],
    )
    await conn.executemany(
        f"INSERT INTO kpis ({_KPI_COLUMNS}, builtin) VALUES "
        "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15, true) ON CONFLICT (id) DO NOTHING",
        [_kpi_args(k) for k in kpis],
    )
    await conn.executemany(
        "INSERT INTO areas (code, parent_code, level, name_vi, name_en) VALUES ($1,$2,$3,$4,$5) "
        "ON CONFLICT (code) DO NOTHING",
        [(a.code, a.parent_code, a.level, a.name_vi, a.name_en) for a in areas],
    )


def _interval_text(v: timedelta | None) -> str | None:
    if v is None:
        return None
    secs = int(v.total_seconds())
    for unit, size in (("M", 30 * 86400), ("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{max(secs // 60, 1)}m"


def kpi_from_row(row: asyncpg.Record) -> KpiDef:
    return KpiDef(
        id=row["id"], sector=row["sector"], name_vi=row["name_vi"], name_en=row["name_en"],
        unit=row["unit"], unit_en=row["unit_en"], kind=row["kind"], min=row["min_value"],
        max=row["max_value"], integer=row["integer_only"], target=row["target"], better=row["better"],
        interval=_interval_text(row["report_interval"]), description_vi=row["description_vi"],
        description_en=row["description_en"],
    )


async def list_sectors(conn: asyncpg.Connection) -> list[Sector]:
    rows = await conn.fetch("SELECT id, name_vi, name_en FROM sectors ORDER BY id")
    return [Sector(**dict(r)) for r in rows]


async def list_kpis(conn: asyncpg.Connection, sectors: list[str] | None = None) -> list[KpiDef]:
    if sectors is None:
        rows = await conn.fetch(f"SELECT {_KPI_COLUMNS} FROM kpis ORDER BY id")
    else:
        rows = await conn.fetch(f"SELECT {_KPI_COLUMNS} FROM kpis WHERE sector = ANY($1::text[]) ORDER BY id", sectors)
    return [kpi_from_row(r) for r in rows]


async def get_kpi(conn: asyncpg.Connection, kpi_id: str) -> KpiDef | None:
    row = await conn.fetchrow(f"SELECT {_KPI_COLUMNS} FROM kpis WHERE id = $1", kpi_id)
    return kpi_from_row(row) if row else None


async def upsert_kpi(conn: asyncpg.Connection, k: KpiDef, *, actor: str) -> bool:
    """Create or replace an indicator; returns True when it was created. Audited."""
    async with conn.transaction():
        existed = await conn.fetchval("SELECT true FROM kpis WHERE id = $1 FOR UPDATE", k.id)
        await conn.execute(
            f"INSERT INTO kpis ({_KPI_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) "
            "ON CONFLICT (id) DO UPDATE SET sector=EXCLUDED.sector, name_vi=EXCLUDED.name_vi, "
            "name_en=EXCLUDED.name_en, unit=EXCLUDED.unit, unit_en=EXCLUDED.unit_en, kind=EXCLUDED.kind, "
            "min_value=EXCLUDED.min_value, max_value=EXCLUDED.max_value, integer_only=EXCLUDED.integer_only, "
            "target=EXCLUDED.target, better=EXCLUDED.better, report_interval=EXCLUDED.report_interval, "
            "description_vi=EXCLUDED.description_vi, description_en=EXCLUDED.description_en, updated_at=now()",
            *_kpi_args(k),
        )
        await audit.record(conn, actor, "kpi.updated" if existed else "kpi.created", k.id, k.model_dump(mode="json"))
        await notify_changed(conn, k.id)
    return not existed


async def list_areas(conn: asyncpg.Connection, *, level: str | None = None, parent: str | None = None) -> list[Area]:
    rows = await conn.fetch(
        "SELECT code, parent_code, level, name_vi, name_en FROM areas "
        "WHERE ($1::text IS NULL OR level = $1) AND ($2::text IS NULL OR parent_code = $2) ORDER BY code",
        level, parent,
    )
    return [Area(**dict(r)) for r in rows]



async def kpi_limits(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per KPI: id, sector, min_value, max_value, integer_only (what the ingest checks)."""
    return await conn.fetch("SELECT id, sector, min_value, max_value, integer_only FROM kpis")


async def kpi_labels(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per KPI: id, name_vi, name_en, unit, unit_en, target, better, kind (what a wall tile shows)."""
    return await conn.fetch("SELECT id, name_vi, name_en, unit, unit_en, target, better, kind FROM kpis")


async def area_codes(conn: asyncpg.Connection) -> frozenset[str]:
    return frozenset(r["code"] for r in await conn.fetch("SELECT code FROM areas"))


async def area_name_vi(conn: asyncpg.Connection, code: str) -> str | None:
    return await conn.fetchval("SELECT name_vi FROM areas WHERE code = $1", code)


async def area_names(conn: asyncpg.Connection, code: str) -> tuple[str, str] | None:
    """(Vietnamese, English) names of an area; the English one falls back to the Vietnamese."""
    r = await conn.fetchrow("SELECT name_vi, name_en FROM areas WHERE code = $1", code)
    return (r["name_vi"], r["name_en"] or r["name_vi"]) if r is not None else None


async def enabled_agency_sectors(conn: asyncpg.Connection) -> dict[str, frozenset[str]]:
    """Agency id -> the sectors it may report; disabled agencies are absent."""
    rows = await conn.fetch("SELECT id, sectors FROM agencies WHERE NOT disabled")
    return {r["id"]: frozenset(r["sectors"]) for r in rows}


async def agency_sectors(conn: asyncpg.Connection, agency_id: str | None) -> list[str] | None:
    """The sectors an agency reports (None for an unknown agency)."""
    return await conn.fetchval("SELECT sectors FROM agencies WHERE id = $1", agency_id)


async def sector_ids(conn: asyncpg.Connection) -> set[str]:
    return {r["id"] for r in await conn.fetch("SELECT id FROM sectors")}


async def notify_changed(conn: asyncpg.Connection, what: str) -> None:
    """Tell the ingest workers (LISTEN ioc_catalogue) to reload their rules; sent at commit."""
    await conn.execute("SELECT pg_notify('ioc_catalogue', $1)", what)
