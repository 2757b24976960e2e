"""Monthly reports: make one, list them, download one as PDF or XLSX.

Staff (admin, operator, leader) see every report; an agency sees only its own agency's
reports, and anything else answers 404 as if it did not exist. A file is only ever read
from its database row by numeric id (`/reports/12.pdf`): no name from the request reaches
a file system.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from ioc.core.storage import reports as report_store
from ioc.core.storage.reports import ReportKey
from ioc.serve.api.security import STAFF, Principal, require
from ioc.serve.reports.make import Maker, ReportBusy
from ioc.serve.reports.model import ReportRequestError, parse_month
from ioc.serve.reports.schedule import provinces

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])
log = logging.getLogger("ioc.reports")
_FILE = re.compile(r"^([0-9]{1,18})\.(pdf|xlsx)$")
_MEDIA = {"pdf": "application/pdf", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
READERS = (*STAFF, "agency")


class ReportRequest(BaseModel):
    month: str = Field(description="YYYY-MM")
    area: str | None = Field(None, max_length=32, description="a unit code; default: the province in force")
    agency: str | None = Field(None, max_length=32, description="an agency's own report")
    lang: Literal["vi", "en"] = "vi"


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items()}
    out["month"] = row["month"].strftime("%Y-%m")
    out["pdf_url"] = f"/api/v1/reports/{row['id']}.pdf"
    out["xlsx_url"] = f"/api/v1/reports/{row['id']}.xlsx"
    return out


def _maker(request: Request) -> Maker:
    maker: Maker | None = getattr(request.app.state, "reports", None)
    if maker is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=(
            "reports cannot be made on this server: no font with Vietnamese letters (install Debian's "
            "fonts-dejavu-core or set IOC_REPORT_FONT) or the server is still starting"))
    return maker


@router.post("", status_code=status.HTTP_201_CREATED)
async def make_report(request: Request, body: ReportRequest,
                      p: Annotated[Principal, Depends(require(*READERS))]) -> dict[str, Any]:
    """Make (or make again) a month's report now; answers when it is stored."""
    maker = _maker(request)
    agency = body.agency
    if p.is_agency:
        if agency not in (None, p.agency_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="an agency may make only its own report")
        agency = p.agency_id
    try:
        month = parse_month(body.month)
    except ReportRequestError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    area = body.area
    if area is None:
        async with maker.pool.acquire() as conn:
            found = await provinces(conn, month)
        if len(found) != 1:
            raise HTTPException(422, detail=f"name the area: {len(found)} provinces were in force in {body.month}")
        area = found[0]
    key = ReportKey(month, area, agency, body.lang)
    try:
        row, _ = await maker.make(key, made_by=p.username, replace=True)
    except ReportRequestError as exc:
        log.info("report refused", extra={"user": p.username, "error": str(exc)})
        raise HTTPException(422, detail=str(exc)) from None
    except ReportBusy as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"{exc}: try again in a moment") from None
    return _public(row)


@router.get("")
async def list_reports(request: Request, p: Annotated[Principal, Depends(require(*READERS))],
                       month: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest month first; an agency gets only its own reports."""
    try:
        m = parse_month(month) if month is not None else None
    except ReportRequestError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    async with request.app.state.pool.acquire() as conn:
        rows = await report_store.listing(conn, agency=p.agency_id if p.is_agency else None, month=m,
                                          limit=max(1, min(limit, 1000)))
    return [_public(r) for r in rows]


@router.get("/{name}", response_class=Response,
            responses={200: {"content": {v: {} for v in _MEDIA.values()}}, 404: {"description": "no such report"}})
async def download(request: Request, name: str, p: Annotated[Principal, Depends(require(*READERS))]) -> Response:
    """`{id}.pdf` or `{id}.xlsx`."""
    m = _FILE.fullmatch(name)
    if m is None:
        raise HTTPException(404, detail="no such report: ask for /api/v1/reports/{id}.pdf or .xlsx")
    report_id, fmt = int(m.group(1)), m.group(2)
    async with request.app.state.pool.acquire() as conn:
        try:
            found = await report_store.file(conn, report_id, fmt)  # type: ignore[arg-type]
        except report_store.CorruptReport as exc:
            log.error("stored report damaged", extra={"user": p.username, "report": report_id, "error": str(exc)})
            raise HTTPException(500, detail=f"report {report_id} is damaged (checksum): make it again") from None
    if found is None or (p.is_agency and found[0]["agency"] != p.agency_id):
        raise HTTPException(404, detail=f"no report {report_id}")
    meta, data = found
    filename = f"ioc-{meta['month']:%Y-%m}-{meta['area']}{'-' + meta['agency'] if meta['agency'] else ''}-{meta['lang']}.{fmt}"
    return Response(data, media_type=_MEDIA[fmt], headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Checksum-SHA256": meta[f"{fmt}_sha256"], "ETag": f'"{meta[f"{fmt}_sha256"]}"'})
