"""What a monthly report says, before it is drawn: the same figures go to the PDF and the XLSX."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

Lang = Literal["vi", "en"]
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class ReportRequestError(ValueError):
    """A report asked for with a bad month, area, agency or language; the message says which."""


def parse_month(text: str) -> date:
    """'2026-11' -> 2026-11-01; anything else (2026-13, 26-11, 2026-11-05) is refused."""
    m = _MONTH.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m or not 1 <= int(m.group(2)) <= 12 or not 2000 <= int(m.group(1)) < 2100:
        raise ReportRequestError(f"month must be YYYY-MM between 2000-01 and 2099-12, got {str(text)[:40]!r}")
    return date(int(m.group(1)), int(m.group(2)), 1)


def shift_month(month: date, by: int) -> date:
    n = month.year * 12 + month.month - 1 + by
    return date(n // 12, n % 12 + 1, 1)


@dataclass(frozen=True)
class Figure:
    """One KPI over the month, as /api/v1/series?bucket=1M answers for the same area."""

    kpi: str
    name_vi: str
    name_en: str
    unit: str
    unit_en: str
    kind: str
    target: float | None
    better: str
    value: float | None
    reason: str | None
    n: int
    previous: float | None  # the month before
    last_year: float | None  # the same month a year earlier
    status: str  # met | missed | none (no target or no value)


@dataclass(frozen=True)
class RankRow:
    rank: int | None
    code: str
    name_vi: str
    name_en: str
    value: float | None
    status: str | None


@dataclass(frozen=True)
class Ranking:
    """The units below the report's area for one KPI, best first (/api/v1/breakdown's rows)."""

    kpi: str
    name_vi: str
    name_en: str
    unit: str
    unit_en: str
    level: str
    rows: list[RankRow]


@dataclass(frozen=True)
class CameraUptime:
    """A camera's month as /api/v1/cameras/{id}/uptime counts it: online time over watched time."""

    camera: str
    name: str
    area: str | None
    online_s: float
    known_s: float
    faults: int  # fault events that began in the month

    @property
    def uptime(self) -> float | None:
        return 100.0 * self.online_s / self.known_s if self.known_s else None


@dataclass(frozen=True)
class Lateness:
    """An agency that went past its reporting interval for a KPI in the month (`late`) or sent
    it nothing in the month and was silent at its end (`missing`)."""

    agency: str
    agency_vi: str
    agency_en: str
    kpi: str
    kpi_vi: str
    kpi_en: str
    every: timedelta
    status: Literal["late", "missing"]
    arrivals: int  # distinct arrival times in the month
    last: datetime | None  # the last arrival before the month's end
    longest_gap: timedelta  # the longest time without a reading (from its last before the month)


@dataclass
class ReportData:
    month: date
    start: datetime
    end: datetime
    timezone: str
    lang: Lang
    area: str
    area_vi: str
    area_en: str
    level: str
    agency: str | None
    agency_vi: str | None
    agency_en: str | None
    made_at: datetime
    figures: list[Figure] = field(default_factory=list)
    rankings: list[Ranking] = field(default_factory=list)
    cameras: list[CameraUptime] | None = None  # None: not part of this report (an agency's)
    lateness: list[Lateness] = field(default_factory=list)
