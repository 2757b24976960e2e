"""A KPI by sub-unit and by reporting agency (`/api/v1/breakdown`, issue 14 items 3-5): the
units across the 2025 reform, each row equal to its own series, ranking and target status,
the same period a year earlier, and refusals."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from ioc.core.catalogue.lineage import units_below
from ioc.core.catalogue.shipped import shipped_areas, shipped_successions
from ioc.core.readings import Reading
from ingest.store import ReadingStore
from tests.test_api import TZ, Api, People, api, people  # noqa: F401  (fixtures)

RATIO = "tthc.on_time_rate"  # target 98 %, higher is better
RESOLVED = "tthc.dossiers_resolved"


def test_units_below_a_province_across_the_reform() -> None:
    areas, successions = shipped_areas(), shipped_successions()
    before = units_below("37", "district", date(2025, 1, 1), date(2025, 1, 31), areas, successions)
    assert [a.code for a in before] == ["347", "349", "350", "351", "352", "353"]  # Hà Nam's, via 35
    assert units_below("37", "district", date(2026, 1, 1), date(2026, 1, 31), areas, successions) == []
    # Hà Nam's communes outlive their districts: after the reform they sit under the new province
    after = units_below("37", "commune", date(2026, 1, 1), date(2026, 1, 31), areas, successions)
    assert len(after) == 98 and {"13285", "13567"} <= {a.code for a in after}
    assert len(units_below("347", "commune", date(2025, 1, 1), date(2025, 1, 31), areas, successions)) == 14
    assert units_below("347", "commune", date(2026, 1, 1), date(2026, 1, 31), areas, successions) == []


async def _write(pool: asyncpg.Pool, agency: str,
                 rows: list[tuple[datetime, str, str, float, float | None, float | None]]) -> None:
    now = datetime.now(timezone.utc)
    readings = [Reading(ts, kpi, area, float(v), agency, 0, None, now, num, den) for ts, kpi, area, v, num, den in rows]
    async with pool.acquire() as conn:
        out = await ReadingStore().write(conn, readings, [])
    assert len(out.written) == len(readings), (out.duplicates, out.conflicts)


def _d(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 10, tzinfo=TZ)


@pytest.fixture(scope="module")
async def feb_2023(api: Api) -> None:
    """February 2023, Hà Nam's districts (the old map), and February 2022 for the comparison."""
    await _write(api.pool, "bd-one", [
        (_d(2023, 2, 6), RATIO, "347", 90.0, 45, 50), (_d(2023, 2, 7), RATIO, "347", 100.0, 50, 50),  # 95/100
        (_d(2023, 2, 6), RATIO, "349", 75.0, 30, 40),
        (_d(2023, 2, 6), RATIO, "350", 99.5, None, None),  # one bare percentage: shown as sent
        (_d(2023, 2, 6), RATIO, "351", 99.0, None, None), (_d(2023, 2, 7), RATIO, "351", 97.0, None, None),
        (_d(2023, 2, 6), RESOLVED, "347", 10, None, None), (_d(2023, 2, 20), RESOLVED, "347", 20, None, None),
        (_d(2023, 2, 6), RESOLVED, "349", 5, None, None),
        (_d(2022, 2, 8), RATIO, "347", 80.0, 40, 50),
        (_d(2023, 2, 6), RESOLVED, "35", 100, None, None),
    ])
    await _write(api.pool, "bd-two", [(_d(2023, 2, 9), RESOLVED, "35", 7, None, None)])


FEB = {"start": datetime(2023, 2, 1, tzinfo=TZ).isoformat(), "end": datetime(2023, 3, 1, tzinfo=TZ).isoformat()}


async def _breakdown(api: Api, token: str, **params: Any) -> dict[str, Any]:
    r = await api.get("/api/v1/breakdown", token, params={"area": "35", **FEB, **params})
    assert r.status_code == 200, r.text
    return r.json()


async def test_rows_rank_the_units_weighted_with_the_target(api: Api, people: People, feb_2023: None) -> None:
    body = await _breakdown(api, people.leader[2], kpi=RATIO)
    assert body["level"] == "district" and body["target"] == 98.0 and body["better"] == "higher"
    rows = {r["code"]: r for r in body["rows"]}
    assert len(rows) == 6 and rows["347"]["name_vi"] == "Thành phố Phủ Lý"
    # 347: 95 of 100 (not the mean of 90 % and 100 %, which happens to be equal: parts prove it)
    assert (rows["347"]["value"], rows["347"]["numerator"], rows["347"]["denominator"]) == (95.0, 95, 100)
    assert rows["350"]["value"] == 99.5 and rows["350"]["reason"] is None
    assert rows["351"]["value"] is None and "bare percentages" in rows["351"]["reason"]
    order = [(r["code"], r["rank"], r["status"]) for r in body["rows"]]
    assert order[:3] == [("350", 1, "meets"), ("347", 2, "misses"), ("349", 3, "misses")]
    assert all(rank is None and status is None for _, rank, status in order[3:])
    assert [c for c, _, _ in order[3:]] == ["351", "352", "353"]  # no value: last, by code


