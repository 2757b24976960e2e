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
