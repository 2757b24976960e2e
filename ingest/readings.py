"""The ingest's rejects; the accepted reading itself is `ioc.core.readings.Reading`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Reject:
    """Why one reading (index >= 0) or a whole message (index None) was refused."""

    reason: str
    index: int | None = None
    kpi: str | None = None
    area: str | None = None
    msg_id: str | None = None
