"""The catalogue and administrative units shipped with the package, as data files."""

from __future__ import annotations

import tomllib
from importlib import resources

from ioc.core.catalogue.area_files import read_area_csv
from ioc.core.catalogue.areas import AreaRow, SuccessionRow, require_area_set
from ioc.core.catalogue.model import Area, KpiDef, Sector, Succession


def _data():  # type: ignore[no-untyped-def]
    return resources.files("ioc.core.catalogue").joinpath("data")


def shipped_catalogue() -> tuple[list[Sector], list[KpiDef]]:
    raw = tomllib.loads(_data().joinpath("kpis.toml").read_text(encoding="utf-8"))
    sectors = [Sector(**s) for s in raw.get("sector", [])]
    kpis = [KpiDef(**k) for k in raw.get("kpi", [])]
    return sectors, kpis


def shipped_area_rows() -> tuple[list[AreaRow], list[SuccessionRow]]:
    """Every CSV under data/areas/ (unit lists and succession lists), checked as one set."""
    areas: list[AreaRow] = []
    successions: list[SuccessionRow] = []
    folder = _data().joinpath("areas")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".csv"):
            a, s = read_area_csv(entry.read_text(encoding="utf-8"), entry.name)
            areas += a
            successions += s
    require_area_set(areas, successions)
    return areas, successions


def shipped_areas() -> list[Area]:
    return [r.area for r in shipped_area_rows()[0]]


def shipped_successions() -> list[Succession]:
    return [r.succession for r in shipped_area_rows()[1]]
