"""The demo's simulated figures look alive: a minute gauge such as the AQI does not sit on one
value for many minutes while its timestamp moves (an operator takes that for a stuck feed)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ioc.extras.demo.figures import Gauge, catalogue_series, gauge_reading

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def test_the_demo_aqi_moves_within_minutes_at_every_station() -> None:
    aqi = [s for series in catalogue_series().values() for s in series if isinstance(s, Gauge) and s.kpi == "mt.aqi"]
    assert len(aqi) >= 5  # four stations and the province
    start = datetime(2026, 12, 1, tzinfo=TZ)
    for g in aqi:
        values = [gauge_reading(g, start + timedelta(minutes=i)).value for i in range(2 * 1440)]
        longest = run = 1
        for a, b in zip(values, values[1:], strict=False):
            run = run + 1 if a == b else 1
            longest = max(longest, run)
        assert longest <= 6, f"{g.kpi} {g.area}: the same value for {longest} minutes running"
        assert max(values) - min(values) > 20, f"{g.kpi} {g.area}: no daily rhythm"


def test_the_demo_sends_ratios_with_their_parts_and_the_ingest_takes_them() -> None:
    """Rates that have parts (on time, online, paid, e-ID activation, fully online services)
    go with numerator and denominator, so the province's rate from its communes is weighted;
    every such reading of two months passes the ingest's own validator (a Sunday with nothing
    counted sends no rate rather than 0 of 0)."""
    import orjson

    from ingest.rules import KpiRule, Rules
    from ingest.validate import Limits, parse_payload
    from ioc.core.catalogue.shipped import shipped_areas, shipped_catalogue
    from ioc.extras.demo.figures import history

    _, kpis = shipped_catalogue()
    now = datetime(2026, 12, 6, 15, tzinfo=TZ)
    with_parts = {"tthc.on_time_rate", "tthc.online_submission_rate", "tthc.online_payment_rate",
                  "an.eid_activation_rate", "dvc.full_online_rate"}
    for agency, series in catalogue_series().items():
        readings = [r for r in history(series, now, step_s=60, history_days=60) if r.kpi in with_parts]
        if not readings:
            continue
        rules = Rules(
            kpis={k.id: KpiRule(k.sector, k.min, k.max, k.integer, ratio=k.kind == "ratio", within=k.numerator_within)
                  for k in kpis},
            areas=frozenset(a.code for a in shipped_areas()),
            agencies={agency: frozenset(k.sector for k in kpis)},
        )
        assert all(r.numerator is not None and 0 <= r.numerator <= r.denominator for r in readings)
        for i in range(0, len(readings), 500):
            body = orjson.dumps([r.as_json() for r in readings[i:i + 500]])
            ok, bad = parse_payload(agency, body, rules, Limits(), now)
            assert not bad, bad[:3]
            assert all(x.numerator is not None for x in ok)
