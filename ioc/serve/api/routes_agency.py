"""Agencies that report by hand or over HTTP: the JSON endpoint, spreadsheet uploads, the template.

Every reading goes through the MQTT path (`relay`): the ingest validates, stores,
dead-letters and answers per reading. Only an agency's own account may submit, and only
as itself (the topic is the token's agency, never something the body names).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
import orjson

from ioc.core.storage import catalogue
from ioc.serve.api import sheets
from ioc.serve.api.relay import Relay, RelayUnavailable, Submission
from ioc.serve.api.security import Principal, require

router = APIRouter(prefix="/api/v1/agency", tags=["agency reporting"])
log = logging.getLogger("ioc.api.agency")
DEFAULT_WAIT_S = 20.0
CHUNK_ROWS = 500  # readings per MQTT message for an upload: far below the ingest's size limits
PENDING = "accepted by the broker, result pending: see GET /api/v1/latest or the dead letters shortly"
NOT_SENT = "not confirmed by the broker: send it again (a replay changes nothing)"

Agency = Annotated[Principal, Depends(require("agency"))]
Wait = Annotated[float, Query(ge=0.5, le=120.0, description="seconds to wait for the ingest's result")]


def _relay(request: Request) -> Relay:
    relay: Relay | None = request.app.state.relay
    if relay is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no MQTT broker configured (IOC_MQTT_URL)")
    return relay


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` (never read whole first)."""
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > limit:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            detail=f"the body is {int(size):,} bytes; the limit is {limit:,}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                                detail=f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _submit(request: Request, agency: str, payload: bytes, wait_s: float) -> Submission:
    try:
        return await _relay(request).submit(agency, payload, wait_s)
    except RelayUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"cannot reach the MQTT broker: {exc}") from None


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = {s: 0 for s in ("accepted", "corrected", "duplicate", "refused", "spooled", "pending")}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


@router.get("/me")
async def me(request: Request, p: Agency) -> dict[str, Any]:
    """Who the token is and what it reports: the form page's starting point."""
    tz = request.app.state.timezone
    return {"agency": p.agency_id, "username": p.username, "sectors": list(p.sectors or ()), "timezone": tz,
            "utc_offset": datetime.now(ZoneInfo(tz)).strftime("%z")}


_JSON_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "description": "the MQTT payload: one reading or an array of up to 10,000",
    "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}}}}
_FILE_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string", "format": "binary"}},
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("/readings", openapi_extra=_JSON_BODY,
             responses={202: {"description": "accepted by the broker, result pending"},
                        413: {"description": "the body is over the ingest's payload limit"}})
async def post_readings(request: Request, p: Agency, wait: Wait = DEFAULT_WAIT_S) -> JSONResponse:
    """Exactly the MQTT payload (one reading or an array); the answer has one result per reading.

    `status` per reading: accepted, corrected (a higher `rev` replaced the value), duplicate
    (stored already: nothing changed), refused (with the ingest's `reason`, also in the dead
    letters), spooled (the database is away; stored once it is back). A reading with
    `index: null` concerns the whole message. 202: the broker has it, the result is pending.
    """
    assert p.agency_id is not None
    settings = request.app.state.settings
    payload = await _body(request, settings.ingest_max_payload_bytes)
    sub = await _submit(request, p.agency_id, payload, wait)
    if sub.results is None:
        return JSONResponse({"request": sub.request, "status": "pending" if sub.broker_accepted else "not_sent",
                             "detail": PENDING if sub.broker_accepted else NOT_SENT, "results": []},
                            status_code=status.HTTP_202_ACCEPTED if sub.broker_accepted else 503)
    rows = sub.results
    log.info("readings submitted over HTTP", extra={"agency": p.agency_id, "user": p.username,
                                                    "request": sub.request, **_counts(rows)})
    body: dict[str, Any] = {"request": sub.request, "status": "done", "counts": _counts(rows), "results": rows}
    if sub.truncated:  # thousands of long refusals: the first ones, the rest in the dead letters
        body["truncated"] = True
    return JSONResponse(body)


@router.post("/uploads", openapi_extra=_FILE_BODY,
             responses={413: {"description": "the file is over the size limit"}})
