"""What the simulated agencies report: realistic, repeatable figures for Hà Nam's catalogue.

Scale comes from what the provinces published (`shared/data/reported-kpis.csv`): Hà Nam
received 237,313 administrative dossiers in 2022 (about 950 a working day), 99.21 % resolved
on time, 67.09 % submitted online, 32.5 % paid online; 1,744 procedures in 2023, 976 of them
fully online; 109 community digital-technology teams; Hải Dương had ~860,000 e-ID accounts
for 1.9 million people in April 2023 (scaled here to Hà Nam's ~0.88 million).

Every value is a pure function of (kpi, area, time): the same reading is produced whenever
it is asked for, so a restarted demo replays history without conflicts (the ingest is
idempotent on kpi, area and time). Two shapes cover the catalogue:

- `Gauge`: a level at a moment (AQI, a bed-occupancy rate, an account total), sampled on a
  grid (every minute, day, month or year) from a smooth curve with daily and seasonal rhythm.
- `Counter`: events in a period (a day, an hour). Today's count is reported as it grows,
  at the period's start with a rising `rev` (one step per `step_s` seconds), following the
  period's rhythm (office hours for dossiers, rush hours for accidents); a finished period
  carries the highest rev, so a later replay replaces a partial count.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

# The demo runs now, after the July 2025 reform: the province is the new Ninh Bình (37),
# which took over Hà Nam. The district tier is gone and the official list of the new
# communes is not shipped (import it with `ioc areas import`), so the figures below the
# province go to one commune of each of Hà Nam's former districts, codes the shipped data
# still holds open, with the former district's approximate share of the population.
PROVINCE = "37"
DISTRICTS = {"13285": 0.16, "13321": 0.15, "13384": 0.15, "13441": 0.15, "13501": 0.17, "13567": 0.22}
POPULATION = 880_000
ANCHOR = date(2024, 1, 1)  # trends are counted in days from here


# -- deterministic noise ------------------------------------------------------------------
def unit(*key: object) -> float:
    """A repeatable number in [0, 1) for `key`."""
    return (zlib.crc32("|".join(map(str, key)).encode()) & 0xFFFFFF) / 0x1000000


def jitter(*key: object) -> float:
    """A repeatable number in [-1, 1) for `key`, unrelated to its neighbours' (consecutive
    keys give CRC-32 values that move together, so `unit` is no noise from one minute to the next)."""
    digest = hashlib.blake2b("|".join(map(str, key)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**31 - 1


def wobble(key: str, t: float, period_s: float) -> float:
    """Smooth noise in [-1, 1]: random knots every `period_s`, eased between."""
    k = math.floor(t / period_s)
    f = t / period_s - k
    f = f * f * (3 - 2 * f)
    a, b = unit(key, k) * 2 - 1, unit(key, k + 1) * 2 - 1
    return a + (b - a) * f


def poisson(mean: float, u: float) -> int:
    """The Poisson(mean) count whose cumulative probability first exceeds `u`."""
    p = math.exp(-mean)
    total, k = p, 0
    while total < u and k < 1000:
        k += 1
        p *= mean / k
        total += p
    return k


def years(d: date) -> float:
    return (d - ANCHOR).days / 365.25


# -- time-of-day rhythms (cumulative shares of a period, 0 at its start, 1 at its end) -----
def _cdf_from_hourly(weights: list[float]) -> Callable[[float], float]:
    total = sum(weights)
    cum = [0.0]
    for w in weights:
        cum.append(cum[-1] + w / total)

    def share(hour: float) -> float:
        h = min(max(hour, 0.0), 24.0)
        i = min(int(h), 23)
        return cum[i] + (cum[i + 1] - cum[i]) * (h - i)
    return share


# one-stop shops: 7:30-11:30 and 13:30-17:00, busiest mid-morning
OFFICE = _cdf_from_hourly([0, 0, 0, 0, 0, 0, 0, 0.5, 1.6, 1.9, 1.7, 0.6, 0, 0.5, 1.4, 1.3, 0.9, 0.1, 0, 0, 0, 0, 0, 0])
# online submissions and payments carry on into the evening
ONLINE = _cdf_from_hourly([0.1, 0.05, 0.05, 0.05, 0.1, 0.2, 0.5, 1.0, 1.6, 1.8, 1.7, 1.0, 0.6, 1.0, 1.5, 1.4, 1.1,
                           0.8, 0.6, 0.7, 0.8, 0.6, 0.4, 0.2])
# clinics: mornings
CLINIC = _cdf_from_hourly([0, 0, 0, 0, 0, 0.2, 1.0, 2.2, 2.4, 2.0, 1.4, 0.6, 0.3, 0.8, 1.0, 0.8, 0.4, 0.1, 0, 0, 0, 0, 0, 0])
# roads: rush hours, little at night
ROADS = _cdf_from_hourly([0.2, 0.1, 0.1, 0.1, 0.2, 0.6, 1.4, 1.8, 1.2, 0.8, 0.8, 0.9, 0.8, 0.8, 0.9, 1.1, 1.5, 1.9, 1.6,
                          1.1, 0.9, 0.7, 0.5, 0.3])
EVEN = _cdf_from_hourly([1.0] * 24)
# calls to 115 within an hour: spread evenly
WITHIN_HOUR: Callable[[float], float] = lambda minute_share: minute_share


def rush(hour: float) -> float:
    """0..1: how much of a rush hour it is (7-8:30 and 16:30-18:30)."""
    return max(math.exp(-((hour - 7.6) / 0.9) ** 2), math.exp(-((hour - 17.4) / 1.0) ** 2))


WEEKDAY_LOAD = (1.15, 1.0, 1.0, 1.0, 0.95, 0.12, 0.02)  # Mon..Sun, dossiers at one-stop shops


# -- the two shapes -----------------------------------------------------------------------
@dataclass(frozen=True)
class Gauge:
    kpi: str
    area: str
    grid: str  # "minute" | "day" | "month" | "year"
    curve: Callable[[datetime], float]  # local time -> value
    digits: int = 1
    # a ratio's parts (numerator, denominator) at a grid point, sent with the value so that
    # communes add up to the province (issue 14); None: a bare value
    parts: Callable[[datetime], tuple[int, int]] | None = None


@dataclass(frozen=True)
class Counter:
    kpi: str
    area: str
    period: str  # "day" | "hour"
    total: Callable[[date | datetime], int]  # the period's start (a local date, or an hour) -> whole count
    rhythm: Callable[[float], float]  # hours (or share of the hour) into the period -> share of the count


Series = Gauge | Counter


def _area_share(area: str) -> float:
    return 1.0 if area == PROVINCE else DISTRICTS[area]


def _tthc(areas: list[str]) -> list[Series]:
    def received(area: str) -> Callable[[date], int]:
        def f(d: date) -> int:
            load = WEEKDAY_LOAD[d.weekday()] * (1 + 0.04 * years(d))
            base = 950 * load if area == PROVINCE else 950 * 0.6 * DISTRICTS[area] * load
            return round(base * (0.88 + 0.24 * unit("tthc.received", area, d)))
        return f

    def rate(name: str, area: str, centre: float, spread: float, lo: float = 0, hi: float = 100) -> Callable[[date], float]:
        def f(d: date) -> float:
            return min(hi, max(lo, centre + spread * (2 * unit(name, area, d) - 1)))
        return f

    out: list[Series] = []
    for area in areas:
        rec = received(area)
        online = rate("tthc.online", area, 67.09, 4.0)
        paid = rate("tthc.paid", area, 32.5, 3.0)
        on_time = rate("tthc.on_time", area, 99.21, 0.6, hi=100)
        resolved = lambda d, rec=rec, area=area: round(rec(d) * (0.93 + 0.08 * unit("tthc.resolved", area, d)))
        out += [
            Counter("tthc.dossiers_received", area, "day", rec, OFFICE),
            Counter("tthc.dossiers_submitted_online", area, "day",
                    lambda d, rec=rec, online=online: round(rec(d) * online(d) / 100), ONLINE),
            Counter("tthc.dossiers_paid_online", area, "day",
                    lambda d, rec=rec, paid=paid: round(rec(d) * paid(d) / 100), ONLINE),
            Counter("tthc.dossiers_resolved", area, "day", resolved, OFFICE),
            Counter("tthc.dossiers_overdue", area, "day",
                    lambda d, resolved=resolved, on_time=on_time: round(resolved(d) * (100 - on_time(d)) / 100), OFFICE),
            Gauge("tthc.on_time_rate", area, "day", lambda t, f=on_time: f(t.date()), 2,
                  lambda t, resolved=resolved, on_time=on_time: _on_time(resolved(t.date()), on_time(t.date()))),
            Gauge("tthc.online_submission_rate", area, "day", lambda t, f=online: f(t.date()), 2,
                  lambda t, rec=rec, f=online: (round(rec(t.date()) * f(t.date()) / 100), rec(t.date()))),
            Gauge("tthc.online_payment_rate", area, "day", lambda t, f=paid: f(t.date()), 2,
                  lambda t, rec=rec, f=paid: (round(rec(t.date()) * f(t.date()) / 100), rec(t.date()))),
            Gauge("tthc.dossiers_pending", area, "day",
                  lambda t, area=area: round(4600 * _area_share(area) * (0.9 + 0.2 * unit("pending", area, t.date()))), 0),
        ]
    return out


def _on_time(resolved: int, rate: float) -> tuple[int, int]:
    """Dossiers resolved on time of those resolved: what the overdue counter leaves."""
    return resolved - round(resolved * (100 - rate) / 100), resolved


def _dvc() -> list[Series]:
    def months(t: datetime) -> float:
        return (t.year - ANCHOR.year) * 12 + t.month - ANCHOR.month

    total = lambda t: 1744 + round(2 * months(t))
    full = lambda t: min(total(t), 976 + round(9 * months(t)))
    return [
        Gauge("dvc.services_total", PROVINCE, "month", total, 0),
        Gauge("dvc.services_full_online", PROVINCE, "month", full, 0),
        Gauge("dvc.services_partial_online", PROVINCE, "month", lambda t: max(0, 693 - round(7 * months(t))), 0),
        Gauge("dvc.full_online_rate", PROVINCE, "month", lambda t: 100 * full(t) / total(t), 2,
              lambda t: (full(t), total(t))),
        Gauge("dvc.national_portal_integration_rate", PROVINCE, "month",
              lambda t: min(100.0, 70.5 + 0.6 * months(t) + unit("dvc.portal", t.year, t.month)), 1),
    ]


def _eid(areas: list[str]) -> list[Series]:
    """Project 06 e-ID totals, growing towards saturation of the adult population."""
    def grown(start: float, per_day: float, ceiling: float, key: str, area: str) -> Callable[[datetime], float]:
        def f(t: datetime) -> float:
            days = (t.date() - ANCHOR).days
            linear = start + per_day * days
            value = ceiling - (ceiling - start) * math.exp(-(linear - start) / (ceiling - start))
            return round(_area_share(area) * value * (1 + 0.002 * unit(key, area, t.date())))
        return f

    out: list[Series] = []
    for area in areas:
        apps = grown(0.60 * POPULATION, 260, 0.86 * POPULATION, "eid.apps", area)
        l1 = grown(0.03 * POPULATION, 14, 0.06 * POPULATION, "eid.l1", area)
        l2 = grown(0.27 * POPULATION, 230, 0.72 * POPULATION, "eid.l2", area)
        out += [
            Gauge("an.eid_applications", area, "day", apps, 0),
            Gauge("an.eid_level1_accounts", area, "day", l1, 0),
            Gauge("an.eid_level2_accounts", area, "day", l2, 0),
            Gauge("an.eid_activation_rate", area, "day", lambda t, a=apps, b=l1, c=l2: 100 * (b(t) + c(t)) / a(t), 2,
                  lambda t, a=apps, b=l1, c=l2: (min(round(b(t) + c(t)), round(a(t))), round(a(t)))),
        ]
    out.append(Counter("an.fire_incidents", PROVINCE, "day", lambda d: poisson(0.35, unit("fire", d)), EVEN))
    return out


def _cds() -> list[Series]:
    def toward(start: float, per_year: float, ceiling: float, key: str) -> Callable[[datetime], float]:
        return lambda t: min(ceiling, start + per_year * years(t.date()) + 0.3 * unit(key, t.year, t.month))

    return [
        Gauge("cds.dti_rank", PROVINCE, "year", lambda t: max(8, 24 - 3 * (t.year - 2023) + round(2 * unit("dti", t.year))), 0),
        Gauge("cds.officials_email_rate", PROVINCE, "month", toward(95.0, 1.5, 100.0, "email"), 1),
        Gauge("cds.communes_fibre_rate", PROVINCE, "month", lambda t: 100.0, 1),
        Gauge("cds.households_fibre_rate", PROVINCE, "month", toward(74.0, 3.0, 96.0, "fibre"), 1),
        Gauge("cds.mobile_4g_coverage", PROVINCE, "month", toward(95.0, 1.2, 99.8, "4g"), 1),
        Gauge("cds.e_payment_accounts_rate", PROVINCE, "month", toward(46.0, 4.0, 90.0, "epay"), 1),
        Gauge("cds.e_documents_rate", PROVINCE, "month", toward(90.0, 1.5, 99.0, "edoc"), 1),
        Gauge("cds.digital_tech_teams", PROVINCE, "month", lambda t: 109 + (1 if unit("teams", t.year, t.month) > 0.8 else 0), 0),
    ]


def _health(areas: list[str]) -> list[Series]:
    def outpatients(area: str) -> Callable[[date], int]:
        def f(d: date) -> int:
            load = (1.0, 0.95, 0.95, 0.95, 0.9, 0.45, 0.25)[d.weekday()]
            base = 6200 if area == PROVINCE else 6200 * 0.55 * DISTRICTS[area]
            return round(base * load * (0.9 + 0.2 * unit("opd", area, d)))
        return f

    def calls(hour_start: datetime) -> int:
        h = hour_start.hour
        mean = 2.0 if h < 6 else 7.0 if h < 18 else 5.0
        return poisson(mean, unit("115", hour_start.isoformat()))

    out: list[Series] = [
        Gauge("yte.bed_occupancy", PROVINCE, "day",
              lambda t: 93 + 6 * math.cos(2 * math.pi * (t.timetuple().tm_yday - 20) / 365) + 5 * wobble("beds", t.timestamp(), 5 * 86400), 1),
        Counter("yte.emergency_calls_115", PROVINCE, "hour", calls, WITHIN_HOUR),
        Gauge("yte.ehr_coverage_rate", PROVINCE, "month", lambda t: min(99.0, 84 + 4 * years(t.date())), 1),
        Gauge("yte.vaccination_coverage_rate", PROVINCE, "month", lambda t: 95.5 + 1.2 * unit("vacc", t.year, t.month), 1),
        Gauge("yte.health_insurance_coverage_rate", PROVINCE, "month", lambda t: min(99.0, 93.4 + 0.8 * years(t.date())), 1),
    ]
    out += [Counter("yte.outpatient_visits", a, "day", outpatients(a), CLINIC) for a in areas]
    return out


def _education() -> list[Series]:
    def school_year(t: datetime) -> int:
        return t.year if t.month >= 9 else t.year - 1

    return [
        Gauge("gd.primary_enrolment_rate", PROVINCE, "year", lambda t: 99.6 + 0.3 * unit("enrol", t.year), 2),
        Gauge("gd.students_enrolled", PROVINCE, "year", lambda t: 192_000 + 1_800 * (school_year(t) - 2023), 0),
        Gauge("gd.digital_school_records_rate", PROVINCE, "month", lambda t: min(99.5, 88 + 3 * years(t.date())), 1),
        Gauge("gd.elearning_rate", PROVINCE, "month",
              lambda t: (28 if t.month in (6, 7, 8) else 46) + 3 * years(t.date()) + 2 * unit("elearn", t.year, t.month), 1),
        Gauge("gd.schools_internet_rate", PROVINCE, "month", lambda t: 100.0, 1),
    ]


# air-quality stations: Phủ Lý, Duy Tiên (Đồng Văn industrial parks), Kim Bảng (cement, quarries), Lý Nhân
STATIONS = {"13285": 1.0, "13321": 1.15, "13384": 1.3, "13567": 0.85}


def pm25(area: str, t: datetime) -> float:
    """µg/m³: dirtier in winter and at rush hours and night inversions, cleaner at midday."""
    season = 42 + 20 * math.cos(2 * math.pi * (t.timetuple().tm_yday - 15) / 365)
    hour = t.hour + t.minute / 60
    daily = 1 + 0.35 * rush(hour) + 0.15 * math.cos(2 * math.pi * (hour - 23) / 24)
    weather = 1 + 0.35 * wobble("pm-weather", t.timestamp(), 18 * 3600)
    local = STATIONS.get(area, 1.0) * (1 + 0.08 * wobble(f"pm-{area}", t.timestamp(), 1800))
    # a station's minute readings flicker with gusts and passing lorries: without this the
    # smooth terms above kept the AQI on one whole number for up to two hours
    gust = 1 + 0.04 * wobble(f"pm-gust-{area}", t.timestamp(), 150) + 0.04 * jitter("pm-minute", area, int(t.timestamp() // 60))
    return max(4.0, season * daily * weather * local * gust)


_AQI_STEPS = [(0, 0), (25, 50), (50, 100), (80, 150), (150, 200), (250, 300), (350, 400), (500, 500)]


def aqi(pm: float) -> int:
    """Vietnam's AQI for PM2.5 (Decision 1459/QĐ-TCMT breakpoints), linear between them."""
    for (c0, i0), (c1, i1) in pairwise(_AQI_STEPS):
        if pm <= c1:
            return round(i0 + (i1 - i0) * (pm - c0) / (c1 - c0))
    return 500


