"""Turning one MQTT payload into accepted readings and rejects, with a reason for each.

The contract (ARCHITECTURE.md): topic `ioc/v1/kpi/<agency>`, payload one JSON object or an
array of them, `{"kpi", "ts", "value", "area", "msg_id"?, "rev"?, "agency"?}`. A bad
reading never spoils the good ones next to it; a bad message (not JSON, too large) is
rejected whole. Reasons are written for the agency's integrator: they say what to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from ingest.readings import Reject
from ioc.core.readings import Reading
from ingest.rules import KpiRule, Rules

ALLOWED_FIELDS = frozenset({"kpi", "ts", "value", "area", "msg_id", "rev", "agency", "numerator", "denominator"})
# a value sent beside its numerator and denominator may be rounded, by this much at most
VALUE_ROUNDING = 0.01
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
EARLIEST_MS = EARLIEST.timestamp() * 1000
MAX_REVISION = 2**31 - 1
UTC = timezone.utc


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int = 1024 * 1024
    max_readings: int = 10_000
    future_skew_s: float = 300.0


def show(value: Any, limit: int = 60) -> str:
    """A user-supplied value, quoted and cut, safe to put in a reason or a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_payload(
    agency: str,
    payload: bytes,
    rules: Rules,
    limits: Limits,
    received_at: datetime,
) -> tuple[list[Reading], list[Reject]]:
    if len(payload) > limits.max_payload_bytes:
        return [], [Reject(f"payload too large: {len(payload)} bytes, the limit is {limits.max_payload_bytes}")]
    sectors = rules.agencies.get(agency)
    if sectors is None:
        return [], [Reject(f"unknown or disabled agency {show(agency)}")]
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return [], [Reject(f"malformed JSON: {str(exc)[:120]}")]
    if isinstance(doc, dict):
        items: list[Any] = [doc]
    elif isinstance(doc, list):
        items = doc
        if not items:
            return [], [Reject("empty array: send at least one reading")]
        if len(items) > limits.max_readings:
            return [], [Reject(f"too many readings in one message: {len(items)}, the limit is {limits.max_readings}")]
    else:
        return [], [Reject("payload must be a JSON object or an array of objects")]

    now_ms = received_at.timestamp() * 1000
    latest_ms = now_ms + limits.future_skew_s * 1000
    kpis = rules.kpis
    areas = rules.areas
    area_validity = rules.area_validity
    tz = rules.tz
    readings: list[Reading] = []
    rejects: list[Reject] = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            rejects.append(Reject("reading must be a JSON object", index))
            continue
        kpi = item.get("kpi")
        area = item.get("area")
        msg_id = item.get("msg_id")
        reason = None
        if not ALLOWED_FIELDS.issuperset(item):
            extra = sorted(k for k in item if k not in ALLOWED_FIELDS)
            reason = "unknown field(s) " + ", ".join(show(k, 40) for k in extra[:5]) + "; allowed: " + ", ".join(sorted(ALLOWED_FIELDS))
        elif msg_id is not None and (type(msg_id) is not str or len(msg_id) > 128 or "\x00" in msg_id):
            reason = "msg_id must be a string of at most 128 characters"
            msg_id = None
        elif "agency" in item and item["agency"] != agency:
            reason = f"agency {show(item['agency'])} in the payload does not match the topic's agency {agency!r}"
        elif type(kpi) is not str:
            reason = "kpi is missing or not a string" if kpi is None else "kpi must be a string"
        elif (rule := kpis.get(kpi)) is None:
            reason = f"unknown kpi {show(kpi)}"
        elif rule.sector not in sectors:
            reason = f"agency {agency!r} may not report {kpi!r} (sector {rule.sector!r})"
        elif type(area) is not str:
            reason = "area is missing or not a string" if area is None else "area must be a string (an administrative unit code)"
        elif area not in areas:
            reason = f"unknown area {show(area)}"
        else:
            value = item.get("value")
            num = den = None
            if "numerator" in item or "denominator" in item:
                value, num, den, reason = fraction(rule, kpi, item)
            vt = type(value)
            if reason is not None:
                pass
            elif vt is not int and vt is not float:
                reason = "value is missing" if value is None else f"value must be a number, got {show(value)}"
            elif vt is float and not math.isfinite(value):
                reason = "value must be a finite number"
            elif rule.integer and vt is float and not value.is_integer():
                reason = f"{kpi} counts whole units: value must be an integer, got {value!r}"
            elif not rule.lo <= value <= rule.hi:
                reason = f"value {show(value)} out of range [{rule.lo:g}, {rule.hi:g}] for {kpi}"
            else:
                ts, reason = _parse_ts(item.get("ts"), latest_ms, limits.future_skew_s)
                if reason is None:
                    rev = item.get("rev", 0)
                    if type(rev) is not int or not 0 <= rev <= MAX_REVISION:
                        reason = "rev must be a non-negative integer"
                    elif (validity := area_validity.get(area)) is not None and (
                        reason := validity.problem(ts.astimezone(tz).date())  # type: ignore[union-attr]
                    ) is not None:
                        pass
                    else:
                        readings.append(Reading(ts, kpi, area, float(value), agency, rev, msg_id, received_at, num, den))  # type: ignore[arg-type]
                        continue
        rejects.append(
            Reject(
                reason,
                index,
                kpi[:100] if type(kpi) is str else None,
                area[:100] if type(area) is str else None,
                msg_id if type(msg_id) is str else None,
            )
        )
    return readings, rejects


