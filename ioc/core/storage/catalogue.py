"""The catalogue's tables (sectors, KPIs, areas, agencies' sectors) in PostgreSQL.

Besides the API's reads and an admin's changes, the services keep in-memory copies (the
ingest validates against a snapshot, the wall hub labels tiles from one): those reload
whole, with plain full-table reads returning records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

import asyncpg

from ioc.core.catalogue.model import Area, KpiDef, Sector, Succession, parse_interval
from ioc.core.storage import audit

_KPI_COLUMNS = (
    "id, sector, name_vi, name_en, unit, unit_en, kind, min_value, max_value, integer_only, "
    "target, better, report_interval, description_vi, description_en, "
    "numerator_vi, numerator_en, denominator_vi, denominator_en, numerator_within"
)
_KPI_PARAMS = ",".join(f"${i}" for i in range(1, 21))
_AREA_COLUMNS = "code, parent_code, level, name_vi, name_en, valid_from, valid_to, lat, lon"
_AREA_KEY = "(code, (coalesce(valid_from, '-infinity'::date)))"


def _kpi_args(k: KpiDef) -> tuple[Any, ...]:
    interval = parse_interval(k.interval) if k.interval else None
    return (
        k.id, k.sector, k.name_vi, k.name_en, k.unit, k.unit_en, k.kind, k.min, k.max,
        k.integer, k.target, k.better, interval, k.description_vi, k.description_en,
        k.numerator_vi, k.numerator_en, k.denominator_vi, k.denominator_en, k.numerator_within,
    )


async def add_missing(conn: asyncpg.Connection, sectors: Iterable[Sector], kpis: Iterable[KpiDef],
                      areas: Iterable[Area], successions: Iterable[Succession] = ()) -> None:
    """Insert sectors, KPIs (marked built in), area versions and successions that are not
    stored yet; never overwrite a stored one."""
    await conn.executemany(
        "INSERT INTO sectors (id, name_vi, name_en) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        [(s.id, s.name_vi, s.name_en) for s in sectors],
    )
    await conn.executemany(
        f"INSERT INTO kpis ({_KPI_COLUMNS}, builtin) VALUES ({_KPI_PARAMS}, true) ON CONFLICT (id) DO NOTHING",
        [_kpi_args(k) for k in kpis],
    )
    await conn.executemany(
        f"INSERT INTO areas ({_AREA_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT {_AREA_KEY} "
        # a position the shipped data gained fills one still unknown; never overwrites one
        "DO UPDATE SET lat = EXCLUDED.lat, lon = EXCLUDED.lon WHERE areas.lat IS NULL AND EXCLUDED.lat IS NOT NULL",
        [_area_args(a) for a in areas],
    )
    await conn.executemany(
        "INSERT INTO area_successions (old_code, new_code, effective, share) VALUES ($1,$2,$3,$4) "
        "ON CONFLICT DO NOTHING",
        [(s.old_code, s.new_code, s.effective, s.share) for s in successions],
    )


def _area_args(a: Area) -> tuple[Any, ...]:
    return (a.code, a.parent_code, a.level, a.name_vi, a.name_en, a.valid_from, a.valid_to, a.lat, a.lon)


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
        description_en=row["description_en"], numerator_vi=row["numerator_vi"],
        numerator_en=row["numerator_en"], denominator_vi=row["denominator_vi"],
        denominator_en=row["denominator_en"], numerator_within=row["numerator_within"],
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
    """Create or replace an indicator; returns True when it was created. Audited with the new
    definition and the one it replaced (`before`), so the time machine can show either."""
    async with conn.transaction():
        old = await conn.fetchrow(f"SELECT {_KPI_COLUMNS} FROM kpis WHERE id = $1 FOR UPDATE", k.id)
        existed = old is not None
        await conn.execute(
            f"INSERT INTO kpis ({_KPI_COLUMNS}) VALUES ({_KPI_PARAMS}) "
            "ON CONFLICT (id) DO UPDATE SET sector=EXCLUDED.sector, name_vi=EXCLUDED.name_vi, "
            "name_en=EXCLUDED.name_en, unit=EXCLUDED.unit, unit_en=EXCLUDED.unit_en, kind=EXCLUDED.kind, "
            "min_value=EXCLUDED.min_value, max_value=EXCLUDED.max_value, integer_only=EXCLUDED.integer_only, "
            "target=EXCLUDED.target, better=EXCLUDED.better, report_interval=EXCLUDED.report_interval, "
            "description_vi=EXCLUDED.description_vi, description_en=EXCLUDED.description_en, "
            "numerator_vi=EXCLUDED.numerator_vi, numerator_en=EXCLUDED.numerator_en, "
            "denominator_vi=EXCLUDED.denominator_vi, denominator_en=EXCLUDED.denominator_en, "
            "numerator_within=EXCLUDED.numerator_within, updated_at=now()",
            *_kpi_args(k),
        )
        await audit.record(conn, actor, "kpi.updated" if existed else "kpi.created", k.id,
                           {**k.model_dump(mode="json"), "before": kpi_from_row(old).model_dump(mode="json") if old else None})
        await notify_changed(conn, k.id)
    return not existed


async def list_areas(conn: asyncpg.Connection, *, level: str | None = None, parent: str | None = None,
                     on: date | None = None) -> list[Area]:
    """Area versions, optionally only those valid on a (local) day."""
    rows = await conn.fetch(
        f"SELECT {_AREA_COLUMNS} FROM areas "
        "WHERE ($1::text IS NULL OR level = $1) AND ($2::text IS NULL OR parent_code = $2) "
        "AND ($3::date IS NULL OR ((valid_from IS NULL OR valid_from <= $3) AND (valid_to IS NULL OR valid_to >= $3))) "
        "ORDER BY code, valid_from NULLS FIRST",
        level, parent, on,
    )
    return [Area(**dict(r)) for r in rows]


async def list_successions(conn: asyncpg.Connection) -> list[Succession]:
    rows = await conn.fetch(
        "SELECT old_code, new_code, effective, share FROM area_successions ORDER BY effective, old_code, new_code"
    )
    return [Succession(**dict(r)) for r in rows]


async def lock_areas(conn: asyncpg.Connection) -> None:
    """Inside a transaction: one writer of the area history at a time (readers go on), so the
    set an import checked is the set it changes."""
    await conn.execute("LOCK TABLE areas, area_successions IN SHARE ROW EXCLUSIVE MODE")


async def store_areas(conn: asyncpg.Connection, areas: Sequence[Area], successions: Sequence[Succession]) -> None:
    """Inside the caller's transaction: each area version replaces the stored one of the same
    code and valid_from; the successions replace those stored for the same old unit and day."""
    await conn.executemany(
        f"INSERT INTO areas ({_AREA_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT {_AREA_KEY} DO UPDATE "
        "SET parent_code = EXCLUDED.parent_code, level = EXCLUDED.level, name_vi = EXCLUDED.name_vi, "
        "name_en = EXCLUDED.name_en, valid_to = EXCLUDED.valid_to, "
        # a file without positions keeps the stored ones (the shipped seats, a boundary's centroid)
        "lat = coalesce(EXCLUDED.lat, areas.lat), lon = coalesce(EXCLUDED.lon, areas.lon)",
        [_area_args(a) for a in areas],
    )
    keys = sorted({(s.old_code, s.effective) for s in successions})
    await conn.execute(
        "DELETE FROM area_successions d USING unnest($1::text[], $2::date[]) AS k(code, day) "
        "WHERE d.old_code = k.code AND d.effective = k.day",
        [k[0] for k in keys], [k[1] for k in keys],
    )
    await conn.executemany(
        "INSERT INTO area_successions (old_code, new_code, effective, share) VALUES ($1,$2,$3,$4)",
        [(s.old_code, s.new_code, s.effective, s.share) for s in successions],
    )


async def kpi_limits(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per KPI: what the ingest checks (id, sector, kind, min_value, max_value, integer_only,
    numerator_within)."""
    return await conn.fetch("SELECT id, sector, kind, min_value, max_value, integer_only, numerator_within FROM kpis")


async def kpi_labels(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per KPI: id, name_vi, name_en, unit, unit_en, target, better, kind (what a wall tile shows)."""
    return await conn.fetch("SELECT id, name_vi, name_en, unit, unit_en, target, better, kind FROM kpis")


async def province_timezone(conn: asyncpg.Connection) -> str:
    """The time zone chosen at the first migration: local days (buckets, validity) are in it."""
    return str(await conn.fetchval("SELECT value FROM ioc_meta WHERE key = 'timezone'") or "UTC")


async def area_name_vi(conn: asyncpg.Connection, code: str) -> str | None:
    return await conn.fetchval(
        "SELECT name_vi FROM areas WHERE code = $1 ORDER BY valid_from DESC NULLS LAST LIMIT 1", code
    )


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