def _province_mean(fn: Callable[[str, datetime], float]) -> Callable[[datetime], float]:
    return lambda t: sum(fn(a, t) for a in STATIONS) / len(STATIONS)


def _environment() -> list[Series]:
    def pm10(area: str, t: datetime) -> float:
        return pm25(area, t) * (1.9 if area == "13384" else 1.6) * (1 + 0.05 * wobble(f"pm10-{area}", t.timestamp(), 3600))

    def noise(area: str, t: datetime) -> float:
        hour = t.hour + t.minute / 60
        day = math.exp(-((hour - 13) / 6.0) ** 2)
        return (48 + 14 * day + 6 * rush(hour)) * (1.04 if area == "13285" else 1.0) + 1.5 * wobble(f"noise-{area}", t.timestamp(), 900)

    def river(t: datetime) -> float:
        wet = math.exp(-((t.timetuple().tm_yday - 230) / 45) ** 2)  # the Đáy river is highest in August
        return 1.9 + 1.8 * wet + 0.25 * wobble("river", t.timestamp(), 3 * 86400) + 0.05 * math.sin(2 * math.pi * t.hour / 12.4)

    out: list[Series] = []
    for a in STATIONS:
        out += [
            Gauge("mt.pm25", a, "minute", lambda t, a=a: pm25(a, t), 1),
            Gauge("mt.pm10", a, "minute", lambda t, a=a: pm10(a, t), 1),
            Gauge("mt.aqi", a, "minute", lambda t, a=a: aqi(pm25(a, t)), 0),
            Gauge("mt.noise_level", a, "minute", lambda t, a=a: noise(a, t), 1),
        ]
    out += [
        Gauge("mt.pm25", PROVINCE, "minute", _province_mean(pm25), 1),
        Gauge("mt.aqi", PROVINCE, "minute", lambda t: aqi(_province_mean(pm25)(t)), 0),
        Gauge("mt.river_water_level", "13285", "minute", river, 2),
        Gauge("mt.wqi", PROVINCE, "day", lambda t: 70 + 8 * wobble("wqi", t.timestamp(), 6 * 86400), 0),
    ]
    return out


