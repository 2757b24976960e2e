"""What the history of areas means for readings: when a code may be reported for, and which
units' readings make up a successor's series before the reform.

Both are computed once from the stored history (a few thousand rows) and then used as
plain lookups: the ingest checks every reading against `Validity`, the API expands a
series' area with `series_sources`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from ioc.core.catalogue.areas import DAY, AreaRow, covers, hi, lo, version_on, versions_by_code
from ioc.core.catalogue.model import Area, Succession


@dataclass(frozen=True, slots=True)
class Validity:
    """The periods a code may be reported for, and what to tell an agency outside them."""

    code: str
    periods: tuple[tuple[date, date], ...]
    # (last day, reason) per ended period, newest last; (first day, reason) per beginning
    ended: tuple[tuple[date, str], ...]
    begins: tuple[tuple[date, str], ...]

    def problem(self, day: date) -> str | None:
        """None when the code is valid on that (local) day, else the reason to give."""
        for start, end in self.periods:
            if start <= day <= end:
                return None
        for end, reason in reversed(self.ended):
            if end < day:
                return reason
        for start, reason in self.begins:
            if day < start:
                return reason
        return f"area {self.code} is not valid on {day}"


def _label(by_code: dict[str, list[AreaRow]], code: str, day: date) -> str:
    row = version_on(by_code, code, day)
    return f"{code} ({row.area.name_vi})" if row else code


def validities(areas: Sequence[Area], successions: Sequence[Succession]) -> dict[str, Validity]:
    """Per code with a bounded period: its Validity (codes valid at all times are absent)."""
    by_code = versions_by_code([AreaRow("", a) for a in areas])
    after: dict[tuple[str, date], list[Succession]] = defaultdict(list)
    before: dict[tuple[str, date], list[Succession]] = defaultdict(list)
    for s in successions:
        after[(s.old_code, s.effective)].append(s)
        before[(s.new_code, s.effective)].append(s)
    out: dict[str, Validity] = {}
    for code, rows in by_code.items():
        versions = [r.area for r in rows]
        if all(a.valid_from is None and a.valid_to is None for a in versions):
            continue
        ended, begins = [], []
        for a in versions:
            if a.valid_to is not None:
                nxt = sorted(after.get((code, a.valid_to + DAY), []), key=lambda s: s.new_code)
                names = ", ".join(
                    _label(by_code, s.new_code, s.effective) + (f" (share {s.share:g})" if s.share < 1 else "")
                    for s in nxt
                )
                word = "successor" if len(nxt) == 1 else "successors"
                ended.append((a.valid_to, f"area {code} ended on {a.valid_to}; report for its {word} {names}"
                              if nxt else f"area {code} ended on {a.valid_to}"))
            if a.valid_from is not None:
                prev = sorted(before.get((code, a.valid_from), []), key=lambda s: s.old_code)
                text = f"area {code} ({a.name_vi}) begins on {a.valid_from}"
                if prev:
                    text += "; before it report for " + ", ".join(
                        _label(by_code, s.old_code, a.valid_from - DAY) for s in prev
                    )
                begins.append((a.valid_from, text))
        out[code] = Validity(code, tuple((lo(a), hi(a)) for a in versions), tuple(ended), tuple(begins))
    return out


@dataclass(frozen=True, slots=True)
class Source:
    """Readings for `code` from `since` (inclusive) to `until` (exclusive), local days, None
    open, count in a series with this `share` (applied to counters, numerators and
    denominators)."""

    code: str
    share: float
    since: date | None
    until: date | None


def series_sources(code: str, areas: Sequence[Area], successions: Sequence[Succession]) -> list[Source]:
    """The units whose readings make up `code`'s series: its newest version itself and,
    before each reform, the units it succeeded (and theirs, and so on).

    A predecessor whose parent is also a predecessor over the same days is left out: its
    readings are part of its parent's (Hà Nam's districts and Hà Nam both became Ninh Bình;
    counting both would count the districts twice).
    """
    by_code = versions_by_code([AreaRow("", a) for a in areas])
    rows = by_code.get(code)
    if not rows:
        return [Source(code, 1.0, None, None)]
    newest = rows[-1].area
    by_new: dict[str, list[Succession]] = defaultdict(list)
    for s in successions:
        by_new[s.new_code].append(s)
    found: list[tuple[Source, Area]] = [(_source(newest, 1.0, None), newest)]

    def walk(version: Area, share: float, until: date | None) -> None:
        for s in by_new.get(version.code, []):
            if not covers(version, s.effective):
                continue
            old = next((r.area for r in by_code.get(s.old_code, []) if r.area.valid_to == s.effective - DAY), None)
            if old is None:
                continue
            end = s.effective if until is None else min(until, s.effective)
            found.append((_source(old, share * s.share, end), old))
            walk(old, share * s.share, end)

    walk(newest, 1.0, None)
    return [src for src, version in found if not _covered_by_parent(src, version, found, by_code)]


def units_at_level(sources: Sequence[Source], level: str, areas: Sequence[Area],
                   successions: Sequence[Succession]) -> list[Source]:
    """The units at `level` below each source, each for the days it sits under it: a
    province's figure from its communes, before the reform those of the provinces it
    succeeded, after it those it holds now (`_ancestors`: the same rule as `units_below`,
    so a series by level and a breakdown count the same units). One level only, so no
    reading is counted twice."""
    out: list[Source] = []
    for m in sorted((m for _, m, _ in _memberships(sources, level, areas, successions)),
                    key=lambda m: (m.code, m.since or date.min)):
        last = out[-1] if out else None
        if last is not None and (last.code, last.share) == (m.code, m.share) and last.until is not None \
                and last.until == m.since:
            out[-1] = Source(m.code, m.share, last.since, m.until)  # under the predecessor, then its successor
        else:
            out.append(m)
    return out


def _memberships(sources: Sequence[Source], level: str, areas: Sequence[Area],
                 successions: Sequence[Succession]) -> list[tuple[int, Source, Area]]:
    """(index into `sources`, the days a unit at `level` counts for that source, the
    unit's version) for every unit below a source. Parents change only on the days a
    version begins or ends or a succession takes effect, so each unit's validity is cut
    there and its ancestors looked up once per piece."""
    by_code = versions_by_code([AreaRow("", a) for a in areas])
    after = _successions_by_old(successions)
    cuts = sorted({d for a in areas for d in (a.valid_from, a.valid_to + DAY if a.valid_to else None) if d}
                  | {x.effective for x in successions})
    by_src: dict[str, list[int]] = defaultdict(list)
    for i, src in enumerate(sources):
        by_src[src.code].append(i)
    out: list[tuple[int, Source, Area]] = []
    chains: dict[tuple[str | None, date], list[str]] = {}  # siblings share their parent's chain
    for unit in areas:
        if unit.level != level:
            continue
        u_hi = hi(unit) + DAY if unit.valid_to is not None else date.max
        edges = [lo(unit), *(c for c in cuts if lo(unit) < c < u_hi), u_hi]
        spans: dict[int, list[tuple[date, date]]] = defaultdict(list)
        for a, b in zip(edges, edges[1:]):
            chain = chains.get((unit.parent_code, a))
            if chain is None:
                chain = chains[(unit.parent_code, a)] = _ancestors(unit, a, by_code, after)
            for code in chain:
                for i in by_src.get(code, ()):
                    src = sources[i]
                    s_lo, s_hi = max(a, src.since or date.min), min(b, src.until or date.max)
                    if s_lo >= s_hi:
                        continue
                    held = spans[i]
                    if held and held[-1][1] == s_lo:
                        held[-1] = (held[-1][0], s_hi)
                    else:
                        held.append((s_lo, s_hi))
        for i, held in spans.items():
            for s_lo, s_hi in held:
                out.append((i, Source(unit.code, sources[i].share, None if s_lo == date.min else s_lo,
                                      None if s_hi == date.max else s_hi), unit))
    return out


def _source(a: Area, share: float, until: date | None) -> Source:
    end = a.valid_to + DAY if a.valid_to is not None else None
    if until is not None:
        end = until if end is None else min(end, until)
    return Source(a.code, share, a.valid_from, end)


def _covered_by_parent(src: Source, version: Area, found: list[tuple[Source, Area]],
                       by_code: dict[str, list[AreaRow]]) -> bool:
    codes = {s.code: s for s, _ in found}
    day = (src.until - DAY) if src.until is not None else (src.since or date.max)
    parent, seen = version.parent_code, {version.code}
    while parent is not None and parent not in seen:
        other = codes.get(parent)
        if other is not None and (other.since is None or other.since <= day) and (other.until is None or day < other.until):
            return True
        seen.add(parent)
        row = version_on(by_code, parent, day) if day != date.max else (by_code.get(parent) or [None])[-1]
        parent = row.area.parent_code if row else None
    return False


def local_start(day: date | None, tz: ZoneInfo) -> datetime | None:
    """The instant a local day begins (validity and successions count in local days)."""
    return None if day is None else datetime.combine(day, time(), tzinfo=tz)


def units_below(code: str, level: str, first: date, last: date,
                areas: Sequence[Area], successions: Sequence[Succession]) -> list[Area]:
    """The units at `level` that make up `code` over the local days [first, last]: for each
    unit whose readings count in `code`'s series in that span (itself, and before a reform the
    units it succeeded), the units at `level` it held on the span's last day.

    A unit whose parent has ended and which did not end with it belongs to the parent's
    successor (Hà Nam's communes, still open in the shipped data, sit under the new Ninh
    Bình once their districts are gone): otherwise a province's communes would vanish from
    its breakdown the day the district tier was abolished. One version per code, the one
    in force on the last day it counts for. Which unit sits under which is `_memberships`,
    the rule `units_at_level` gives a series by level."""
    sources = series_sources(code, areas, successions)
    found: dict[str, tuple[date, Area]] = {}
    for i, member, unit in _memberships(sources, level, areas, successions):
        src = sources[i]
        s_lo = max(first, src.since or date.min)
        s_hi = min(last, src.until - DAY if src.until is not None else date.max)
        if s_lo > s_hi:
            continue
        if (member.since or date.min) <= s_hi and (member.until is None or s_hi < member.until):
            if unit.code not in found or found[unit.code][0] < s_hi:
                found[unit.code] = (s_hi, unit)
    return sorted((unit for _, unit in found.values()), key=lambda a: a.code)


def _successions_by_old(successions: Sequence[Succession]) -> dict[str, list[Succession]]:
    after: dict[str, list[Succession]] = defaultdict(list)
    for s in successions:
        after[s.old_code].append(s)
    return after


def _ancestors(unit: Area, day: date, by_code: dict[str, list[AreaRow]],
               after: dict[str, list[Succession]]) -> list[str]:
    """The codes above `unit` on `day`; an ended parent is replaced by its successor (the one
    that took the largest share of it)."""
    out: list[str] = []
    parent, seen = unit.parent_code, {unit.code}
    while parent is not None and parent not in seen and len(out) < 16:
        seen.add(parent)
        row = version_on(by_code, parent, day)
        if row is None:
            moved = [s for s in after.get(parent, []) if s.effective <= day]
            if not moved:
                break
            newest = max(s.effective for s in moved)
            heir = max((s for s in moved if s.effective == newest), key=lambda s: (s.share, s.new_code))
            out.append(parent)
            parent = heir.new_code
            continue
        out.append(parent)
        parent = row.area.parent_code
    return out


TIERS = ("country", "province", "district", "commune")


def level_below(code: str, first: date, last: date, areas: Sequence[Area],
                successions: Sequence[Succession]) -> str | None:
    """The first tier under the unit that holds units in the local days [first, last]: a
    province's districts before the 2025 reform, its communes after it."""
    mine = [a for a in areas if a.code == code]
    here = mine[-1].level if mine else None
    below = list(TIERS[TIERS.index(here) + 1:]) if here in TIERS else []
    for level in below:
        if units_below(code, level, first, last, areas, successions):
            return level
    return below[0] if below else None
