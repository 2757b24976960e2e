"""The catalogue that ships with the package, put into PostgreSQL at start-up."""

from __future__ import annotations

import asyncpg

from ioc.core.catalogue.shipped import shipped_area_rows, shipped_catalogue
from ioc.core.storage import catalogue


async def seed_shipped(conn: asyncpg.Connection) -> dict[str, int]:
    """Insert what ships with the package; never overwrite what an admin changed."""
    sectors, kpis = shipped_catalogue()
    area_rows, succession_rows = shipped_area_rows()
    areas = [r.area for r in area_rows]
    async with conn.transaction():
        await catalogue.add_missing(conn, sectors, kpis, areas, [r.succession for r in succession_rows])
    return {"sectors": len(sectors), "kpis": len(kpis), "areas": len(areas)}