async def test_each_row_is_its_own_series_over_the_period(api: Api, people: People, feb_2023: None) -> None:
    token = people.leader[2]
    body = await _breakdown(api, token, kpi=RESOLVED)
    rows = {r["code"]: r["value"] for r in body["rows"]}
    assert (rows["347"], rows["349"], rows["350"]) == (30.0, 5.0, None)
    assert body["total"]["value"] == 107.0  # Hà Nam's own figure, as its series gives it
    for code, area in (("347", "347"), ("349", "349"), (None, "35")):
        series = (await api.get("/api/v1/series", token, params={"kpi": RESOLVED, "area": area, "bucket": "1M", **FEB})).json()
        assert [p["value"] for p in series["points"]] == [rows[code] if code else body["total"]["value"]]


async def test_the_same_period_a_year_earlier(api: Api, people: People, feb_2023: None) -> None:
    body = await _breakdown(api, people.operator[2], kpi=RATIO, compare="year")
    rows = {r["code"]: r for r in body["rows"]}
    assert rows["347"]["previous"]["value"] == 80.0 and rows["349"]["previous"]["value"] is None
    assert body["previous"]["start"] == datetime(2022, 2, 1, tzinfo=TZ).isoformat()
    assert body["previous"]["end"] == datetime(2022, 3, 1, tzinfo=TZ).isoformat()
    plain = await _breakdown(api, people.operator[2], kpi=RATIO)
    assert plain["previous"] is None and all(r["previous"] is None for r in plain["rows"])


async def test_by_reporting_agency(api: Api, people: People, feb_2023: None) -> None:
    body = await _breakdown(api, people.leader[2], kpi=RESOLVED, by="agency")
    assert [(r["code"], r["value"], r["rank"]) for r in body["rows"]] == [("bd-one", 100.0, 1), ("bd-two", 7.0, 2)]
    assert body["level"] is None


async def test_after_the_reform_the_province_ranks_its_communes(api: Api, people: People) -> None:
    await _write(api.pool, "bd-one", [(_d(2026, 2, 3), RESOLVED, "13285", 12, None, None),
                                      (_d(2026, 2, 3), RESOLVED, "13567", 30, None, None)])
    body = (await api.get("/api/v1/breakdown", people.leader[2], params={
        "kpi": RESOLVED, "area": "37", "start": datetime(2026, 2, 1, tzinfo=TZ).isoformat(),
        "end": datetime(2026, 3, 1, tzinfo=TZ).isoformat()})).json()
    assert body["level"] == "commune" and len(body["rows"]) == 98
    assert [(r["code"], r["value"]) for r in body["rows"][:2]] == [("13567", 30.0), ("13285", 12.0)]


async def test_a_province_series_by_commune_counts_the_communes_its_breakdown_ranks(api: Api, people: People) -> None:
    """After the reform Hà Nam's communes (their districts gone) sit under the new Ninh Bình
    in a breakdown, so `/series?level=commune` must count them there too: one rule
    (lineage._memberships), and the rows' parts add up to the series'."""
    await _write(api.pool, "bd-one", [(_d(2025, 9, 8), RATIO, "13285", 90.0, 45, 50),
                                      (_d(2025, 9, 9), RATIO, "13567", 75.0, 30, 40)])
    span = {"start": datetime(2025, 9, 1, tzinfo=TZ).isoformat(), "end": datetime(2025, 10, 1, tzinfo=TZ).isoformat()}
    token = people.leader[2]
    series = (await api.get("/api/v1/series", token, params={
        "kpi": RATIO, "area": "37", "level": "commune", "bucket": "1M", **span})).json()
    assert [(p["numerator"], p["denominator"], p["value"]) for p in series["points"]] == [(75, 90, pytest.approx(100 * 75 / 90))]
    assert {"13285", "13567"} <= {s["area"] for s in series["sources"] if s["since"] is None and s["until"] is None}
    body = (await api.get("/api/v1/breakdown", token, params={"kpi": RATIO, "area": "37", "level": "commune", **span})).json()
    parts = [(r["numerator"], r["denominator"]) for r in body["rows"] if r.get("numerator") is not None]
    assert (sum(n for n, _ in parts), sum(d for _, d in parts)) == (75, 90)


