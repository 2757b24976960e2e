"""Reading unit lists and successions from CSV: the shipped data and `ioc areas import`.

One parser for both, so the shipped files obey exactly the rules an admin's import does.
A file is a unit list or a succession list, told apart by its header; every problem names
the file, the row (the line number, the header being row 1) and the column.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from pydantic import ValidationError

from ioc.core.catalogue.areas import AreaRow, AreaSetError, SuccessionRow
from ioc.core.catalogue.model import Area, Succession

UNIT_COLUMNS = ("code", "parent_code", "level", "name_vi", "name_en")
UNIT_OPTIONAL = ("valid_from", "valid_to", "lat", "lon")
SUCCESSION_COLUMNS = ("old_code", "new_code", "effective")
SUCCESSION_OPTIONAL = ("share",)
MAX_ROWS = 200_000


def read_area_csv(text: str, name: str) -> tuple[list[AreaRow], list[SuccessionRow]]:
    """The rows of one file (units or successions); AreaSetError lists every bad row."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if "code" in header:
        kind, required, optional = "units", UNIT_COLUMNS, UNIT_OPTIONAL
    elif "old_code" in header:
        kind, required, optional = "successions", SUCCESSION_COLUMNS, SUCCESSION_OPTIONAL
    else:
        raise AreaSetError([
            f"{name} row 1: the header must be a unit list ({','.join(UNIT_COLUMNS + UNIT_OPTIONAL)}) "
            f"or a succession list ({','.join(SUCCESSION_COLUMNS + SUCCESSION_OPTIONAL)})"
        ])
    problems = [f"{name} row 1: column {c} is missing" for c in required if c not in header]
    problems += [f"{name} row 1: unknown column {c!r}" for c in header if c not in required + optional]
    if problems:
        raise AreaSetError(problems)
    areas: list[AreaRow] = []
    successions: list[SuccessionRow] = []
    for row in reader:
        where = f"{name} row {reader.line_num}"
        if len(areas) + len(successions) >= MAX_ROWS:
            raise AreaSetError([f"{where}: more than {MAX_ROWS} rows: split the file"])
        if None in row:
            problems.append(f"{where}: more fields than the header has columns")
            continue
        cells = {k: (v or "").strip() for k, v in row.items()}
        if not any(cells.values()):
            continue
        try:
            if kind == "units":
                areas.append(AreaRow(where, _unit(cells, where)))
            else:
                successions.append(SuccessionRow(where, _succession(cells, where)))
        except _CellError as exc:
            problems.append(str(exc))
    if problems:
        raise AreaSetError(problems)
    return areas, successions


class _CellError(ValueError):
    pass


def _date(cells: dict[str, str], column: str, where: str) -> date | None:
    text = cells.get(column, "")
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _CellError(f"{where}, column {column}: {text[:40]!r} is not a date (YYYY-MM-DD)") from None


def _build(model: Any, fields: dict[str, Any], where: str) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            parts.append(f"{where}, column {loc}: {err['msg']}" if loc else f"{where}: {err['msg']}")
        raise _CellError("; ".join(parts)) from None


def _unit(cells: dict[str, str], where: str) -> Area:
    return _build(Area, {
        "code": cells["code"], "parent_code": cells["parent_code"] or None, "level": cells["level"],
        "name_vi": cells["name_vi"], "name_en": cells["name_en"],
        "valid_from": _date(cells, "valid_from", where), "valid_to": _date(cells, "valid_to", where),
        "lat": _number(cells, "lat", where), "lon": _number(cells, "lon", where),
    }, where)


def _number(cells: dict[str, str], column: str, where: str) -> float | None:
    text = cells.get(column, "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise _CellError(f"{where}, column {column}: {text[:40]!r} is not a number") from None


def _succession(cells: dict[str, str], where: str) -> Succession:
    effective = _date(cells, "effective", where)
    if effective is None:
        raise _CellError(f"{where}, column effective: the first day of the successor is missing")
    share_text = cells.get("share", "")
    try:
        share = float(share_text) if share_text else 1.0
    except ValueError:
        raise _CellError(f"{where}, column share: {share_text[:40]!r} is not a number") from None
    return _build(Succession, {
        "old_code": cells["old_code"], "new_code": cells["new_code"], "effective": effective, "share": share,
    }, where)
