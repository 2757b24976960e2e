"""The shape of a KPI definition, shared by the shipped data, the API and the ingest."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_INTERVAL = re.compile(r"(\d{1,6})(m|h|d|w|M)")


def parse_interval(text: str) -> timedelta:
    """'15m', '1h', '1d', '1w', '1M' (a month counts as 30 days for staleness checks)."""
    m = _INTERVAL.fullmatch(text)
    if not m:
        raise ValueError(f"interval must look like 15m, 1h, 1d, 1w or 1M, got {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    if not 0 < n <= 100_000:
        raise ValueError("interval must be between 1 and 100000 units")
    return {
        "m": timedelta(minutes=n),
        "h": timedelta(hours=n),
        "d": timedelta(days=n),
        "w": timedelta(weeks=n),
        "M": timedelta(days=30 * n),
    }[unit]


class Sector(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name_vi: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)


class KpiDef(BaseModel):
    """One indicator. `min`/`max` bound what the ingest accepts; `integer` forbids fractions."""

    model_config = ConfigDict(allow_inf_nan=False)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}\.[a-z0-9_]{1,64}$")
    sector: str
    name_vi: str = Field(min_length=1, max_length=300)
    name_en: str = Field(min_length=1, max_length=300)
    unit: str = Field(max_length=40)
    unit_en: str = Field("", max_length=40)
    kind: Literal["counter", "gauge", "ratio"]
    min: float
    max: float
    integer: bool = False
    target: float | None = None
    better: Literal["higher", "lower"]
    interval: str | None = None
    description_vi: str = Field("", max_length=2000)
    description_en: str = Field("", max_length=2000)
    # a ratio is numerator / denominator (x 100): readings may carry both, and then a ratio
    # over areas or a longer period is sum(numerator) / sum(denominator)
    numerator_vi: str = Field("", max_length=300)
    numerator_en: str = Field("", max_length=300)
    denominator_vi: str = Field("", max_length=300)
    denominator_en: str = Field("", max_length=300)
    numerator_within: bool = True  # the numerator counts a part of the denominator: never above it

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str | None) -> str | None:
        if v is not None:
            parse_interval(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "KpiDef":
        if not self.id.startswith(self.sector + "."):
            raise ValueError(f"id {self.id!r} must start with its sector {self.sector!r} and a dot")
        if not self.min < self.max:
            raise ValueError("min must be below max")
        if self.target is not None and not self.min <= self.target <= self.max:
            raise ValueError("target must lie within [min, max]")
        if self.kind == "ratio" and (self.min < 0 or self.max > 100):
            raise ValueError("a ratio is a percentage: its range must lie within 0..100")
        if self.kind == "counter" and (self.min < 0 or not self.integer):
            raise ValueError("a counter counts events: min >= 0 and integer = true")
        if self.kind != "ratio" and (self.numerator_vi or self.numerator_en or self.denominator_vi or self.denominator_en):
            raise ValueError("only a ratio has a numerator and a denominator")
        return self


class Area(BaseModel):
    """One version of an administrative unit: a code is reused when a reform gives it to a
    new unit (the new Ninh Bình province kept code 37), so a unit is (code, valid_from).
    `valid_from`/`valid_to` are local dates, both inclusive; None means open (not stated)."""

    code: str = Field(pattern=r"^[0-9A-Za-z._-]{1,32}$")
    parent_code: str | None
    level: Literal["country", "province", "district", "commune", "zone"]
    name_vi: str = Field(min_length=1, max_length=300)
    name_en: str = Field(min_length=1, max_length=300)
    valid_from: date | None = None
    valid_to: date | None = None
    # the unit's seat (approximately: where the map draws it without a boundary), WGS 84
    # degrees; both or neither, never a guess (data/areas/README.md says where they come from)
    lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False)

    @model_validator(mode="after")
    def _period(self) -> "Area":
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError(f"valid_to {self.valid_to} is before valid_from {self.valid_from}")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        if self.parent_code == self.code:
            raise ValueError(f"area {self.code} cannot be its own parent")
        return self


class Succession(BaseModel):
    """A reform as data: from `effective` on, `new_code` took over `old_code` (whole, or
    `share` of it when the old unit was split). The old unit's version is the one whose
    valid_to is the day before `effective`; the new one is the version valid on it."""

    old_code: str = Field(pattern=r"^[0-9A-Za-z._-]{1,32}$")
    new_code: str = Field(pattern=r"^[0-9A-Za-z._-]{1,32}$")
    effective: date
    share: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