def _traffic() -> list[Series]:
    def speed(area: str) -> Callable[[datetime], float]:
        def f(t: datetime) -> float:
            hour = t.hour + t.minute / 60
            night = 1 if hour < 5.5 or hour > 22 else 0
            base = 36 + 8 * night - 14 * rush(hour)
            return max(8.0, base * (1.1 if area == PROVINCE else 1.0) + 2.5 * wobble(f"speed-{area}", t.timestamp(), 600))
        return f

    def jams(area: str) -> Callable[[datetime], float]:
        scale = 7 if area == PROVINCE else 4
        return lambda t: max(0, round(scale * rush(t.hour + t.minute / 60) + 1.2 * wobble(f"jam-{area}", t.timestamp(), 1200) - 0.4))

    accidents = lambda d: poisson(1.2, unit("accidents", d))
    out: list[Series] = [
        Counter("gt.traffic_accidents", PROVINCE, "day", accidents, ROADS),
        Counter("gt.accident_deaths", PROVINCE, "day",
                lambda d: min(accidents(d), poisson(0.35, unit("deaths", d))), ROADS),
    ]
    for area, volume in ((PROVINCE, 210), ("13285", 120)):
        out.append(Counter("gt.camera_violations", area, "day",
                           lambda d, v=volume, a=area: round(v * (0.8 + 0.4 * unit("violations", a, d))), ROADS))
        out.append(Gauge("gt.avg_speed", area, "minute", speed(area), 1))
        out.append(Gauge("gt.congestion_points", area, "minute", jams(area), 0))
    return out


