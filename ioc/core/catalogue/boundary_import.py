"""`ioc areas import-geojson`: unit boundaries from an admin's file, all or nothing.

The file is checked whole (ioc/core/catalogue/boundaries.py) against the stored unit codes
and simplified for the wall before the transaction that stores it; any problem and nothing
changes. Units that had no position get their boundary's centroid. Audited.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ioc.core.catalogue.boundaries import DEFAULT_TOLERANCE_M, read_boundaries
from ioc.core.storage import audit, boundaries, catalogue


@dataclass(frozen=True)
class BoundaryImportResult:
    features: int
    vertices: int
    source_vertices: int
    positioned: int  # unit versions that got the centroid as their position


async def import_boundaries(conn: asyncpg.Connection, data: bytes, name: str, *, actor: str,
                            code_property: str = "code",
                            tolerance_m: float = DEFAULT_TOLERANCE_M) -> BoundaryImportResult:
    """Store the file's simplified boundaries, or raise BoundaryError and store nothing."""
    known = {a.code for a in await catalogue.list_areas(conn)}
    found = read_boundaries(data, name, known, code_property=code_property, tolerance_m=tolerance_m)
    async with conn.transaction():
        await boundaries.store_boundaries(conn, found, tolerance_m=tolerance_m, source=name, actor=actor)
        positioned = await boundaries.fill_positions(conn, found)
        result = BoundaryImportResult(len(found), sum(b.vertices for b in found),
                                      sum(b.source_vertices for b in found), positioned)
        await audit.record(conn, actor, "areas.boundaries_imported", "areas", {
            "file": name, "features": result.features, "vertices": result.vertices,
            "source_vertices": result.source_vertices, "tolerance_m": tolerance_m, "positioned": positioned,
        })
    return result
