"""A reading's live value (ingest -> hubs) and the acknowledgement agencies read.

The live value is retained on `topics.live_kpi(kpi, area)` after the reading is committed;
the hub checks it here so that a malformed value stops at the door, not in a page.
The acknowledgement on `topics.ack(agency)` is the agency's only view of what was refused
(README, "For an agency's integrator").
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypedDict

import orjson


class LiveKpi(TypedDict):
    kpi: str
    area: str
    ts: float | str  # as stored: epoch seconds
    value: float
    rev: int
    agency: str
    received_at: float


def encode_live(kpi: str, area: str, ts: Any, value: float, rev: int, agency: str, received_at: Any) -> bytes:
    return orjson.dumps({"kpi": kpi, "area": area, "ts": ts, "value": value, "rev": rev,
                         "agency": agency, "received_at": received_at})


def decode_live(payload: bytes | bytearray) -> LiveKpi:
    doc = orjson.loads(payload)
    if not isinstance(doc, dict) or not isinstance(doc.get("kpi"), str) or not isinstance(doc.get("area"), str):
        raise ValueError("live KPI value without kpi or area")
    value = doc.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"live KPI value is not a finite number: {str(value)[:40]!r}")
    return doc  # type: ignore[return-value]


class RejectedItem(TypedDict):
    index: int | None
    kpi: str | None
    area: str | None
    msg_id: str | None
    reason: str


AckStatus = Literal["partial", "rejected", "conflict"]


def encode_ack(status: AckStatus, rejected: list[dict[str, Any]], **fields: Any) -> bytes:
    """`{"status", "rejected_count", "rejected", ...}`; `fields` carry msg_id, accepted,
    received_at where the status has them (README shows one)."""
    body: dict[str, Any] = {"status": status, **fields, "rejected": rejected}
    body.setdefault("rejected_count", len(rejected))
    return orjson.dumps(body)


def decode_ack(payload: bytes | bytearray) -> dict[str, Any]:
    doc = orjson.loads(payload)
    if not isinstance(doc, dict) or doc.get("status") not in ("partial", "rejected", "conflict"):
        raise ValueError("not an ingest acknowledgement")
    return doc
