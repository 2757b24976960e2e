"""The catalogue that ships with the package, put into PostgreSQL at start-up."""

from __future__ import annotations

import asyncpg

from ioc.core.catalogue.shipped import shipped_areas, shipped_catalogue
from ioc.core.storage import catalogue


async def seed_shipped(conn: asyncpg.Connection) -> dict[str, int]:
    """Insert what ships with the package; never overwrite what an admin changed."""
    sectors, kpis = shipped_catalogue()
    areas = shipped_areas()
    # parents first, so the foreign key holds row by row
    order = {"country": 0, "province": 1, "district": 2, "commune": 3, "zone": 4}
    async with conn.transaction():
        await catalogue.add_missing(conn, sectors, kpis, sorted(areas, key=lambda a: order[a.level]))
    return {"sectors": len(sectors), "kpis": len(kpis), "areas": len(areas)}
