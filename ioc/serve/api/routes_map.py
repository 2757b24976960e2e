"""The map's geometry: the units below an area with their boundary or position.

Separate from the values (`/breakdown`): boundaries change only when an admin imports them,
so a page loads them once per area and level, and asks only for the values again.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from ioc.core.catalogue.lineage import series_sources, units_at_level, units_below
from ioc.core.catalogue.model import Area
from ioc.core.storage import boundaries, catalogue
from ioc.serve.api.security import READERS, Principal, require

router = APIRouter(prefix="/api/v1", tags=["catalogue"])
LEVELS = ("province", "district", "commune", "zone")


@router.get("/areas/geometry")
async def geometry(
    request: Request,
    _: Annotated[Principal, Depends(require(*READERS))],
    area: Annotated[str, Query(max_length=32)],
    level: Annotated[str, Query(max_length=16)],
) -> Response:
    """The units at `level` below `area` (across reforms: those of the units it succeeded
    too), each with its simplified boundary (GeoJSON MultiPolygon, [lon, lat]) or null, and
    its position (`lat`, `lon`: its seat, or its boundary's centroid) or nulls, and where it
    has neither, `near`: the nearest unit above it with a position (drawn there, marked as
    approximate); `bbox` ([west, south, east, north]) frames them all."""
    if level not in LEVELS:
        raise HTTPException(422, detail=f"level must be one of {', '.join(LEVELS)}, got {level[:20]!r}")
    async with request.app.state.pool.acquire() as conn:
        areas = await catalogue.list_areas(conn)
        if not any(a.code == area for a in areas):
            raise HTTPException(404, detail=f"unknown area {area!r}")
        successions = await catalogue.list_successions(conn)
        # every unit a breakdown of any period up to today may have as a row: those of the
        # history and those the area holds now (a unit whose parent ended sits under the
        # parent's successor), so a page looks up every row's shape here
        today = datetime.now(ZoneInfo(request.app.state.timezone)).date()
        history = units_at_level(series_sources(area, areas, successions), level, areas, successions)
        held = units_below(area, level, date.min, today, areas, successions)
        codes = sorted({s.code for s in history} | {a.code for a in held})
        rows = await boundaries.map_units(conn, codes)
    units: list[dict[str, Any]] = []
    xs: list[float] = []
    ys: list[float] = []
    for r in rows:
        geo = orjson.Fragment(r["geometry"]) if r["geometry"] else None
        near = None if geo is not None or r["lat"] is not None else _placed_ancestor(r["code"], areas)
        units.append({"code": r["code"], "name_vi": r["name_vi"], "name_en": r["name_en"], "level": r["level"],
                      "lat": r["lat"], "lon": r["lon"], "boundary": geo, "vertices": r["vertices"],
                      "near": None if near is None else {"code": near.code, "name_vi": near.name_vi,
                                                         "name_en": near.name_en, "lat": near.lat, "lon": near.lon}})
        if near is not None:
            xs.append(near.lon)  # type: ignore[arg-type]
            ys.append(near.lat)  # type: ignore[arg-type]
        if r["geometry"]:
            for poly in orjson.loads(r["geometry"])["coordinates"]:
                xs.extend(p[0] for p in poly[0])
                ys.extend(p[1] for p in poly[0])
        elif r["lat"] is not None:
            xs.append(r["lon"])
            ys.append(r["lat"])
    body = {"area": area, "level": level, "units": units,
            "bbox": [min(xs), min(ys), max(xs), max(ys)] if xs else None}
    return Response(orjson.dumps(body), media_type="application/json")


def _placed_ancestor(code: str, areas: list[Area]) -> Area | None:
    """The nearest unit above `code` (any version, ended ones too) with a position: where a
    unit with neither boundary nor position of its own is drawn, marked as approximate (a
    commune at the seat of the district it belonged to), until its own are imported."""
    latest = {a.code: a for a in areas}  # list_areas orders each code's versions oldest first
    seen = {code}
    unit = latest.get(code)
    parent = unit.parent_code if unit else None
    while parent is not None and parent not in seen:
        seen.add(parent)
        above = latest.get(parent)
        if above is None:
            return None
        if above.lat is not None and above.lon is not None:
            return above
        parent = above.parent_code
    return None
