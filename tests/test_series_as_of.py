"""A series as it was known at a past instant (`/api/v1/series?as_of=`): what the time
machine's chart tiles draw, so a correction that arrived later does not show in the past
(issue 12, item 4). A corrected ratio keeps its parts (migration 0013)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ingest.store import ReadingStore
from ioc.core.readings import Reading
from tests.test_api import TZ, Api, People, api, people  # noqa: F401  (fixtures)

RATIO = "tthc.on_time_rate"
AREA = "13324"  # a commune no other test reports for
TS = datetime(2026, 3, 2, 10, tzinfo=TZ)
SENT = datetime(2026, 3, 2, 11, tzinfo=TZ)  # when the first figure arrived
FIXED = datetime(2026, 3, 5, 9, tzinfo=TZ)  # when its correction arrived


async def _series(api: Api, token: str, bucket: str, **extra: Any) -> list[tuple[float | None, Any, Any]]:
    r = await api.get("/api/v1/series", token, params={
        "kpi": RATIO, "area": AREA, "bucket": bucket, "start": datetime(2026, 3, 1, tzinfo=TZ).isoformat(),
        "end": datetime(2026, 3, 4, tzinfo=TZ).isoformat(), **extra})
    assert r.status_code == 200, r.text
    return [(p["value"], p["numerator"], p["denominator"]) for p in r.json()["points"]]


async def test_a_series_as_known_then_leaves_out_later_corrections(api: Api, people: People) -> None:
    store = ReadingStore()
    async with api.pool.acquire() as conn:
        first = await store.write(conn, [Reading(TS, RATIO, AREA, 90.0, "asof", 0, "m1", SENT, 45, 50)], [])
        fixed = await store.write(conn, [Reading(TS, RATIO, AREA, 100.0, "asof", 1, "m2", FIXED, 50, 50)], [])
    assert len(first.written) == 1 and len(fixed.written) == 1, (first, fixed)
    token = people.operator[2]
    for bucket in ("1d", "1h", "30m"):
        assert await _series(api, token, bucket) == [(100.0, 50, 50)], bucket  # today's knowledge
        between = (SENT + timedelta(hours=1)).isoformat()
        assert await _series(api, token, bucket, as_of=between) == [(90.0, 45, 50)], bucket
        assert await _series(api, token, bucket, as_of=FIXED.isoformat()) == [(100.0, 50, 50)], bucket
        assert await _series(api, token, bucket, as_of=(SENT - timedelta(seconds=1)).isoformat()) == [], bucket


async def test_as_of_refusals(api: Api, people: People) -> None:
    token = people.leader[2]
    base = {"kpi": RATIO, "area": AREA, "bucket": "1d"}
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    for as_of, text in ((future, "in the future"), ("2026-03-02T10:00:00", "needs a UTC offset"), ("soon", "as_of")):
        r = await api.get("/api/v1/series", token, params={**base, "as_of": as_of})
        assert r.status_code == 422 and text in r.text, (as_of, r.text)
