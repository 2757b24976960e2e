"""Unit boundaries (`area_boundaries`) and positions (`areas.lat/lon`) for the map."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from ioc.core.catalogue.boundaries import Boundary


async def store_boundaries(conn: asyncpg.Connection, boundaries: Sequence[Boundary], *, tolerance_m: float,
                           source: str, actor: str) -> None:
    """Inside the caller's transaction: each unit's boundary replaces the stored one."""
    await conn.executemany(
        "INSERT INTO area_boundaries (code, geometry, vertices, source_vertices, tolerance_m, source, imported_by) "
        "VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7) ON CONFLICT (code) DO UPDATE SET geometry = EXCLUDED.geometry, "
        "vertices = EXCLUDED.vertices, source_vertices = EXCLUDED.source_vertices, tolerance_m = EXCLUDED.tolerance_m, "
        "source = EXCLUDED.source, imported_by = EXCLUDED.imported_by, imported_at = now()",
        [(b.code, orjson.dumps(b.geometry).decode(), b.vertices, b.source_vertices, tolerance_m, source, actor)
         for b in boundaries],
    )


async def fill_positions(conn: asyncpg.Connection, boundaries: Sequence[Boundary]) -> int:
    """Give units without a position their boundary's centroid (a stated position stays);
    returns how many unit versions got one."""
    result = await conn.execute(
        "UPDATE areas a SET lat = k.lat, lon = k.lon FROM unnest($1::text[], $2::float8[], $3::float8[]) AS k(code, lat, lon) "
        "WHERE a.code = k.code AND a.lat IS NULL",
        [b.code for b in boundaries], [b.lat for b in boundaries], [b.lon for b in boundaries],
    )
    return int(result.split()[-1])


async def map_units(conn: asyncpg.Connection, codes: Sequence[str]) -> list[asyncpg.Record]:
    """Per code (in the order asked): its newest version's names, level and position, and its
    boundary (GeoJSON text) or NULL."""
    return await conn.fetch(
        "SELECT k.code, v.name_vi, v.name_en, v.level, v.lat, v.lon, b.geometry::text AS geometry, b.vertices "
        "FROM unnest($1::text[]) WITH ORDINALITY AS k(code, n) "
        "LEFT JOIN LATERAL (SELECT name_vi, name_en, level, lat, lon FROM areas a WHERE a.code = k.code "
        "                   ORDER BY (a.lat IS NULL), a.valid_from DESC NULLS LAST LIMIT 1) v ON true "
        "LEFT JOIN area_boundaries b ON b.code = k.code "
        "WHERE v.level IS NOT NULL ORDER BY k.n",
        list(codes),
    )
