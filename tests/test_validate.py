"""The ingest's parser and validator on its own: every reason an integrator can get."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from ingest.rules import KpiRule, Rules
from ingest.validate import Limits, parse_payload

UTC = timezone.utc
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RULES = Rules(
    kpis={
        "tthc.dossiers_received": KpiRule("tthc", 0, 20000, True),
        "tthc.on_time_rate": KpiRule("tthc", 0, 100, False, ratio=True),
        "tthc.some_rate": KpiRule("tthc", 0, 100, False, ratio=True, within=False),
        "mt.aqi": KpiRule("mt", 0, 500, False),
    },
    areas=frozenset({"35", "347"}),
    agencies={"tthc": frozenset({"tthc"}), "mt": frozenset({"mt"})},
)


def parse(payload: object, agency: str = "tthc", limits: Limits = Limits()) -> tuple[list, list]:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return parse_payload(agency, raw, RULES, limits, NOW)


def test_timestamps_in_every_accepted_form_mean_the_same_instant() -> None:
    instant = datetime(2026, 5, 31, 17, 0, tzinfo=UTC)
    forms = ["2026-06-01T00:00:00+07:00", "2026-05-31T17:00:00Z", "2026-05-31T17:00:00.000+00:00",
             int(instant.timestamp() * 1000), instant.timestamp() * 1000.0]
    for form in forms:
        ok, bad = parse({"kpi": "tthc.dossiers_received", "ts": form, "value": 5.0, "area": "35"})
        assert not bad, (form, bad)
        assert ok[0].ts == instant and ok[0].value == 5.0 and ok[0].agency == "tthc"


def test_future_skew_is_a_setting() -> None:
    ahead = NOW + timedelta(seconds=60)
    msg = {"kpi": "mt.aqi", "ts": ahead.isoformat(), "value": 80, "area": "35"}
    assert parse(msg, "mt")[0]
    _, bad = parse(msg, "mt", Limits(future_skew_s=30))
    assert "in the future" in bad[0].reason


def test_one_bad_reading_does_not_spoil_its_neighbours() -> None:
    ok, bad = parse([
        {"kpi": "tthc.on_time_rate", "ts": "2026-05-01T00:00:00Z", "value": 99.2, "area": "35", "msg_id": "a"},
        {"kpi": "tthc.on_time_rate", "ts": "2026-05-01T00:00:00Z", "value": 100.5, "area": "35", "msg_id": "b"},
        "not an object",
        {"kpi": "tthc.on_time_rate", "ts": "2026-05-02T00:00:00Z", "value": 98, "area": "347", "rev": 3},
    ])
    assert [(x.value, x.msg_id, x.revision) for x in ok] == [(99.2, "a", 0), (98.0, None, 3)]
    assert [(b.index, b.msg_id) for b in bad] == [(1, "b"), (2, None)]
    assert "out of range [0, 100]" in bad[0].reason and "JSON object" in bad[1].reason


def test_whole_message_rejects() -> None:
    assert "unknown or disabled agency" in parse({"kpi": "mt.aqi"}, "nobody")[1][0].reason
    assert "payload too large" in parse(b"[" + b" " * 2000 + b"]", limits=Limits(max_payload_bytes=1024))[1][0].reason
    many = [{"kpi": "mt.aqi", "ts": 1, "value": 1, "area": "35"}] * 11
    assert "too many readings" in parse(many, "mt", Limits(max_readings=10))[1][0].reason
    assert "malformed JSON" in parse(b"\xff\xfe")[1][0].reason


def test_sector_rules_keep_agencies_to_their_indicators() -> None:
    _, bad = parse({"kpi": "mt.aqi", "ts": "2026-05-01T00:00:00Z", "value": 5, "area": "35"}, "tthc")
    assert "may not report 'mt.aqi'" in bad[0].reason


def test_reasons_quote_and_cut_what_the_agency_sent() -> None:
    _, bad = parse({"kpi": "x" * 500 + "'; DROP TABLE kpis; --", "ts": 1, "value": 1, "area": "35"})
    assert bad[0].reason.startswith("unknown kpi ") and "xxxx" in bad[0].reason and len(bad[0].reason) < 100
    assert len(bad[0].kpi or "") == 100


def test_a_ratio_may_carry_its_numerator_and_denominator() -> None:
    base = {"kpi": "tthc.on_time_rate", "ts": "2026-05-01T00:00:00Z", "area": "35"}
    ok, bad = parse([
        {**base, "numerator": 118, "denominator": 120},
        {**base, "numerator": 118, "denominator": 120, "value": 98.33, "area": "347"},  # rounded: fine
        {**base, "value": 98.4, "area": "35", "ts": "2026-05-02T00:00:00Z"},  # a bare percentage
    ])
    assert not bad, bad
    assert [(r.numerator, r.denominator) for r in ok] == [(118.0, 120.0), (118.0, 120.0), (None, None)]
    assert ok[0].value == pytest.approx(100 * 118 / 120) and ok[2].value == 98.4
    cases = [
        ({**base, "numerator": 5}, "send both numerator and denominator"),
        ({**base, "numerator": -1, "denominator": 10}, "numerator must not be negative"),
        ({**base, "numerator": 1, "denominator": -10}, "denominator must not be negative"),
        ({**base, "numerator": 0, "denominator": 0}, "denominator is 0: the rate is undefined"),
        ({**base, "numerator": 12, "denominator": 10}, "numerator 12 is above denominator 10"),
        ({**base, "numerator": "12", "denominator": 10}, "numerator must be a finite number"),
        ({**base, "numerator": 118, "denominator": 120, "value": 97}, "value 97 does not match numerator / denominator"),
        ({**base, "kpi": "tthc.dossiers_received", "numerator": 1, "denominator": 2}, "is not a ratio"),
    ]
    ok, bad = parse([c for c, _ in cases])
    assert not ok
    for (_, fragment), reject in zip(cases, bad):
        assert fragment in reject.reason, (fragment, reject.reason)
    # where the KPI says the numerator is not a part of the denominator, it may exceed it,
    # but the percentage must still lie in the KPI's range
    ok, bad = parse([{**base, "kpi": "tthc.some_rate", "numerator": 12, "denominator": 10}])
    assert not ok and "out of range [0, 100]" in bad[0].reason
    ok, _ = parse([{**base, "kpi": "tthc.some_rate", "numerator": 9, "denominator": 10}])
    assert ok[0].value == pytest.approx(90.0)