def _number(raw: Any) -> bool:
    t = type(raw)
    return (t is int or t is float) and math.isfinite(raw)


def fraction(rule: KpiRule, kpi: str, item: dict[str, Any]) -> tuple[Any, float | None, float | None, str | None]:
    """A ratio sent as its parts: (value, numerator, denominator, reason). The value is
    100 * numerator / denominator; one sent beside them must agree (to rounding)."""
    num, den = item.get("numerator"), item.get("denominator")
    if not rule.ratio:
        return None, None, None, f"{kpi} is not a ratio: send value only, without numerator and denominator"
    if num is None or den is None:
        return None, None, None, "send both numerator and denominator (or value alone, a bare percentage)"
    for name, raw in (("numerator", num), ("denominator", den)):
        if not _number(raw):
            return None, None, None, f"{name} must be a finite number, got {show(raw)}"
        if raw < 0:
            return None, None, None, f"{name} must not be negative, got {show(raw)}"
    if den == 0:
        return None, None, None, ("denominator is 0: the rate is undefined; "
                                  "send no reading for a period without cases")
    if rule.within and num > den:
        return None, None, None, (f"numerator {show(num)} is above denominator {show(den)}: "
                                  f"{kpi} counts a part of the whole")
    computed = 100.0 * num / den
    sent = item.get("value")
    if sent is not None:
        if not _number(sent):
            return None, None, None, f"value must be a number, got {show(sent)}"
        if abs(sent - computed) > VALUE_ROUNDING:
            return None, None, None, (f"value {show(sent)} does not match numerator / denominator "
                                      f"({computed:.4g} %): send the parts alone, or a value rounded to 2 decimals")
    return computed, float(num), float(den), None


def _parse_ts(raw: Any, latest_ms: float, skew_s: float) -> tuple[datetime | None, str | None]:
    rt = type(raw)
    if rt is str:
        if len(raw) > 40:
            return None, "ts is not an ISO 8601 timestamp"
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            return None, f"ts {show(raw)} is not an ISO 8601 timestamp"
        if ts.tzinfo is None:
            return None, f"ts {show(raw)} has no UTC offset: add Z or +07:00"
        ms = ts.timestamp() * 1000
    elif rt is int or rt is float:
        if not math.isfinite(raw):
            return None, "ts must be finite"
        ms = float(raw)
        if ms < EARLIEST_MS or ms > latest_ms:
            return None, _range_reason(ms, latest_ms, skew_s)
        ts = datetime.fromtimestamp(ms / 1000, UTC)
    elif raw is None:
        return None, "ts is missing"
    else:
        return None, "ts must be an ISO 8601 string or epoch milliseconds"
    if ms < EARLIEST_MS or ms > latest_ms:
        return None, _range_reason(ms, latest_ms, skew_s)
    return ts, None


def _range_reason(ms: float, latest_ms: float, skew_s: float) -> str:
    if ms < EARLIEST_MS:
        return "ts is before 2000-01-01 (epoch milliseconds expected for numbers)"
    return f"ts is in the future (more than {skew_s:g} s ahead of the server clock)"
