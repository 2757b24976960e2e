"""Invariants of the shipped catalogue data: the KPI catalogue and the area list.

Plain file checks: no database, no broker, no network.
"""

from __future__ import annotations

import csv
import re
import tomllib
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "ioc" / "core" / "catalogue" / "data"
KPIS_TOML = DATA / "kpis.toml"
HA_NAM_CSV = DATA / "areas" / "ha-nam.csv"

SECTORS = {"tthc", "dvc", "cds", "yte", "gd", "mt", "gt", "an"}
KINDS = {"counter", "gauge", "ratio"}
REQUIRED_KEYS = {
    "id", "sector", "name_vi", "name_en", "unit", "unit_en", "kind", "min", "max",
    "integer", "better", "interval", "description_vi", "description_en",
}
OPTIONAL_KEYS = {"target", "numerator_vi", "numerator_en", "denominator_vi", "denominator_en", "numerator_within"}
ID_RE = re.compile(r"^([a-z]+)\.[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
INTERVAL_RE = re.compile(r"^\d+(m|h|d|w|M)$")

# The administrative-procedure indicators every provincial IOC reports, with their kind.
REQUIRED_TTHC = {
    "tthc.dossiers_received": "counter",
    "tthc.dossiers_resolved": "counter",
    "tthc.dossiers_overdue": "counter",
    "tthc.dossiers_submitted_online": "counter",
    "tthc.dossiers_paid_online": "counter",
    "tthc.on_time_rate": "ratio",
    "tthc.online_submission_rate": "ratio",
    "tthc.online_payment_rate": "ratio",
}

AREA_HEADER = ["code", "parent_code", "level", "name_vi", "name_en", "valid_from", "valid_to", "lat", "lon"]
CODE_DIGITS = {"province": 2, "district": 3, "commune": 5}


def _load_catalogue() -> dict:
    with KPIS_TOML.open("rb") as f:
        return tomllib.load(f)


def _load_areas() -> tuple[list[str], list[dict[str, str]]]:
    with HA_NAM_CSV.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


CATALOGUE = _load_catalogue()
KPIS: list[dict] = CATALOGUE.get("kpi", [])
SECTOR_TABLES: list[dict] = CATALOGUE.get("sector", [])


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_whole(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def _non_empty(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


# ------------------------------------------------------------------------ sectors


def test_sector_tables():
    ids = [s.get("id") for s in SECTOR_TABLES]
    assert len(ids) == len(set(ids)), f"duplicate sector ids: {ids}"
    assert set(ids) == SECTORS
    for s in SECTOR_TABLES:
        assert set(s) == {"id", "name_vi", "name_en"}, s
        assert _non_empty(s["name_vi"]) and _non_empty(s["name_en"]), s


def test_catalogue_size_and_coverage():
    assert 35 <= len(KPIS) <= 60, len(KPIS)
    per_sector = Counter(k.get("sector") for k in KPIS)
    missing = SECTORS - set(per_sector)
    assert not missing, f"sectors without indicators: {sorted(missing)}"


def test_required_tthc_indicators():
    by_id = {k["id"]: k for k in KPIS}
    for kpi_id, kind in REQUIRED_TTHC.items():
        assert kpi_id in by_id, f"missing {kpi_id}"
        assert by_id[kpi_id]["kind"] == kind, f"{kpi_id} should be a {kind}"
    assert by_id["tthc.dossiers_overdue"]["better"] == "lower"


def test_ids_unique():
    counts = Counter(k.get("id") for k in KPIS)
    dups = [i for i, n in counts.items() if n > 1]
    assert not dups, f"duplicate KPI ids: {dups}"


# -------------------------------------------------------------------- each KPI


@pytest.mark.parametrize("kpi", KPIS, ids=[str(k.get("id")) for k in KPIS])
def test_kpi(kpi):
    keys = set(kpi)
    assert REQUIRED_KEYS <= keys, f"missing keys: {sorted(REQUIRED_KEYS - keys)}"
    assert keys <= REQUIRED_KEYS | OPTIONAL_KEYS, f"unknown keys: {sorted(keys - REQUIRED_KEYS - OPTIONAL_KEYS)}"

    m = ID_RE.match(kpi["id"])
    assert m, f"id {kpi['id']!r} is not '<sector>.<snake_case>' in lowercase ascii"
    assert m.group(1) == kpi["sector"], "id prefix must equal the sector"
    assert kpi["sector"] in SECTORS

    for key in ("name_vi", "name_en", "unit", "unit_en", "description_vi", "description_en"):
        assert _non_empty(kpi[key]), f"{key} is empty"
    for key in ("name_vi", "description_vi", "unit"):
        assert unicodedata.is_normalized("NFC", kpi[key]), f"{key} is not NFC-normalised"

    assert kpi["kind"] in KINDS
    assert kpi["better"] in {"higher", "lower"}
    assert isinstance(kpi["integer"], bool)
    assert INTERVAL_RE.match(kpi["interval"]), f"bad interval {kpi['interval']!r}"

    lo, hi = kpi["min"], kpi["max"]
    assert _is_number(lo) and _is_number(hi), "min/max must be numbers"
    assert lo < hi, "min must be < max"
    if "target" in kpi:
        t = kpi["target"]
        assert _is_number(t), "target must be a number"
        assert lo <= t <= hi, f"target {t} outside [{lo}, {hi}]"

    if kpi["kind"] == "ratio":
        assert kpi["unit"] == "%", "a ratio is shown in %"
        assert 0 <= lo and hi <= 100, "a ratio lies within 0..100"
    if kpi["kind"] == "counter":
        assert kpi["integer"] is True, "a counter counts whole events"
        assert lo >= 0, "a counter cannot be negative"
    if kpi["integer"]:
        assert _is_whole(lo) and _is_whole(hi), "integer KPI with fractional bounds"
        if "target" in kpi:
            assert _is_whole(kpi["target"]), "integer KPI with a fractional target"


# -------------------------------------------------------------------------- areas


def test_area_file():
    header, rows = _load_areas()
    assert header == AREA_HEADER

    codes = [r["code"] for r in rows]
    dups = [c for c, n in Counter(codes).items() if n > 1]
    assert not dups, f"duplicate area codes: {dups}"
    by_code = {r["code"]: r for r in rows}

    for r in rows:
        assert r["level"] in CODE_DIGITS, r
        assert re.fullmatch(rf"\d{{{CODE_DIGITS[r['level']]}}}", r["code"]), f"bad code for {r}"
        assert _non_empty(r["name_vi"]) and _non_empty(r["name_en"]), r
        assert unicodedata.is_normalized("NFC", r["name_vi"]), r
        assert r["name_en"].isascii(), r
        if r["parent_code"]:
            assert r["parent_code"] in by_code, f"unknown parent of {r}"
        # positions: the seats data/areas/README.md states (province, district-level units), in Hà Nam
        if r["level"] == "commune":
            assert r["lat"] == r["lon"] == "", f"a commune placed without a source: {r}"
        else:
            assert 20.3 < float(r["lat"]) < 20.8 and 105.7 < float(r["lon"]) < 106.2, r

    provinces = [r for r in rows if r["level"] == "province"]
    assert len(provinces) == 1, provinces
    province = provinces[0]
    assert province["parent_code"] == ""
    assert province["code"] == "35"

    districts = [r for r in rows if r["level"] == "district"]
    assert len(districts) == 6
    for d in districts:
        assert d["parent_code"] == province["code"], d

    communes = [r for r in rows if r["level"] == "commune"]
    assert len(communes) >= 90, len(communes)
    for c in communes:
        assert by_code[c["parent_code"]]["level"] == "district", c

    assert any(
        r["level"] == "district" and r["name_vi"] == "Thành phố Phủ Lý" and r["code"] == "347"
        for r in rows
    ), "Phủ Lý city is missing"
