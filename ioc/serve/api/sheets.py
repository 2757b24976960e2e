"""Agencies' spreadsheets (CSV, XLSX) in the documented template, turned into MQTT payload items.

This reads the file's form only: columns, cell types, no formulas, macros or merged cells,
sizes. What a reading means (a known KPI of the agency's sector, a known area, the range,
the time window, idempotency) is the ingest's validation, reached through `relay`: a file
has one validation, the MQTT path's. A file with any error of form is refused whole, each
error naming its row and column, and nothing is published, so nothing stored changes.

XLSX is read with openpyxl in read-only mode without evaluating anything: a formula is an
error (the clerk pastes values), a macro-enabled workbook is refused before it is opened,
and the archive's unpacked size is bounded before any XML is parsed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterator
from zoneinfo import ZoneInfo

#: the template's columns, in order; `period` (YYYY-MM or YYYY-MM-DD) or `ts` (ISO 8601
#: with an offset) gives the time; numerator/denominator are for ratio KPIs
COLUMNS = ("kpi", "area", "period", "ts", "value", "numerator", "denominator", "rev", "msg_id")
REQUIRED = ("kpi", "area", "value")
MAX_ROWS = 10_000
MAX_BYTES = 5 * 1024 * 1024
MAX_UNPACKED_BYTES = 24 * 1024 * 1024  # 10,000 rows of the template unpack to about 4 MiB
MAX_ERRORS = 50
_PERIOD = re.compile(r"(\d{4})-(\d{2})(?:-(\d{2}))?")
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_MERGE = re.compile(rb"<(?:\w+:)?mergeCell\b[^>]*\bref=\"([A-Z]+\d+(?::[A-Z]+\d+)?)\"")


class SheetError(Exception):
    """The file is refused whole; `errors` name the row and column of each problem."""

    def __init__(self, errors: list[str], *, too_large: bool = False) -> None:
        super().__init__("; ".join(errors[:3]))
        self.errors = errors
        self.too_large = too_large


@dataclass(frozen=True)
class SheetRow:
    row: int  # the spreadsheet's row number (the header is row 1)
    item: dict[str, Any]  # one reading as the MQTT contract has it


@dataclass(frozen=True)
class Sheet:
    rows: list[SheetRow]
    skipped: list[int]  # rows with a KPI and area but no value: nothing to report there


def read_upload(filename: str, data: bytes, agency: str, tz: str) -> Sheet:
    """The readings of an uploaded file, or SheetError; the kind comes from the file name."""
    if len(data) > MAX_BYTES:
        raise SheetError([f"the file is {len(data):,} bytes; the limit is {MAX_BYTES:,}: split it"], too_large=True)
    name = filename.lower()
    if name.endswith((".xlsm", ".xltm", ".xlsb", ".xls")):
        raise SheetError([f"{filename!r}: macro-enabled or legacy Excel files are not accepted; "
                          "save as .xlsx (Excel Workbook) or .csv"])
    if name.endswith(".xlsx"):
        cells = _xlsx_cells(data)
    elif name.endswith(".csv"):
        cells = _csv_cells(data)
    else:
        raise SheetError([f"{filename!r}: upload a .csv or .xlsx file in the template"])
    return _rows(cells, agency, ZoneInfo(tz))


# -- reading the cells ---------------------------------------------------------------------
Cell = tuple[Any, str]  # (value, kind): kind "s" text, "n" number, "d" date, "b" boolean, "f" formula, "e" error


def _csv_cells(data: bytes) -> Iterator[list[Cell]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SheetError([f"row {line}: the file is not UTF-8 text; save it as CSV UTF-8"]) from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # an unclosed quote, a field past the csv module's limit
            raise SheetError([f"row {reader.line_num}: the CSV cannot be read ({exc})"]) from None
        yield [(v.strip(), "s") for v in record]


def _xlsx_cells(data: bytes) -> Iterator[list[Cell]]:
    import openpyxl  # only for uploads: the API starts without loading it

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError):
        raise SheetError(["the file is not an XLSX workbook (not a valid zip archive)"]) from None
    names = [i.filename for i in infos]
    if any(n.lower().endswith("vbaproject.bin") for n in names):
        raise SheetError(["the workbook contains macros (vbaProject.bin): save it as .xlsx without macros"])
    unpacked = sum(i.file_size for i in infos)
    if unpacked > MAX_UNPACKED_BYTES:
        raise SheetError([f"the workbook unpacks to {unpacked:,} bytes; the limit is {MAX_UNPACKED_BYTES:,}"],
                         too_large=True)
    try:
        types = archive.read("[Content_Types].xml")
    except KeyError:
        raise SheetError(["the file is not an XLSX workbook ([Content_Types].xml is missing)"]) from None
    if b"macroEnabled" in types:
        raise SheetError(["the workbook is macro-enabled: save it as .xlsx (Excel Workbook)"])
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False, keep_links=False)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise SheetError([f"the XLSX workbook cannot be read: {str(exc)[:200]}"]) from None
    try:
        sheet = book.worksheets[0]
        merged = _merged_ranges(archive, sheet)
        if merged:
            raise SheetError([f"merged cells {ref} (row {re.sub('[A-Z]', '', ref.split(':')[0])}): "
                              "unmerge them, one value per cell" for ref in merged[:MAX_ERRORS]])
        for row in sheet.iter_rows():
            yield [(c.value, c.data_type) for c in row]
    finally:
        book.close()


def _merged_ranges(archive: zipfile.ZipFile, sheet: Any) -> list[str]:
    """Merged ranges of the sheet read (read-only worksheets do not expose them)."""
    path = getattr(sheet, "_worksheet_path", None) or "xl/worksheets/sheet1.xml"
    path = path.lstrip("/")
    try:
        xml = archive.read(path)
    except KeyError:
        return []
    return [m.decode() for m in _MERGE.findall(xml)]


# -- from cells to readings -------------------------------------------------------------------
def _letter(col: int) -> str:
    out = ""
    col += 1
    while col:
        col, rem = divmod(col - 1, 26)
        out = chr(65 + rem) + out
    return out


def _rows(cells: Iterator[list[Cell]], agency: str, tz: ZoneInfo) -> Sheet:
    errors: list[str] = []
    header: dict[int, str] | None = None
    rows: list[SheetRow] = []
    skipped: list[int] = []
    count = 0
    for number, record in enumerate(cells, start=1):
        if all(v is None or v == "" for v, _ in record):
            continue
        if header is None:
            header = _header(number, record, errors)
            if errors:
                raise SheetError(errors)
            continue
        count += 1
        if count > MAX_ROWS:
            raise SheetError([f"row {number}: more than {MAX_ROWS:,} rows of readings; split the file "
                              f"(one file per month, or per sector)"])
        values: dict[str, Any] = {}
        for col, (value, kind) in enumerate(record):
            name = header.get(col)
            where = f"row {number}, column {_letter(col)}"
            if name is None:
                if value not in (None, ""):
                    errors.append(f"{where}: a value under no column name; put it in a named column or delete it")
                continue
            where += f" ({name})"
            if kind == "f":
                errors.append(f"{where}: a formula ({str(value)[:40]}); paste the value instead")
                continue
            if kind == "e":
                errors.append(f"{where}: an error value ({str(value)[:20]})")
                continue
            if value is not None and value != "":
                values[name] = (value, kind, where)
        if "value" not in values and "kpi" in values:
            skipped.append(number)
            continue
        item = _item(number, values, errors, agency, tz, header)
        if item is not None:
            rows.append(SheetRow(number, item))
        if len(errors) >= MAX_ERRORS:
            break
    if header is None:
        errors.append("row 1: the file is empty; use the template (first row: " + ", ".join(COLUMNS) + ")")
    if errors:
        raise SheetError(errors[:MAX_ERRORS])
    if not rows:
        raise SheetError(["no readings: every row's value is empty"])
    return Sheet(rows, skipped)


def _header(number: int, record: list[Cell], errors: list[str]) -> dict[int, str]:
    header: dict[int, str] = {}
    for col, (value, kind) in enumerate(record):
        if value is None or value == "":
            continue
        name = str(value).strip().lower()
        where = f"row {number}, column {_letter(col)}"
        if kind == "f" or name not in COLUMNS:
            errors.append(f"{where}: unknown column {str(value)[:40]!r}; the template's columns are " + ", ".join(COLUMNS))
        elif name in header.values():
            errors.append(f"{where}: column {name!r} appears twice")
        else:
            header[col] = name
    names = set(header.values())
    for needed in REQUIRED:
        if needed not in names:
            errors.append(f"row {number}: the column {needed!r} is missing; the template's columns are " + ", ".join(COLUMNS))
    if "period" not in names and "ts" not in names:
        errors.append(f"row {number}: a 'period' (YYYY-MM) or 'ts' column is needed")
    if "period" in names and "ts" in names:
        errors.append(f"row {number}: give either 'period' or 'ts', not both")
    return header


def _item(number: int, values: dict[str, tuple[Any, str, str]], errors: list[str], agency: str, tz: ZoneInfo,
          header: dict[int, str]) -> dict[str, Any] | None:
    before = len(errors)
    item: dict[str, Any] = {}
    for name in ("kpi", "area"):
        if name not in values:
            errors.append(f"row {number}, column {_column_of(header, name)} ({name}): missing")
            continue
        value, kind, where = values[name]
        if kind == "n" and not isinstance(value, bool) and isinstance(value, int | float) and float(value).is_integer():
            item[name] = str(int(value))  # an area code typed as a number
        elif kind == "s" and isinstance(value, str):
            item[name] = value.strip()
        else:
            errors.append(f"{where}: expected text, got {_shown(value)}")
    for name in ("value", "numerator", "denominator"):
        if name in values:
            number_value = _number(*values[name], errors)
            if number_value is not None:
                item[name] = number_value
    if "rev" in values:
        value, kind, where = values["rev"]
        rev = _number(value, kind, where, errors)
        if rev is not None:
            if not (isinstance(rev, int) and rev >= 0):
                errors.append(f"{where}: rev must be a whole number 0 or more, got {_shown(value)}")
            else:
                item["rev"] = rev
    if "period" in values:
        ts = _period(*values["period"], tz, errors)
        if ts is not None:
            item["ts"] = ts
    elif "ts" in values:
        value, kind, where = values["ts"]
        if isinstance(value, datetime):
            item["ts"] = (value if value.tzinfo else value.replace(tzinfo=tz)).isoformat()
        elif isinstance(value, str):
            item["ts"] = value.strip()  # the ingest checks it, as it checks an MQTT message's
        else:
            errors.append(f"{where}: expected an ISO 8601 time such as 2026-11-01T00:00:00+07:00, got {_shown(value)}")
    else:
        errors.append(f"row {number}: the period is missing")
    if "msg_id" in values:
        item["msg_id"] = str(values["msg_id"][0]).strip()
    if len(errors) > before:
        return None
    if "msg_id" not in item:
        # the same row uploaded twice carries the same id: a replay, not a new message
        key = "|".join(str(item.get(k)) for k in ("kpi", "area", "ts", "value", "numerator", "denominator", "rev"))
        item["msg_id"] = "sheet-" + hashlib.sha256(f"{agency}|{key}".encode()).hexdigest()[:24]
    return item


def _column_of(header: dict[int, str], name: str) -> str:
    return next((_letter(c) for c, n in header.items() if n == name), "?")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any, kind: str, where: str, errors: list[str]) -> int | float | None:
    if isinstance(value, bool) or kind == "b":
        errors.append(f"{where}: expected a number, got a TRUE/FALSE cell")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number: int | float = value
    elif isinstance(value, str):
        text = value.strip().replace("\u00a0", "").replace(" ", "")
        if _INTEGER.fullmatch(text):
            number = int(text)
        elif _NUMBER.fullmatch(text):
            number = float(text)
        else:
            errors.append(f"{where}: {_shown(value)} is not a number (use a point for decimals, no thousands separators)")
            return None
    else:
        errors.append(f"{where}: expected a number, got {_shown(value)}")
        return None
    if isinstance(number, float):
        if not math.isfinite(number):
            errors.append(f"{where}: the number must be finite")
            return None
        if number.is_integer() and abs(number) < 2**53:
            number = int(number)
    return number


def _period(value: Any, kind: str, where: str, tz: ZoneInfo, errors: list[str]) -> str | None:
    day: date | None = None
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str) and (m := _PERIOD.fullmatch(value.strip())):
        try:
            day = date(int(m[1]), int(m[2]), int(m[3] or 1))
        except ValueError:
            day = None
    if day is None:
        errors.append(f"{where}: expected a month as YYYY-MM (or a date YYYY-MM-DD), got {_shown(value)}")
        return None
    return datetime(day.year, day.month, day.day, tzinfo=tz).isoformat()


def template_rows(kpis: list[str], areas: list[str], period: str) -> list[list[Any]]:
    """The template's rows: the header, then each of the agency's KPIs for each area, value empty."""
    rows: list[list[Any]] = [["kpi", "area", "period", "value", "numerator", "denominator", "rev", "msg_id"]]
    rows.extend([k, a, period, None, None, None, None, None] for k in kpis for a in areas)
    return rows


def template_csv(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # the BOM lets Excel read Vietnamese names right


def template_xlsx(rows: list[list[Any]], guide: list[list[Any]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("readings")
    for row in rows:
        sheet.append(row)
    info = book.create_sheet("guide")
    for row in guide:
        info.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
