"""`ioc areas import`: unit lists and successions from an admin's CSV files, all or nothing.

The files are checked together with what is stored (a new commune list must fit the stored
provinces; the old communes it ends must get successors), inside one transaction that holds
the area tables' write lock: any problem and nothing changes. Accepted, the change is
audited and the ingest workers reload their rules (NOTIFY ioc_catalogue).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ioc.core.catalogue.area_files import read_area_csv
from ioc.core.catalogue.areas import AreaRow, AreaSetError, SuccessionRow, require_area_set, span
from ioc.core.storage import audit, catalogue


@dataclass(frozen=True)
class ImportResult:
    units: int
    successions: int


def parse_files(files: list[tuple[str, str]]) -> tuple[list[AreaRow], list[SuccessionRow]]:
    """Every file's rows; AreaSetError with the problems of all files at once."""
    areas: list[AreaRow] = []
    successions: list[SuccessionRow] = []
    problems: list[str] = []
    for name, text in files:
        try:
            a, s = read_area_csv(text, name)
        except AreaSetError as exc:
            problems += exc.problems
            continue
        areas += a
        successions += s
    if problems:
        raise AreaSetError(problems)
    return areas, successions


async def import_areas(conn: asyncpg.Connection, files: list[tuple[str, str]], *, actor: str) -> ImportResult:
    """Store the files' unit versions and successions, or raise AreaSetError and store nothing."""
    areas, successions = parse_files(files)
    async with conn.transaction():
        await catalogue.lock_areas(conn)
        keys = {(r.area.code, r.area.valid_from) for r in areas}
        replaced = {(r.succession.old_code, r.succession.effective) for r in successions}
        merged_areas = [
            AreaRow(f"stored area {a.code} ({span(a)})", a)
            for a in await catalogue.list_areas(conn) if (a.code, a.valid_from) not in keys
        ] + areas
        merged_successions = [
            SuccessionRow(f"stored succession {s.old_code} -> {s.new_code} from {s.effective}", s)
            for s in await catalogue.list_successions(conn) if (s.old_code, s.effective) not in replaced
        ] + successions
        require_area_set(merged_areas, merged_successions)
        await catalogue.store_areas(conn, [r.area for r in areas], [r.succession for r in successions])
        await audit.record(conn, actor, "areas.imported", "areas", {
            "files": [name for name, _ in files], "units": len(areas), "successions": len(successions),
        })
        await catalogue.notify_changed(conn, "areas")
    return ImportResult(len(areas), len(successions))
