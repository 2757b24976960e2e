"""An accepted reading as it is stored: the row the ingest writes and storage copies.

It lives in the core because both the ingest (which builds it) and storage (which COPYs
it column by column) need the same shape; the tuple order is the `readings` column order.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

# Column order of `readings`, used by COPY.
READING_COLUMNS = ("ts", "kpi", "area", "value", "agency", "revision", "msg_id", "received_at", "numerator", "denominator")


class Reading(NamedTuple):
    ts: datetime
    kpi: str
    area: str
    value: float
    agency: str
    revision: int
    msg_id: str | None
    received_at: datetime
    # a ratio's parts (value = 100 * numerator / denominator); None for a bare value
    numerator: float | None = None
    denominator: float | None = None
