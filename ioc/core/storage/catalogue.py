"""Reads of the catalogue (KPIs, areas, agencies) for the services' in-memory copies.

The ingest validates against a snapshot and the wall hub labels tiles from one; both
reload it whole, so these are plain full-table reads returning records.
"""

from __future__ import annotations

import asyncpg


async def kpi_limits(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per KPI: id, sector, min_value, max_value, integer_only (what the ingest checks)."""
    return await conn.fetch("SELECT id, sector, min_value, max_value, integer_only FROM kpis")


async def kpi_labels(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per KPI: id, name_vi, name_en, unit, target, better (what a wall tile shows)."""
    return await conn.fetch("SELECT id, name_vi, name_en, unit, target, better FROM kpis")


async def area_codes(conn: asyncpg.Connection) -> frozenset[str]:
    return frozenset(r["code"] for r in await conn.fetch("SELECT code FROM areas"))


async def area_name_vi(conn: asyncpg.Connection, code: str) -> str | None:
    return await conn.fetchval("SELECT name_vi FROM areas WHERE code = $1", code)


async def enabled_agency_sectors(conn: asyncpg.Connection) -> dict[str, frozenset[str]]:
    """Agency id -> the sectors it may report; disabled agencies are absent."""
    rows = await conn.fetch("SELECT id, sectors FROM agencies WHERE NOT disabled")
    return {r["id"]: frozenset(r["sectors"]) for r in rows}


async def agency_sectors(conn: asyncpg.Connection, agency_id: str | None) -> list[str] | None:
    """The sectors an agency reports (None for an unknown agency)."""
    return await conn.fetchval("SELECT sectors FROM agencies WHERE id = $1", agency_id)