async def test_refusals(api: Api, people: People, feb_2023: None) -> None:
    token = people.leader[2]
    cases = [
        ({"kpi": "nope.kpi"}, 404, "unknown kpi"),
        ({"kpi": RATIO, "area": "99999"}, 404, "unknown area"),
        ({"kpi": RATIO, "level": "village"}, 422, "level"),
        ({"kpi": RATIO, "start": "2023-02-01T00:00:00"}, 422, "needs a UTC offset"),
        ({"kpi": RATIO, "start": "2019-01-01T00:00:00+07:00"}, 422, "at most"),
        ({"kpi": RATIO, "start": "2023-03-01T00:00:00+07:00"}, 422, "before end"),
        ({"kpi": RATIO, "by": "month"}, 422, "by"),
    ]
    for params, code, text in cases:
        r = await api.get("/api/v1/breakdown", token, params={"area": "35", **FEB, **params})
        assert r.status_code == code and text in r.text, (params, r.text)
    assert (await api.get("/api/v1/breakdown", None, params={"kpi": RATIO, "area": "35"})).status_code == 401


async def test_an_agency_sees_its_own_readings_of_its_own_sectors(api: Api, feb_2023: None) -> None:
    agency, token = await api.agency(["tthc"])
    await _write(api.pool, agency, [(_d(2023, 2, 10), RESOLVED, "347", 3, None, None)])
    body = await _breakdown(api, token, kpi=RESOLVED)
    assert [(r["code"], r["value"]) for r in body["rows"] if r["value"] is not None] == [("347", 3.0)]
    _, other = await api.agency(["mt"])
    r = await api.get("/api/v1/breakdown", other, params={"kpi": RESOLVED, "area": "35", **FEB})
    assert r.status_code == 403


async def test_latest_carries_a_ratios_parts(api: Api, people: People) -> None:
    """What a map or a ranking colours from /latest can be combined: the parts come along
    (null for a bare percentage), for readers and for the agency that sent them."""
    agency, token = await api.agency(["tthc"])
    await _write(api.pool, agency, [(_d(2026, 1, 5), RATIO, "13315", 96.0, 48, 50),
                                    (_d(2026, 1, 5), RATIO, "13318", 97.0, None, None)])
    for who in (people.leader[2], token):
        rows = (await api.get("/api/v1/latest", who, params={"kpi": RATIO, "area": ["13315", "13318"]})).json()
        got = {r["area"]: (r["value"], r["numerator"], r["denominator"]) for r in rows}
        assert got == {"13315": (96.0, 48, 50), "13318": (97.0, None, None)}


async def test_by_agency_over_the_units_at_a_level(api: Api, people: People, feb_2023: None) -> None:
    """With `level`, the agencies behind the ranked units' figures (here the districts'),
    not those of the area's own."""
    body = await _breakdown(api, people.leader[2], kpi=RESOLVED, by="agency", level="district")
    assert body["level"] == "district"
    rows = {r["code"]: r["value"] for r in body["rows"]}
    assert rows["bd-one"] == 35.0 and "bd-two" not in rows  # 347: 30, 349: 5; bd-two sent only Hà Nam's own


async def test_a_breakdown_as_known_then(api: Api, people: People) -> None:
    """The time machine's ranking tile: a correction that arrived later is not counted yet."""
    sent, fixed = datetime(2024, 8, 5, 12, tzinfo=TZ), datetime(2024, 8, 9, 12, tzinfo=TZ)
    store = ReadingStore()
    async with api.pool.acquire() as conn:
        await store.write(conn, [Reading(_d(2024, 8, 5), RESOLVED, "13327", 40.0, "bd-one", 0, "x1", sent)], [])
        await store.write(conn, [Reading(_d(2024, 8, 5), RESOLVED, "13327", 44.0, "bd-one", 1, "x2", fixed)], [])
    params = {"kpi": RESOLVED, "area": "349", "start": datetime(2024, 8, 1, tzinfo=TZ).isoformat(),
              "end": datetime(2024, 9, 1, tzinfo=TZ).isoformat()}

    async def value(**extra: str) -> float | None:
        body = (await api.get("/api/v1/breakdown", people.leader[2], params={**params, **extra})).json()
        return {r["code"]: r["value"] for r in body["rows"]}["13327"]

    assert await value() == 44.0
    assert await value(as_of=(sent + timedelta(days=1)).isoformat()) == 40.0
    assert await value(as_of=(sent - timedelta(days=1)).isoformat()) is None
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    r = await api.get("/api/v1/breakdown", people.leader[2], params={**params, "as_of": future})
    assert r.status_code == 422 and "in the future" in r.text
