"""The `reports` table: stored monthly reports (PDF and XLSX in the row), and the lock that
lets one `ioc serve` node of several make the scheduled ones.

Reading a file back checks its SHA-256 against the one stored with it: a report whose bytes
changed is refused, never handed out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import asyncpg

from ioc.core.storage import audit

Format = Literal["pdf", "xlsx"]
# pg_advisory_lock's first key: "ioc report" (any constant; the second key names the month)
_LOCK_CLASS = 0x10C_4E9


class CorruptReport(RuntimeError):
    """A stored file does not match its checksum."""


@dataclass(frozen=True)
class ReportKey:
    month: date  # the first day of the month
    area: str
    agency: str | None
    lang: Literal["vi", "en"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_META = ("id, month, area, agency, lang, made_by, made_at, build_ms, octet_length(pdf) AS pdf_bytes, "
         "pdf_sha256, octet_length(xlsx) AS xlsx_bytes, xlsx_sha256")


async def find(conn: asyncpg.Connection, key: ReportKey) -> dict[str, Any] | None:
    r = await conn.fetchrow(
        f"SELECT {_META} FROM reports WHERE month = $1 AND area = $2 AND coalesce(agency, '') = coalesce($3, '') "
        "AND lang = $4", key.month, key.area, key.agency, key.lang)
    return dict(r) if r else None


async def store(conn: asyncpg.Connection, key: ReportKey, *, pdf: bytes, xlsx: bytes, made_by: str,
                build_ms: int, replace: bool) -> tuple[dict[str, Any], bool]:
    """Keep a made report; returns (its row, whether this call stored it). With `replace`
    (a report asked for again) the files are replaced under the same id; without (the
    schedule) an existing report wins and nothing changes."""
    on_conflict = ("DO UPDATE SET made_by = EXCLUDED.made_by, made_at = now(), build_ms = EXCLUDED.build_ms, "
                   "pdf = EXCLUDED.pdf, pdf_sha256 = EXCLUDED.pdf_sha256, xlsx = EXCLUDED.xlsx, "
                   "xlsx_sha256 = EXCLUDED.xlsx_sha256") if replace else "DO NOTHING"
    async with conn.transaction():
        r = await conn.fetchrow(
            f"""INSERT INTO reports (month, area, agency, lang, made_by, build_ms, pdf, pdf_sha256, xlsx, xlsx_sha256)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                ON CONFLICT (month, area, coalesce(agency, ''), lang) {on_conflict}
                RETURNING {_META}""",
            key.month, key.area, key.agency, key.lang, made_by, build_ms, pdf, sha256(pdf), xlsx, sha256(xlsx))
        if r is None:
            found = await find(conn, key)
            assert found is not None  # the conflicting row: reports are never deleted
            return found, False
        await audit.record(conn, made_by, "report.made", f"report/{r['id']}",
                           {"month": key.month.isoformat(), "area": key.area, "agency": key.agency,
                            "lang": key.lang, "pdf_sha256": r["pdf_sha256"], "xlsx_sha256": r["xlsx_sha256"]})
    return dict(r), True


async def listing(conn: asyncpg.Connection, *, agency: str | None, month: date | None,
                  limit: int) -> list[dict[str, Any]]:
    """Newest month first; for an agency (`agency`), only its own reports."""
    rows = await conn.fetch(
        f"""SELECT {_META} FROM reports
             WHERE ($1::text IS NULL OR agency = $1) AND ($2::date IS NULL OR month = $2)
             ORDER BY month DESC, area, agency NULLS FIRST, lang LIMIT $3""", agency, month, limit)
    return [dict(r) for r in rows]


async def file(conn: asyncpg.Connection, report_id: int, fmt: Format) -> tuple[dict[str, Any], bytes] | None:
    """(metadata, the file's bytes), None if there is no such report; CorruptReport if the
    bytes do not match the checksum stored with them."""
    column = {"pdf": "pdf", "xlsx": "xlsx"}[fmt]
    r = await conn.fetchrow(f"SELECT {_META}, {column} AS data FROM reports WHERE id = $1", report_id)
    if r is None:
        return None
    meta = {k: r[k] for k in r.keys() if k != "data"}
    data = bytes(r["data"])
    if sha256(data) != meta[f"{fmt}_sha256"]:
        raise CorruptReport(f"report {report_id}: the stored {fmt} does not match its checksum")
    return meta, data


async def try_lock(conn: asyncpg.Connection, key: ReportKey) -> bool:
    """Take the session lock for making this report, if no other node holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", _LOCK_CLASS, _lock_name(key)))


async def unlock(conn: asyncpg.Connection, key: ReportKey) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", _LOCK_CLASS, _lock_name(key))


def _lock_name(key: ReportKey) -> str:
    return f"{key.month.isoformat()}/{key.area}/{key.agency or ''}/{key.lang}"