AGENCIES: list[dict[str, object]] = [
    {"id": "hanam-hcc", "name_vi": "Trung tâm Phục vụ hành chính công tỉnh Hà Nam",
     "name_en": "Ha Nam Public Administration Service Centre", "sectors": ["tthc", "dvc"]},
    {"id": "hanam-congan", "name_vi": "Công an tỉnh Hà Nam", "name_en": "Ha Nam Provincial Police", "sectors": ["an"]},
    {"id": "hanam-tttt", "name_vi": "Sở Thông tin và Truyền thông Hà Nam",
     "name_en": "Ha Nam Department of Information and Communications", "sectors": ["cds"]},
    {"id": "hanam-yte", "name_vi": "Sở Y tế Hà Nam", "name_en": "Ha Nam Department of Health", "sectors": ["yte"]},
    {"id": "hanam-gddt", "name_vi": "Sở Giáo dục và Đào tạo Hà Nam",
     "name_en": "Ha Nam Department of Education and Training", "sectors": ["gd"]},
    {"id": "hanam-tnmt", "name_vi": "Sở Tài nguyên và Môi trường Hà Nam",
     "name_en": "Ha Nam Department of Natural Resources and Environment", "sectors": ["mt"]},
    {"id": "hanam-gtvt", "name_vi": "Sở Giao thông vận tải Hà Nam",
     "name_en": "Ha Nam Department of Transport", "sectors": ["gt"]},
]


