"""Late and missing reports over a month, by the wall's silence rule (`ioc.core.silence`).

Walk an agency's arrivals for one KPI from its last one before the month (or the month's
start when there is none in the look-back) to the month's end: each stretch without a
reading longer than the silence threshold is a time it was late. No arrival in the month and
silent at its end is `missing`: nothing reported at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ioc.core.silence import silence_threshold
from ioc.serve.reports.model import Lateness


def judge(received: Sequence[datetime], start: datetime, end: datetime, every: timedelta) -> tuple[str | None, int, datetime | None, timedelta]:
    """(status: late | missing | None, arrivals in the month, last arrival, longest gap)."""
    limit = silence_threshold(every)
    before = [t for t in received if t < start]
    during = [t for t in received if start <= t < end]
    last = during[-1] if during else (before[-1] if before else None)
    marks = [before[-1] if before else start, *during, end]
    longest = max(b - a for a, b in zip(marks, marks[1:]))
    if not during and (last is None or end - last > limit):
        return "missing", 0, last, longest
    return ("late" if longest > limit else None), len(during), last, longest


def late_and_missing(rows: Sequence[Any], start: datetime, end: datetime) -> list[Lateness]:
    """The (agency, KPI) pairs of `ioc.core.storage.receptions` that were late or missing."""
    out = []
    for r in rows:
        status, arrivals, last, longest = judge(list(r["received"]), start, end, r["every"])
        if status is not None:
            out.append(Lateness(r["agency"], r["agency_vi"], r["agency_en"] or r["agency_vi"], r["kpi"], r["kpi_vi"],
                                r["kpi_en"], r["every"], status, arrivals, last, longest))  # type: ignore[arg-type]
    return out
