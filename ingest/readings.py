"""The records that flow through the ingest: accepted readings and rejects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

# Column order of `readings`, used by COPY.
READING_COLUMNS = ("ts", "kpi", "area", "value", "agency", "revision", "msg_id", "received_at")


class Reading(NamedTuple):
    ts: datetime
    kpi: str
    area: str
    value: float
    agency: str
    revision: int
    msg_id: str | None
    received_at: datetime


@dataclass(slots=True)
class Reject:
    """Why one reading (index >= 0) or a whole message (index None) was refused."""

    reason: str
    index: int | None = None
    kpi: str | None = None
    area: str | None = None
    msg_id: str | None = None
