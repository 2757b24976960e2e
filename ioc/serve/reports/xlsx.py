"""The report as XLSX (openpyxl, write-only: rows stream out, so 500 communes x 30 KPIs stay
cheap). Figures are numbers, not text, so a reader can sum and chart them; every ranking row
is there (the PDF shows each KPI's best and worst)."""

from __future__ import annotations

import io
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from ioc.serve.reports.model import ReportData
from ioc.serve.reports.text import interval, level_name, month_name, t

_BOLD = Font(bold=True)


def _head(ws: WriteOnlyWorksheet, labels: list[str]) -> None:
    cells = []
    for label in labels:
        c = WriteOnlyCell(ws, value=label)
        c.font = _BOLD
        cells.append(c)
    ws.append(cells)


def _naive(at: object, tz: ZoneInfo) -> object:
    """Excel has no time zones: local time, as the province reads it."""
    return at.astimezone(tz).replace(tzinfo=None) if at is not None else None  # type: ignore[attr-defined]


def render_xlsx(d: ReportData) -> bytes:
    lang, tz = d.lang, ZoneInfo(d.timezone)
    wb = Workbook(write_only=True)
    summary = wb.create_sheet(t("sheet_summary", lang))
    summary.append([t("title", lang, m=month_name(d.month, lang))])
    summary.append([t("report_area", lang), d.area_vi if lang == "vi" else d.area_en, d.area])
    summary.append([t("month", lang), d.month.strftime("%Y-%m")])
    if d.agency:
        summary.append([t("agency", lang), (d.agency_vi if lang == "vi" else d.agency_en) or d.agency, d.agency])
    summary.append([t("made", lang, t=""), _naive(d.made_at, tz)])

    ws = wb.create_sheet(t("sheet_figures", lang))
    _head(ws, [t(k, lang) for k in ("code", "kpi", "unit", "value", "target", "status", "previous", "last_year",
                                    "readings")])
    for f in d.figures:
        ws.append([f.kpi, f.name_vi if lang == "vi" else f.name_en, f.unit if lang == "vi" else f.unit_en,
                   f.value if f.value is not None else (t("not_aggregable", lang) if f.reason else None),
                   f.target, t(f.status, lang), f.previous, f.last_year, f.n])

    if d.agency is None:
        ws = wb.create_sheet(t("sheet_rankings", lang))
        _head(ws, [t(k, lang) for k in ("kpi", "rank", "code", "area", "value", "status")])
        words = {s: t(s, lang) for s in ("meets", "misses", "none")}
        for r in d.rankings:
            level = level_name(r.level, lang)
            for x in r.rows:
                ws.append([r.kpi, x.rank, x.code, f"{x.name_vi if lang == 'vi' else x.name_en} ({level})", x.value,
                           words[x.status or "none"]])
    if d.cameras is not None:
        ws = wb.create_sheet(t("sheet_cameras", lang))
        _head(ws, [t(k, lang) for k in ("camera", "name", "code", "uptime", "online_h", "known_h", "faults")])
        for c in d.cameras:
            ws.append([c.camera, c.name, c.area, c.uptime, c.online_s / 3600, c.known_s / 3600, c.faults])

    ws = wb.create_sheet(t("sheet_lateness", lang))
    _head(ws, [t(k, lang) for k in ("code", "agency", "kpi", "interval", "status", "arrivals", "last",
                                    "longest_gap_h")])
    for x in d.lateness:
        ws.append([x.agency, x.agency_vi if lang == "vi" else x.agency_en, x.kpi, interval(x.every, lang),
                   t(x.status, lang), x.arrivals, _naive(x.last, tz), round(x.longest_gap.total_seconds() / 3600, 2)])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
