"""The report as PDF, drawn by fpdf2 (pure Python: no browser, no system library at run time).

A4 landscape: the KPI table has nine columns. Rankings show each KPI's best and worst five
units (the XLSX has every row); the camera and lateness tables are whole.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from fpdf import FPDF

from ioc.serve.reports.fonts import Fonts
from ioc.serve.reports.model import Lang, ReportData
from ioc.serve.reports.text import (
    delta, duration, interval, level_name, month_name, number, t, when,
)

SHOWN_PER_END = 5  # a ranking's best and worst units in the PDF
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


def _width(doc: FPDF, text: str) -> float:
    """The text's width in mm from the font's own advance widths: fpdf2's get_string_width
    costs ~0.3 ms a call, and a province's report has thousands of cells."""
    cw = doc.current_font.cw
    return sum(cw[ord(ch)] for ch in text) * doc.font_size_pt / 1000 / doc.k


def _fit(doc: FPDF, text: str, room: float) -> str:
    """The text, cut with an ellipsis when it is wider than `room`."""
    if _width(doc, text) <= room:
        return text
    while text and _width(doc, text + "…") > room:
        text = text[:-1]
    return text + "…"


def _wrap(doc: FPDF, text: str, room: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and _width(doc, f"{lines[-1]} {word}") <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


_ROW_H, _PAD = 5.0, 1.2


def _table(doc: FPDF, widths: tuple[int, ...], head: list[str], rows: list[list[str]], text_cols: int = 1) -> None:
    """Text columns first (left-aligned), figures after (right-aligned). Drawn with `text()`
    and lines rather than fpdf2's table(), which takes ~20 ms a row: one row, one line of
    text, cut with an ellipsis when too long (the XLSX has every word)."""
    x0 = doc.l_margin
    xs = [x0 + sum(widths[:i]) for i in range(len(widths) + 1)]
    bottom = doc.h - doc.b_margin

    def header() -> None:
        doc.set_font(_FAMILY, "B", 7.5)
        wrapped = [_wrap(doc, h, w - 2 * _PAD) for h, w in zip(head, widths)]
        height = max(len(w) for w in wrapped) * 3.6 + 1.6
        y = doc.get_y()
        doc.set_fill_color(225, 232, 240)
        doc.rect(x0, y, xs[-1] - x0, height, style="FD")
        for i, lines in enumerate(wrapped):
            for j, line in enumerate(lines):
                x = xs[i] + _PAD if i < text_cols else xs[i + 1] - _PAD - _width(doc, line)
                doc.text(x, y + 3.6 * (j + 1), line)
        doc.set_y(y + height)
        doc.set_font(_FAMILY, "", 8)

    header()
    for cells in rows:
        y = doc.get_y()
        if y + _ROW_H > bottom:
            doc.add_page()
            header()
            y = doc.get_y()
        for i, c in enumerate(cells):
            text = _fit(doc, c, widths[i] - 2 * _PAD)
            x = xs[i] + _PAD if i < text_cols else xs[i + 1] - _PAD - _width(doc, text)
            doc.text(x, y + 3.6, text)
        doc.line(x0, y + _ROW_H, xs[-1], y + _ROW_H)
        doc.set_y(y + _ROW_H)
    doc.set_draw_color(0)


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
        _note(doc, f"{r.name_vi if lang == 'vi' else r.name_en} ({r.unit if lang == 'vi' else r.unit_en}) – "
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