def catalogue_series() -> dict[str, list[Series]]:
    """Every simulated series, by the agency that reports it."""
    all_areas = [PROVINCE, *DISTRICTS]
    return {
        "hanam-hcc": _tthc(all_areas) + _dvc(),
        "hanam-congan": _eid(all_areas),
        "hanam-tttt": _cds(),
        "hanam-yte": _health(all_areas),
        "hanam-gddt": _education(),
        "hanam-tnmt": _environment(),
        "hanam-gtvt": _traffic(),
    }


# -- sampling -----------------------------------------------------------------------------
def day_start(d: date, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def gauge_times(g: Gauge, now: datetime, history_days: int) -> list[datetime]:
    """The grid points of `g` from `history_days` ago up to `now` (local time), oldest first."""
    tz = now.tzinfo
    if g.grid == "minute":
        # hourly over the last week at most, every minute over the last two hours
        days = min(history_days, 7)
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
        hours = [start + timedelta(hours=i) for i in range(days * 24)]
        minute = now.replace(second=0, microsecond=0)
        recent = [minute - timedelta(minutes=i) for i in range(120, -1, -1)]
        return sorted({*hours, *recent})
    if g.grid == "day":
        return [day_start(now.date() - timedelta(days=i), tz) for i in range(history_days, -1, -1)]  # type: ignore[arg-type]
    if g.grid == "month":
        out, y, m = [], now.year, now.month
        for _ in range(13):
            out.append(datetime(y, m, 1, tzinfo=tz))
            y, m = (y, m - 1) if m > 1 else (y - 1, 12)
        return out[::-1]
    return [datetime(now.year - i, 1, 1, tzinfo=tz) for i in range(3, -1, -1)]


def now_time(g: Gauge, now: datetime) -> datetime:
    """The grid point `now` falls in."""
    if g.grid == "minute":
        return now.replace(second=0, microsecond=0)
    if g.grid == "day":
        return day_start(now.date(), now.tzinfo)  # type: ignore[arg-type]
    if g.grid == "month":
        return datetime(now.year, now.month, 1, tzinfo=now.tzinfo)
    return datetime(now.year, 1, 1, tzinfo=now.tzinfo)


@dataclass(frozen=True)
class Reading:
    kpi: str
    area: str
    ts: datetime
    value: float
    rev: int
    numerator: int | None = None
    denominator: int | None = None

    def as_json(self) -> dict[str, object]:
        value: float | int = int(self.value) if float(self.value).is_integer() else self.value
        out: dict[str, object] = {"kpi": self.kpi, "area": self.area, "ts": self.ts.isoformat(), "value": value,
                                  "rev": self.rev}
        if self.numerator is not None:
            out["numerator"], out["denominator"] = self.numerator, self.denominator
        return out


def gauge_reading(g: Gauge, t: datetime) -> Reading | None:
    """The gauge at grid point `t`; a ratio with parts comes with them, its value computed
    from them (rounded as the ingest allows), and not at all where nothing was counted (a
    Sunday's 0 dossiers: a rate of nothing is undefined, and the ingest refuses it)."""
    if g.parts is None:
        return Reading(g.kpi, g.area, t, round(float(g.curve(t)), g.digits), 0)
    num, den = g.parts(t)
    if den <= 0:
        return None
    return Reading(g.kpi, g.area, t, round(100 * num / den, 2), 0, num, den)


def counter_reading(c: Counter, start: datetime, now: datetime, step_s: int) -> Reading:
    """The count of the period starting at `start`, as far as it has got by `now`."""
    length = 86400 if c.period == "day" else 3600
    elapsed = min(max((now - start).total_seconds(), 0.0), float(length))
    last = length // step_s
    rev = last if elapsed >= length else int(elapsed // step_s)
    total = c.total(start.date() if c.period == "day" else start)
    into = rev * step_s  # counts move in whole steps, so (ts, rev) always carries one value
    share = c.rhythm(into / 3600) if c.period == "day" else c.rhythm(into / length)
    return Reading(c.kpi, c.area, start, math.floor(total * share + 1e-9), rev)


def counter_starts(c: Counter, now: datetime, history_days: int) -> list[datetime]:
    if c.period == "day":
        return [day_start(now.date() - timedelta(days=i), now.tzinfo) for i in range(history_days, -1, -1)]  # type: ignore[arg-type]
    hour = now.replace(minute=0, second=0, microsecond=0)
    return [hour - timedelta(hours=i) for i in range(min(history_days, 7) * 24, -1, -1)]


def history(series: list[Series], now: datetime, *, step_s: int, history_days: int) -> list[Reading]:
    out: list[Reading] = []
    for s in series:
        if isinstance(s, Gauge):
            out += [r for t in gauge_times(s, now, history_days) if (r := gauge_reading(s, t)) is not None]
        else:
            out += [counter_reading(s, start, now, step_s) for start in counter_starts(s, now, history_days)]
    return out


def current(series: list[Series], now: datetime, *, step_s: int) -> list[Reading]:
    out: list[Reading] = []
    for s in series:
        if isinstance(s, Gauge):
            if (r := gauge_reading(s, now_time(s, now))) is not None:
                out.append(r)
        else:
            start = counter_starts(s, now, 0)[-1]
            out.append(counter_reading(s, start, now, step_s))
    return out


def just_closed(series: list[Series], now: datetime, *, step_s: int, lookback_s: float) -> list[Reading]:
    """Final counts of periods that ended within the last `lookback_s` seconds."""
    before = now - timedelta(seconds=lookback_s)
    out: list[Reading] = []
    for s in series:
        if isinstance(s, Counter):
            start = counter_starts(s, before, 0)[-1]
            if start != counter_starts(s, now, 0)[-1]:
                out.append(counter_reading(s, start, now, step_s))
    return out
