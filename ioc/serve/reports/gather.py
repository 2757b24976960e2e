"""The figures of a monthly report, read through the same storage functions as the API, so
the report and /api/v1/series (bucket=1M), /api/v1/breakdown and /api/v1/cameras/{id}/uptime
say the same numbers for the same month."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from ioc.core.buckets import parse_bucket
from ioc.core.catalogue.model import Area, KpiDef
from ioc.core.storage import accounts as account_store
from ioc.core.storage import cameras as camera_store
from ioc.core.storage import catalogue, queries, rollups
from ioc.core.storage.modes import StorageMode
from ioc.core.storage.receptions import receptions
from ioc.serve.api.routes_readings import area_sources
from ioc.serve.reports.lateness import late_and_missing
from ioc.serve.reports.model import (
    CameraUptime, Figure, Lang, ReportData, ReportRequestError, shift_month,
)
from ioc.serve.reports.rankings import rankings
from ioc.serve.wall.tiledata import KpiMeta, target_status

MONTH = parse_bucket("1M")


def month_span(month: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[local midnight of the 1st, local midnight of the next 1st)."""
    nxt = shift_month(month, 1)
    return datetime(month.year, month.month, 1, tzinfo=tz), datetime(nxt.year, nxt.month, 1, tzinfo=tz)


def _version(areas: Sequence[Area], code: str, day: date) -> Area | None:
    """The version of `code` valid on `day`, else its newest."""
    versions = [a for a in areas if a.code == code]
    for a in versions:
        if (a.valid_from is None or a.valid_from <= day) and (a.valid_to is None or day <= a.valid_to):
            return a
    return versions[-1] if versions else None


def subtree(areas: Sequence[Area], roots: Sequence[str]) -> set[str]:
    """The codes of `roots` and of every unit below them, at any time."""
    children: dict[str, set[str]] = defaultdict(set)
    for a in areas:
        if a.parent_code is not None:
            children[a.parent_code].add(a.code)
    found, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


async def gather(conn: asyncpg.Connection, *, month: date, area: str, agency: str | None, lang: Lang,
                 timezone: str, mode: StorageMode, pool: asyncpg.Pool | None = None, parallel: int = 1) -> ReportData:
    """The report's figures; with `pool` and `parallel`, the rankings' queries run that many
    at once on the pool's connections (`conn` stays held)."""
    tz = ZoneInfo(timezone)
    start, end = month_span(month, tz)
    areas = await catalogue.list_areas(conn)
    unit = _version(areas, area, shift_month(month, 1) - timedelta(days=1))
    if unit is None:
        raise ReportRequestError(f"unknown area {area[:40]!r}")
    agency_vi = agency_en = None
    sectors: list[str] | None = None
    if agency is not None:
        row = await account_store.agency_row(conn, agency)
        if row is None:
            raise ReportRequestError(f"unknown agency {agency[:40]!r}")
        agency_vi, agency_en, sectors = row["name_vi"], row["name_en"] or row["name_vi"], list(row["sectors"])
    kpis = await catalogue.list_kpis(conn, sectors)
    if agency is None:
        # what /series does before answering from the roll-ups
        await rollups.refresh(conn, mode, timezone)
    sources = await area_sources(conn, area, None, timezone)
    data = ReportData(month=month, start=start, end=end, timezone=timezone, lang=lang, area=area,
                      area_vi=unit.name_vi, area_en=unit.name_en, level=unit.level, agency=agency,
                      agency_vi=agency_vi, agency_en=agency_en, made_at=datetime.now(tz))
    data.figures.extend(await _figures(conn, kpis, month, tz, timezone, agency, sources))
    codes = subtree(areas, [s.area for s in sources])
    if agency is None:
        shown = [f.kpi for f in data.figures if f.value is not None]
        data.rankings.extend(await rankings(conn, [k for k in kpis if k.id in shown], area=area, start=start,
                                            end=end, timezone=timezone, pool=pool, parallel=parallel))
        data.cameras = await _cameras(conn, start, end, timezone, codes, whole=unit.level == "province")
    rows = await receptions(conn, start, end, agency=agency, areas=None if unit.level == "province" else sorted(codes))
    data.lateness.extend(late_and_missing(rows, start, end))
    return data


async def _figures(conn: asyncpg.Connection, kpis: Sequence[KpiDef], month: date, tz: ZoneInfo, timezone: str,
                   agency: str | None, sources: list[queries.SeriesSource]) -> list[Figure]:
    """Each KPI's month, the month before and the same month a year earlier: one /series
    query (bucket 1M) over the thirteen months. KPIs without a reading in any of the three
    are left out."""
    first, _ = month_span(shift_month(month, -12), tz)
    _, last = month_span(month, tz)
    out = []
    for k in kpis:
        points = await queries.series(conn, kpi=k.id, kind=k.kind, area=None, start=first, end=last, bucket=MONTH,
                                      timezone=timezone, agency=agency, sources=sources)
        by_month = {p["bucket"].astimezone(tz).date().replace(day=1): p for p in points}  # type: ignore[union-attr]
        this, before, year = (by_month.get(m) for m in (month, shift_month(month, -1), shift_month(month, -12)))
        if this is None and before is None and year is None:
            continue
        value = this["value"] if this else None
        meta = KpiMeta(k.id, k.name_vi, k.name_en, k.unit, k.target, k.better, k.unit_en, k.kind)
        out.append(Figure(
            kpi=k.id, name_vi=k.name_vi, name_en=k.name_en, unit=k.unit, unit_en=k.unit_en or k.unit, kind=k.kind,
            target=k.target, better=k.better, value=value, reason=this["reason"] if this else None,  # type: ignore[arg-type]
            n=int(this["n"]) if this else 0,  # type: ignore[call-overload]
            previous=before["value"] if before else None, last_year=year["value"] if year else None,  # type: ignore[arg-type]
            status=target_status(meta, value) if value is not None else "none"))
    return out


async def _cameras(conn: asyncpg.Connection, start: datetime, end: datetime, timezone: str, codes: set[str], *,
                   whole: bool) -> list[CameraUptime]:
    """The cameras of the area (a province's report: also those with no area), each month's
    online and watched seconds summed from the API's uptime per day."""
    faults = await camera_store.faults_begun(conn, start, end)
    out = []
    for cam in await camera_store.cameras_with_status(conn):
        if not (cam["area"] in codes or (whole and cam["area"] is None)):
            continue
        days = await camera_store.uptime_per_day(conn, cam["id"], start, end, timezone)
        out.append(CameraUptime(cam["id"], cam["name"], cam["area"], sum(float(d["online_s"]) for d in days),  # type: ignore[arg-type]
                                sum(float(d["known_s"]) for d in days), faults.get(cam["id"], 0)))  # type: ignore[arg-type]
    return out
