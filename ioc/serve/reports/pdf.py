"""The report as PDF, drawn by fpdf2 (pure Python: no browser, no system library at run time).

A4 landscape: the KPI table has nine columns. Rankings show each KPI's best and worst five
units (the XLSX has every row); the camera and lateness tables are whole.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.fonts import FontFace

from ioc.serve.reports.fonts import Fonts
from ioc.serve.reports.model import Lang, ReportData
from ioc.serve.reports.text import (
    delta, duration, interval, level_name, month_name, number, t, when,
)

SHOWN_PER_END = 5  # a ranking's best and worst units in the PDF
_HEAD = FontFace(emphasis="BOLD", fill_color=(225, 232, 240))
_FAMILY = "ioc-sans"


class _Doc(FPDF):
    def __init__(self, data: ReportData, fonts: Fonts) -> None:
        super().__init__(orientation="landscape", unit="mm", format="A4")
        self.data = data
        self.add_font(_FAMILY, "", str(fonts.regular))
        self.add_font(_FAMILY, "B", str(fonts.bold))
        self.set_font(_FAMILY, size=9)
        self.set_auto_page_break(True, margin=14)
        self.alias_nb_pages()
        self.set_title(_title(data))
        self.set_creator("ioc")
        self.set_lang(data.lang)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(_FAMILY, size=7)
        self.cell(0, 5, f"{_title(self.data)} · {t('page', self.data.lang, p=self.page_no(), n='{nb}')}", align="R")


def _title(d: ReportData) -> str:
    name = d.area_vi if d.lang == "vi" else d.area_en
    return f"{t('title', d.lang, m=month_name(d.month, d.lang))} – {name}"


def render_pdf(d: ReportData, fonts: Fonts) -> bytes:
    lang, tz = d.lang, ZoneInfo(d.timezone)
    doc = _Doc(d, fonts)
    doc.add_page()
    doc.set_font(_FAMILY, "B", 15)
    doc.multi_cell(0, 8, _title(d), new_x="LMARGIN", new_y="NEXT")
    doc.set_font(_FAMILY, size=9)
    if d.agency:
        doc.multi_cell(0, 5, t("agency_title", lang, a=(d.agency_vi if lang == "vi" else d.agency_en) or d.agency),
                       new_x="LMARGIN", new_y="NEXT")
    last_day = d.end.astimezone(tz) - timedelta(days=1)
    doc.multi_cell(0, 5, t("period", lang, s=d.start.strftime("%d/%m/%Y"), e=last_day.strftime("%d/%m/%Y"),
                           tz=d.timezone), new_x="LMARGIN", new_y="NEXT")
    doc.multi_cell(0, 5, t("made", lang, t=when(d.made_at, lang, tz)), new_x="LMARGIN", new_y="NEXT")
    _figures(doc, d)
    if d.agency is None:
        _rankings(doc, d)
    if d.cameras is not None:
        _cameras(doc, d)
    _lateness(doc, d, tz)
    return bytes(doc.output())


def _heading(doc: FPDF, text: str) -> None:
    doc.ln(4)
    doc.set_font(_FAMILY, "B", 12)
    doc.multi_cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
    doc.set_font(_FAMILY, size=8)


def _section(doc: FPDF, lang: Lang, title: str, empty: str, items: object) -> bool:
    """The section's heading, and a line saying it is empty when `items` is."""
    _heading(doc, t(title, lang))
    if not items:
        _note(doc, t(empty, lang))
        return False
    return True


def _note(doc: FPDF, text: str) -> None:
    doc.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")


def _table(doc: FPDF, widths: tuple[int, ...], head: list[str], rows: list[list[str]], text_cols: int = 1) -> None:
    """Text columns first (left-aligned), figures after (right-aligned)."""
    aligns = ["LEFT"] * text_cols + ["RIGHT"] * (len(head) - text_cols)
    with doc.table(col_widths=widths, headings_style=_HEAD, line_height=4.5, text_align=tuple(aligns),
                   padding=1) as table:
        for cells in [head, *rows]:
            row = table.row()
            for c in cells:
                row.cell(c)


def _figures(doc: FPDF, d: ReportData) -> None:
    lang = d.lang
    if not _section(doc, lang, "figures", "no_figures", d.figures):
        return
    head = [t(k, lang) for k in ("kpi", "unit", "value", "target", "status", "previous", "vs_previous",
                                  "last_year", "vs_last_year")]
    rows = []
    for f in d.figures:
        value = number(f.value, lang) if f.value is not None or f.reason is None else t("not_aggregable", lang)
        rows.append([f.name_vi if lang == "vi" else f.name_en, f.unit if lang == "vi" else f.unit_en, value,
                     number(f.target, lang), t(f.status, lang), number(f.previous, lang),
                     delta(f.value, f.previous, lang), number(f.last_year, lang), delta(f.value, f.last_year, lang)])
    _table(doc, (80, 22, 24, 22, 22, 26, 26, 26, 26), head, rows, text_cols=2)


def _rankings(doc: FPDF, d: ReportData) -> None:
    lang = d.lang
    ranked = [r for r in d.rankings if r.rows]
    if not _section(doc, lang, "rankings", "no_rankings", ranked):
        return
    for r in ranked:
        doc.set_font(_FAMILY, "B", 9)
        valued = [x for x in r.rows if x.value is not None]
        _note(doc, f"{r.name_vi if lang == 'vi' else r.name_en} ({r.unit}) – "
                   f"{t('of_units', lang, n=len(r.rows), level=level_name(r.level, lang))}")
        doc.set_font(_FAMILY, size=8)
        shown = valued if len(valued) <= 2 * SHOWN_PER_END else valued[:SHOWN_PER_END] + valued[-SHOWN_PER_END:]
        rows = [[str(x.rank or ""), x.name_vi if lang == "vi" else x.name_en, x.code, number(x.value, lang),
                 t(x.status or "none", lang)] for x in shown]
        _table(doc, (14, 90, 24, 30, 30), [t(k, lang) for k in ("rank", "area", "code", "value", "status")], rows,
               text_cols=3)
        doc.ln(2)


def _cameras(doc: FPDF, d: ReportData) -> None:
    lang = d.lang
    if not _section(doc, lang, "cameras", "no_cameras", d.cameras):
        return
    rows = [[c.camera, c.name, c.area or "", number(c.uptime, lang, 2), number(c.online_s / 3600, lang),
             number(c.known_s / 3600, lang), str(c.faults)] for c in d.cameras]
    _table(doc, (30, 90, 24, 40, 30, 30, 24),
           [t(k, lang) for k in ("camera", "name", "code", "uptime", "online_h", "known_h", "faults")], rows,
           text_cols=3)


def _lateness(doc: FPDF, d: ReportData, tz: ZoneInfo) -> None:
    lang = d.lang
    if not _section(doc, lang, "lateness", "nothing_late", d.lateness):
        return
    rows = [[x.agency_vi if lang == "vi" else x.agency_en, x.kpi_vi if lang == "vi" else x.kpi_en,
             interval(x.every, lang), t(x.status, lang), str(x.arrivals), when(x.last, lang, tz),
             duration(x.longest_gap, lang)] for x in d.lateness]
    _table(doc, (50, 80, 26, 26, 26, 32, 30),
           [t(k, lang) for k in ("agency", "kpi", "interval", "status", "arrivals", "last", "longest_gap")], rows,
           text_cols=4)
