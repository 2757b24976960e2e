"""Areas over time: checking a set of unit versions and successions before it is stored.

Units change (the 2025 reform merged provinces and abolished districts), so the stored set
must stay one consistent history: an import or the shipped data is checked whole, and every
problem names the row it comes from (`where`, e.g. "units.csv row 4"), so an admin can fix
the file in one pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from ioc.core.catalogue.model import Area, Succession

DAY = timedelta(days=1)
SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class AreaRow:
    where: str
    area: Area


@dataclass(frozen=True)
class SuccessionRow:
    where: str
    succession: Succession


class AreaSetError(ValueError):
    """The set does not hold together; `problems` lists each, naming its row."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def lo(a: Area) -> date:
    return a.valid_from or date.min


def hi(a: Area) -> date:
    return a.valid_to or date.max


def span(a: Area) -> str:
    return f"{a.valid_from or '…'}..{a.valid_to or '…'}"


def covers(a: Area, day: date) -> bool:
    return lo(a) <= day <= hi(a)


def versions_by_code(areas: Sequence[AreaRow]) -> dict[str, list[AreaRow]]:
    out: dict[str, list[AreaRow]] = defaultdict(list)
    for row in areas:
        out[row.area.code].append(row)
    for rows in out.values():
        rows.sort(key=lambda r: lo(r.area))
    return dict(out)


def check_area_set(areas: Sequence[AreaRow], successions: Sequence[SuccessionRow]) -> list[str]:
    """Every problem of the whole set (empty when it holds together)."""
    by_code = versions_by_code(areas)
    problems: list[str] = []
    for code, rows in by_code.items():
        for prev, cur in zip(rows, rows[1:]):
            if lo(cur.area) <= hi(prev.area):
                problems.append(f"{cur.where}: area {code} valid {span(cur.area)} overlaps "
                                f"{prev.where} (valid {span(prev.area)})")
    for row in areas:
        parent = row.area.parent_code
        if parent is not None and parent not in by_code:
            problems.append(f"{row.where}: parent_code {parent} of area {row.area.code} is not a known area")
    problems.extend(_cycles(areas, by_code))
    problems.extend(_check_successions(by_code, successions))
    return problems


def require_area_set(areas: Sequence[AreaRow], successions: Sequence[SuccessionRow]) -> None:
    problems = check_area_set(areas, successions)
    if problems:
        raise AreaSetError(problems)


def _cycles(areas: Sequence[AreaRow], by_code: dict[str, list[AreaRow]]) -> list[str]:
    parents: dict[str, set[str]] = defaultdict(set)
    for row in areas:
        if row.area.parent_code in by_code:
            parents[row.area.code].add(row.area.parent_code)  # type: ignore[arg-type]
    problems: list[str] = []
    done: set[str] = set()
    reported: set[frozenset[str]] = set()

    def visit(code: str, path: list[str]) -> None:
        if code in path:
            loop = path[path.index(code):] + [code]
            key = frozenset(loop)
            if key not in reported:
                reported.add(key)
                first = by_code[loop[0]][0].where
                problems.append(f"{first}: a cycle in parents: {' -> '.join(loop)}")
            return
        if code in done:
            return
        for p in sorted(parents.get(code, ())):
            visit(p, path + [code])
        done.add(code)

    for code in sorted(by_code):
        visit(code, [])
    return problems


def _ending_on(by_code: dict[str, list[AreaRow]], code: str, day: date) -> AreaRow | None:
    return next((r for r in by_code.get(code, []) if r.area.valid_to == day), None)


def version_on(by_code: dict[str, list[AreaRow]], code: str, day: date) -> AreaRow | None:
    return next((r for r in by_code.get(code, []) if covers(r.area, day)), None)


def _check_successions(by_code: dict[str, list[AreaRow]], successions: Sequence[SuccessionRow]) -> list[str]:
    problems: list[str] = []
    groups: dict[tuple[str, date], list[SuccessionRow]] = defaultdict(list)
    seen: dict[tuple[str, str, date], str] = {}
    for row in successions:
        s = row.succession
        key = (s.old_code, s.new_code, s.effective)
        if key in seen:
            problems.append(f"{row.where}: repeats the succession {s.old_code} -> {s.new_code} of {seen[key]}")
            continue
        seen[key] = row.where
        groups[(s.old_code, s.effective)].append(row)
        if s.old_code not in by_code:
            problems.append(f"{row.where}: old_code {s.old_code} is not a known area")
        elif _ending_on(by_code, s.old_code, s.effective - DAY) is None:
            problems.append(f"{row.where}: no version of area {s.old_code} ends on {s.effective - DAY} "
                            f"(the day before effective {s.effective}): set its valid_to")
        if s.new_code not in by_code:
            problems.append(f"{row.where}: new_code {s.new_code} is not a known area")
        elif version_on(by_code, s.new_code, s.effective) is None:
            problems.append(f"{row.where}: area {s.new_code} has no version valid on {s.effective}")
    for (old, effective), rows in sorted(groups.items()):
        total = sum(r.succession.share for r in rows)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            problems.append(f"{', '.join(r.where for r in rows)}: the shares of area {old}'s successors "
                            f"from {effective} sum to {total:g}, not 1")
    for code, rows in by_code.items():
        for row in rows:
            end = row.area.valid_to
            if end is not None and (code, end + DAY) not in groups:
                problems.append(f"{row.where}: area {code} ends on {end} but no succession names its "
                                f"successor(s) from {end + DAY}")
    return problems
