"""The catalogue and administrative units shipped with the package, as data files."""

from __future__ import annotations

import csv
import io
import tomllib
from importlib import resources

from ioc.core.catalogue.model import Area, KpiDef, Sector


def _data():  # type: ignore[no-untyped-def]
    return resources.files("ioc.core.catalogue").joinpath("data")


def shipped_catalogue() -> tuple[list[Sector], list[KpiDef]]:
    raw = tomllib.loads(_data().joinpath("kpis.toml").read_text(encoding="utf-8"))
    sectors = [Sector(**s) for s in raw.get("sector", [])]
    kpis = [KpiDef(**k) for k in raw.get("kpi", [])]
    return sectors, kpis


def shipped_areas() -> list[Area]:
    out: list[Area] = []
    folder = _data().joinpath("areas")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".csv"):
            continue
        for row in csv.DictReader(io.StringIO(entry.read_text(encoding="utf-8"))):
            out.append(
                Area(
                    code=row["code"].strip(),
                    parent_code=(row.get("parent_code") or "").strip() or None,
                    level=row["level"].strip(),  # type: ignore[arg-type]
                    name_vi=row["name_vi"].strip(),
                    name_en=row["name_en"].strip(),
                )
            )
    return out
