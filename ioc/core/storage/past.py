"""The wall as it was at a past instant: its state then, KPI values as known then, open alerts.

"As known then" is the time machine's rule: a reading counts at instant T only if it had
arrived by T (`received_at <= T`), so a correction received after T does not show at T. The
revision a correction replaced is in `reading_revisions` (kept by the correction trigger,
migration 0012); the current row is in `readings`. The value at T is the newest reading (by
`ts`, at or before T) among every revision that had arrived by T, and for that `ts` the
highest revision that had.

Every instant is a `timestamptz`: the caller passes aware datetimes; time zones are only
for showing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

# newest ts first, then newest revision: the first row is the value known at $3
_KNOWN_AT = """
    (SELECT ts, value, revision, received_at, agency FROM readings
      WHERE kpi = $1 AND area = $2 AND ts <= $3 AND received_at <= $3
      ORDER BY ts DESC LIMIT $4)
    UNION ALL
    (SELECT ts, value, revision, received_at, agency FROM reading_revisions
      WHERE kpi = $1 AND area = $2 AND ts <= $3 AND received_at <= $3
      ORDER BY ts DESC, revision DESC LIMIT $4)
    ORDER BY ts DESC, revision DESC
"""


async def state_at(conn: asyncpg.Connection, at: datetime) -> dict[str, Any] | None:
    """The layout and pins the screens showed at `at` (the last change whose `at` had come),
    or, before any recorded change, the oldest one with `"before_history": True`."""
    row = await conn.fetchrow(
        "SELECT version, at, layout, layout_doc, pins, changed_by FROM wall_history WHERE at <= $1 "
        "ORDER BY at DESC, version DESC LIMIT 1", at)
    before = False
    if row is None:
        row = await conn.fetchrow("SELECT version, at, layout, layout_doc, pins, changed_by FROM wall_history "
                                  "ORDER BY at, version LIMIT 1")
        before = row is not None
    if row is None:
        return None
    return {"version": row["version"], "at": row["at"], "layout": row["layout"],
            "layout_doc": orjson.loads(row["layout_doc"]) if row["layout_doc"] is not None else None,
            "pins": orjson.loads(row["pins"]), "changed_by": row["changed_by"], "before_history": before}


async def reading_known_at(conn: asyncpg.Connection, kpi: str, area: str, at: datetime) -> dict[str, Any] | None:
    """The reading a KPI tile showed at `at` and the one before it (for the trend), or None."""
    rows = await conn.fetch(_KNOWN_AT, kpi, area, at, 2)
    if not rows:
        return None
    first = rows[0]
    older = [r for r in rows if r["ts"] < first["ts"]]
    if not older:  # the previous ts may have more revisions than the two fetched
        more = await conn.fetch(_KNOWN_AT.replace("ts <= $3", "ts < $5"), kpi, area, at, 1, first["ts"])
        older = list(more)
    return {"ts": first["ts"], "value": first["value"], "revision": first["revision"],
            "received_at": first["received_at"], "agency": first["agency"],
            "previous": older[0]["value"] if older else None}


_KPI_CHANGES = ("kpi.created", "kpi.updated")


async def kpi_definitions_at(conn: asyncpg.Connection, kpis: list[str],
                             at: datetime) -> dict[str, dict[str, Any] | None]:
    """The definitions (names, unit, target, ...) of the indicators among `kpis` in force at
    `at`, from the audit log, which keeps each create and change of an indicator with its
    whole document and the one it replaced (`before`): the last one recorded at or before
    `at`, else what the first change after `at` replaced; None when that is not known (a
    change recorded before `before` was kept: the caller takes it as shipped) or there was
    none (it did not exist yet). An indicator the log never saw change is absent: it is as
    it shipped, which is as it is now."""
    rows = await conn.fetch(
        """SELECT k.id,
                  (SELECT details FROM audit_log WHERE subject = k.id AND action = ANY($3::text[]) AND at <= $2
                    ORDER BY at DESC, id DESC LIMIT 1) AS then,
                  (SELECT details -> 'before' FROM audit_log WHERE subject = k.id AND action = ANY($3::text[])
                      AND at > $2 ORDER BY at, id LIMIT 1) AS replaced
             FROM unnest($1::text[]) AS k(id)
            WHERE EXISTS (SELECT 1 FROM audit_log WHERE subject = k.id AND action = ANY($3::text[]))""",
        sorted(set(kpis)), at, list(_KPI_CHANGES))
    return {r["id"]: _doc(r["then"]) or _doc(r["replaced"]) for r in rows}


def _doc(v: Any) -> dict[str, Any] | None:
    """A jsonb document as asyncpg gives it (text), or None for SQL or JSON null."""
    doc = orjson.loads(v) if isinstance(v, (str, bytes)) else v
    return dict(doc) if isinstance(doc, dict) else None
