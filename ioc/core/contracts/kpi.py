"""A reading's live value (ingest -> hubs), the acknowledgement agencies read, and the
per-reading result of a message that asked for one.

The live value is retained on `topics.live_kpi(kpi, area)` after the reading is committed;
the hub checks it here so that a malformed value stops at the door, not in a page.
The acknowledgement on `topics.ack(agency)` is the agency's only view of what was refused
(README, "For an agency's integrator"). A message published with an MQTT 5 Response Topic
`topics.result(agency, request)` (the API does so for the HTTP endpoint) also gets one
result per reading there, once its batch is committed (or spooled while the database is away).
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


#: what became of one reading: stored new, stored as a correction (rev > 0), already stored
#: with the same value, refused (with a reason), or spooled (stored once the database is back)
RowStatus = Literal["accepted", "corrected", "duplicate", "refused", "spooled"]
ROW_STATUSES: tuple[RowStatus, ...] = ("accepted", "corrected", "duplicate", "refused", "spooled")


class RowResult(TypedDict, total=False):
    index: int | None  # None: the whole message (not JSON, too large, unknown agency)
    kpi: str | None
    area: str | None
    msg_id: str | None
    status: RowStatus
    reason: str


#: an answer stays well under the broker's packet limit (2 MiB; Mosquitto disconnects a client
#: that publishes a larger packet, and the ingest would loop on redeliveries)
MAX_RESULT_BYTES = 1792 * 1024


def encode_result(request: str, received_at: Any, rows: list[RowResult]) -> bytes:
    """`{"request", "received_at", "results": [{"index", "kpi", "area", "msg_id", "status", "reason"?}]}`.

    Over MAX_RESULT_BYTES the rows lose kpi, area and msg_id (the requester has them by
    index) and long reasons are cut; if that is not enough, the answer keeps the first rows
    that fit and says `"truncated": true` (the rest are in the dead letters, as for MQTT)."""
    body = orjson.dumps({"request": request, "received_at": received_at, "results": rows})
    if len(body) <= MAX_RESULT_BYTES:
        return body
    short: list[dict[str, Any]] = []
    for row in rows:
        slim: dict[str, Any] = {"index": row.get("index"), "status": row.get("status")}
        if row.get("reason"):
            slim["reason"] = str(row["reason"])[:120]
        short.append(slim)
    truncated = False
    while True:
        body = orjson.dumps({"request": request, "received_at": received_at, "results": short,
                             **({"truncated": True} if truncated else {})})
        if len(body) <= MAX_RESULT_BYTES or not short:
            return body
        keep = int(len(short) * MAX_RESULT_BYTES / len(body) * 0.95)
        short = short[:min(keep, len(short) - 1)]
        truncated = True


def decode_result(payload: bytes | bytearray) -> dict[str, Any]:
    doc = orjson.loads(payload)
    if not isinstance(doc, dict) or not isinstance(doc.get("request"), str) or not isinstance(doc.get("results"), list):
        raise ValueError("not an ingest result")
    for row in doc["results"]:
        if not isinstance(row, dict) or row.get("status") not in ROW_STATUSES:
            raise ValueError("an ingest result row without a known status")
    return doc