async def upload(
    request: Request,
    p: Agency,
    filename: Annotated[str, Query(min_length=5, max_length=200, description="the file's name: .csv or .xlsx")],
    wait: Wait = DEFAULT_WAIT_S,
) -> JSONResponse:
    """A CSV or XLSX file in the template (GET /template.xlsx), as the raw request body.

    A file with any error of form (a formula, macros, merged cells, a wrong type, too many
    rows, too large) is refused whole with each error's row and column, and nothing is
    stored. Otherwise each row's result, as for POST /readings, with its row number.
    """
    assert p.agency_id is not None
    data = await _body(request, sheets.MAX_BYTES)
    try:
        sheet = await run_in_threadpool(sheets.read_upload, filename, data, p.agency_id, request.app.state.timezone)
    except sheets.SheetError as exc:
        log.info("upload refused", extra={"agency": p.agency_id, "user": p.username, "upload": filename[:80],
                                          "first": exc.errors[0]})
        code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE if exc.too_large else 422
        detail: Any = ("; ".join(exc.errors) if exc.too_large else
                       [{"loc": ["body", e.split(":", 1)[0]], "msg": e, "type": "value_error"} for e in exc.errors])
        return JSONResponse({"detail": detail}, status_code=code)
    parts = [sheet.rows[i:i + CHUNK_ROWS] for i in range(0, len(sheet.rows), CHUNK_ROWS)]
    # one MQTT client publishes them in order, so a correction later in the file still
    # reaches the ingest after its original: the parts may wait for their answers together
    subs = await asyncio.gather(*(_submit(request, p.agency_id, orjson.dumps([r.item for r in part]), wait)
                                  for part in parts))
    results: list[dict[str, Any]] = []
    for part, sub in zip(parts, subs):
        by_index = {row.get("index"): row for row in sub.results or ()}
        whole = by_index.get(None)
        for i, r in enumerate(part):
            got = by_index.get(i) or whole
            row: dict[str, Any] = {"row": r.row, "kpi": r.item.get("kpi"), "area": r.item.get("area"),
                                   "ts": r.item.get("ts"), "value": r.item.get("value"),
                                   "msg_id": r.item.get("msg_id")}
            if got is None:
                row["status"] = "pending"
                row["reason"] = PENDING if sub.broker_accepted else NOT_SENT
            else:
                row["status"] = got["status"]
                if got.get("reason"):
                    row["reason"] = got["reason"]
            results.append(row)
    counts = _counts(results)
    log.info("upload submitted", extra={"agency": p.agency_id, "user": p.username, "upload": filename[:80],
                                        "rows": len(results), "skipped": len(sheet.skipped), **counts})
    return JSONResponse({"file": filename, "counts": counts, "skipped_rows": sheet.skipped, "results": results})


async def _template_rows(request: Request, p: Principal, period: str | None) -> list[list[Any]]:
    async with request.app.state.pool.acquire() as conn:
        kpis = await catalogue.list_kpis(conn, list(p.sectors or ()))
        areas = await catalogue.list_areas(conn)
    if period is None:
        now = datetime.now(ZoneInfo(request.app.state.timezone))
        year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
        period = f"{year:04d}-{month:02d}"
    return sheets.template_rows([k.id for k in kpis], [a.code for a in areas], period)


Period = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="the month to prefill (default: last month)")]


@router.get("/template.csv", response_class=Response)
async def template_csv(request: Request, p: Agency, period: Period = None) -> Response:
    """The upload template for this agency: each of its sectors' KPIs for each area, values empty."""
    rows = await _template_rows(request, p, period)
    return Response(sheets.template_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="ioc-{p.agency_id}-template.csv"'})


@router.get("/template.xlsx", response_class=Response)
async def template_xlsx(request: Request, p: Agency, period: Period = None) -> Response:
    rows = await _template_rows(request, p, period)
    async with request.app.state.pool.acquire() as conn:
        kpis = await catalogue.list_kpis(conn, list(p.sectors or ()))
        areas = await catalogue.list_areas(conn)
    guide: list[list[Any]] = [["kpi", "tên / name", "đơn vị / unit", "min", "max", "số nguyên / whole numbers"]]
    guide.extend([k.id, f"{k.name_vi} / {k.name_en}", k.unit, k.min, k.max, "x" if k.integer else ""] for k in kpis)
    guide.append([])
    guide.append(["area", "tên / name", "cấp / level"])
    guide.extend([a.code, f"{a.name_vi} / {a.name_en}", a.level] for a in areas)
    body = await run_in_threadpool(sheets.template_xlsx, rows, guide)
    return Response(body, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="ioc-{p.agency_id}-template.xlsx"'})
