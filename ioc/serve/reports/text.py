"""The words and number formats of a report, Vietnamese first, English on request."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from ioc.serve.reports.model import Lang

LABELS: dict[str, tuple[str, str]] = {
    "title": ("BÁO CÁO THÁNG {m}", "MONTHLY REPORT {m}"),
    "agency_title": ("Cơ quan báo cáo: {a}", "Reporting agency: {a}"),
    "period": ("Kỳ báo cáo: {s} – {e} ({tz})", "Period: {s} – {e} ({tz})"),
    "made": ("Lập lúc {t}", "Made at {t}"),
    "figures": ("1. Chỉ tiêu so với mục tiêu", "1. KPIs against targets"),
    "rankings": ("2. Xếp hạng theo đơn vị", "2. Rankings by unit"),
    "cameras": ("3. Thời gian hoạt động của camera", "3. Camera uptime"),
    "lateness": ("4. Cơ quan báo cáo trễ hoặc không báo cáo", "4. Agencies that reported late or not at all"),
    "kpi": ("Chỉ tiêu", "KPI"),
    "unit": ("Đơn vị tính", "Unit"),
    "value": ("Giá trị", "Value"),
    "target": ("Mục tiêu", "Target"),
    "status": ("Đánh giá", "Status"),
    "previous": ("Tháng trước", "Previous month"),
    "vs_previous": ("So với tháng trước", "vs previous month"),
    "last_year": ("Cùng kỳ năm trước", "Same month last year"),
    "vs_last_year": ("So với cùng kỳ", "vs last year"),
    "readings": ("Số bản ghi", "Readings"),
    "met": ("Đạt", "Met"),
    "missed": ("Không đạt", "Missed"),
    "none": ("", ""),
    "meets": ("Đạt", "Met"),  # /api/v1/breakdown's words for a row's status
    "misses": ("Không đạt", "Missed"),
    "rank": ("Hạng", "Rank"),
    "area": ("Đơn vị hành chính", "Unit"),
    "code": ("Mã", "Code"),
    "best": ("Tốt nhất", "Best"),
    "worst": ("Kém nhất", "Worst"),
    "of_units": ("{n} đơn vị cấp {level}", "{n} units at {level} level"),
    "camera": ("Camera", "Camera"),
    "name": ("Tên", "Name"),
    "uptime": ("Thời gian hoạt động (%)", "Uptime (%)"),
    "online_h": ("Giờ hoạt động", "Hours online"),
    "known_h": ("Giờ theo dõi", "Hours watched"),
    "faults": ("Số sự cố", "Faults"),
    "agency": ("Cơ quan", "Agency"),
    "interval": ("Chu kỳ báo cáo", "Reporting interval"),
    "arrivals": ("Số lần gửi trong tháng", "Deliveries in the month"),
    "last": ("Lần gửi cuối", "Last delivery"),
    "longest_gap": ("Khoảng trống dài nhất", "Longest gap"),
    "longest_gap_h": ("Khoảng trống dài nhất (giờ)", "Longest gap (hours)"),
    "late": ("Trễ hạn", "Late"),
    "missing": ("Không báo cáo", "Not reported"),
    "nothing_late": ("Không có cơ quan nào báo cáo trễ.", "No agency reported late."),
    "no_cameras": ("Không có camera.", "No cameras."),
    "no_rankings": ("Không có đơn vị cấp dưới có số liệu.", "No units below with figures."),
    "no_figures": ("Không có số liệu trong kỳ.", "No figures in the period."),
    "not_aggregable": ("không tổng hợp được", "not aggregable"),
    "sheet_summary": ("Tổng quan", "Summary"),
    "sheet_figures": ("Chỉ tiêu", "KPIs"),
    "sheet_rankings": ("Xếp hạng", "Rankings"),
    "sheet_cameras": ("Camera", "Cameras"),
    "sheet_lateness": ("Báo cáo trễ", "Late reports"),
    "report_area": ("Địa bàn", "Area"),
    "month": ("Tháng", "Month"),
    "page": ("Trang {p}/{n}", "Page {p} of {n}"),
}
LEVELS = {"province": ("tỉnh", "province"), "district": ("huyện", "district"), "commune": ("xã", "commune"),
          "zone": ("khu vực", "zone"), "country": ("quốc gia", "country")}


def t(key: str, lang: Lang, **kw: object) -> str:
    vi, en = LABELS[key]
    text = vi if lang == "vi" else en
    return text.format(**kw) if kw else text


def level_name(level: str, lang: Lang) -> str:
    vi, en = LEVELS.get(level, (level, level))
    return vi if lang == "vi" else en


def number(x: float | None, lang: Lang, decimals: int = 1) -> str:
    """1234.5 -> '1.234,5' in Vietnamese, '1,234.5' in English; None -> '–'."""
    if x is None:
        return "–"
    text = f"{x:,.{decimals}f}"
    if decimals:
        text = text.rstrip("0").rstrip(".")
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".") if lang == "vi" else text


def delta(now: float | None, then: float | None, lang: Lang) -> str:
    """The change, signed, in the KPI's unit ('+1,2' / '-3.4'); '–' when one side is missing."""
    if now is None or then is None:
        return "–"
    d = now - then
    return ("+" if d > 0 else "") + number(d, lang)


def month_name(month: date, lang: Lang) -> str:
    return f"{month.month:02d}/{month.year}" if lang == "vi" else month.strftime("%B %Y")


def when(at: datetime | None, lang: Lang, tz: object) -> str:
    if at is None:
        return "–"
    local = at.astimezone(tz)  # type: ignore[arg-type]
    return local.strftime("%H:%M %d/%m/%Y" if lang == "vi" else "%Y-%m-%d %H:%M")


def duration(d: timedelta, lang: Lang) -> str:
    """'3 ngày 4 giờ' / '3 d 4 h'."""
    hours = int(d.total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    if lang == "vi":
        return f"{days} ngày {hours} giờ" if days else f"{hours} giờ"
    return f"{days} d {hours} h" if days else f"{hours} h"


def interval(every: timedelta, lang: Lang) -> str:
    s = int(every.total_seconds())
    for size, vi, en in ((30 * 86400, "tháng", "month"), (7 * 86400, "tuần", "week"), (86400, "ngày", "day"),
                         (3600, "giờ", "hour"), (60, "phút", "minute")):
        if s % size == 0:
            n = s // size
            return f"{n} {vi}" if lang == "vi" else f"{n} {en}{'s' if n > 1 else ''}"
    return f"{s} s"
