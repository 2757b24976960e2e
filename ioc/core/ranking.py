"""Ranking figures by a KPI's better direction: the one order the breakdown API, the ranking
tile and the monthly report share."""

from __future__ import annotations

from typing import Any

from ioc.core.catalogue.model import KpiDef


def empty_cell() -> dict[str, object]:
    """A row's figure where nothing was reported."""
    return {"value": None, "n": 0, "reason": None}


def rank_rows(rows: list[dict[str, Any]], k: KpiDef) -> None:
    """Best first (rows' `value`, by `k.better`), rows without a value last by `code`; each
    gets `rank` (1.. over rows with a value) and `status` against the target (`meets`,
    `misses`, or None without a target or a value)."""
    lower = k.better == "lower"
    rows.sort(key=lambda r: (r["value"] is None, 0.0 if r["value"] is None else (r["value"] if lower else -r["value"]),
                             r["code"]))
    rank = 0
    for r in rows:
        v = r["value"]
        if v is None:
            r["rank"], r["status"] = None, None
            continue
        rank += 1
        r["rank"] = rank
        r["status"] = None if k.target is None else (
            "meets" if (v <= k.target if lower else v >= k.target) else "misses")
