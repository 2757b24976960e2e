"""Saved layouts and the wall's current state in PostgreSQL.

PostgreSQL holds the truth, so a restarted API node puts the wall back as the operators
left it; the broker (`ioc/v1/wall/state`, retained) carries each change to every node.
The version is bumped in the same statement that changes the state, so two operators
switching at once give two versions, never one state with two meanings.

Layouts are stored and returned as JSON documents: the wall service owns their model and
parses them (storage must not import a service).
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import orjson

from ioc.core.contracts.wall import Replay, WallState
from ioc.core.storage import audit


async def saved_layout_docs(conn: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    """Layout id -> its saved document, unparsed."""
    rows = await conn.fetch("SELECT id, doc FROM wall_layouts ORDER BY id")
    return {r["id"]: orjson.loads(r["doc"]) for r in rows}


async def save_layout(conn: asyncpg.Connection, layout_id: str, doc: dict[str, Any], actor: str) -> None:
    """Insert or replace a layout document (already validated by the caller), audited."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO wall_layouts (id, doc, updated_by) VALUES ($1, $2::jsonb, $3) "
            "ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, updated_by = EXCLUDED.updated_by, updated_at = now()",
            layout_id, orjson.dumps(doc).decode(), actor,
        )
        await audit.record(conn, actor, "wall.layout_saved", layout_id, {"tiles": len(doc.get("tiles", ()))})


async def delete_layout(conn: asyncpg.Connection, layout_id: str, actor: str) -> bool:
    async with conn.transaction():
        gone = await conn.fetchval("DELETE FROM wall_layouts WHERE id = $1 RETURNING id", layout_id)
        if gone:
            await audit.record(conn, actor, "wall.layout_deleted", layout_id, {})
    return gone is not None


def _state(row: asyncpg.Record) -> WallState:
    replay = orjson.loads(row["replay"]) if row["replay"] is not None else None
    return WallState(row["layout"], row["version"], row["at"], orjson.loads(row["pins"]),
                     Replay.from_dict(replay) if replay else None)


async def current_state(conn: asyncpg.Connection) -> WallState | None:
    row = await conn.fetchrow("SELECT layout, version, at, pins, replay FROM wall_state")
    return None if row is None else _state(row)


async def change_replay(conn: asyncpg.Connection, replay: Replay | None, *, actor: str, default_layout: str,
                        action: str, details: dict[str, Any]) -> WallState:
    """Put the screens into a replay of the past (or change it), or back to live (None); the
    layout and pins stay as they are. `replay.at` (or, back to live, the state's `at`) is
    when every screen changes. Audited with who did it."""
    at = replay.at if replay is not None else time.time() + float(details.get("delay_s", 0))
    async with conn.transaction():
        row = await conn.fetchrow("SELECT layout, version, pins FROM wall_state FOR UPDATE")
        version = (row["version"] if row else 0) + 1
        layout = row["layout"] if row else default_layout
        doc = orjson.dumps(replay.as_dict()).decode() if replay is not None else None
        await conn.execute(
            "INSERT INTO wall_state (one, layout, version, at, pins, replay, updated_by) "
            "VALUES (true, $1, $2, $3, '{}'::jsonb, $4::jsonb, $5) "
            "ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version, at = EXCLUDED.at, replay = EXCLUDED.replay, "
            "updated_by = EXCLUDED.updated_by, updated_at = now()", layout, version, at, doc, actor)
        await audit.record(conn, actor, action, "wall", {"version": version, **details})
        row = await conn.fetchrow("SELECT layout, version, at, pins, replay FROM wall_state")
    return _state(row)


async def change_state(conn: asyncpg.Connection, *, layout: str | None, pins: dict[str, str | None] | None,
                       delay_s: float, actor: str, default_layout: str,
                       layout_doc: dict[str, Any] | None = None) -> WallState:
    """Switch layout (pins are dropped with it) and/or change pins; returns the new state.

    `layout_doc` is the document of the layout shown from now on: it goes, with the pins and
    the instant the screens change, into `wall_history`, which the time machine reads."""
    at = time.time() + delay_s
    async with conn.transaction():
        row = await conn.fetchrow("SELECT layout, version, pins, replay FROM wall_state FOR UPDATE")
        cur_layout = row["layout"] if row else default_layout
        cur_pins: dict[str, str] = orjson.loads(row["pins"]) if row else {}
        version = (row["version"] if row else 0) + 1
        new_layout = layout or cur_layout
        new_pins = {} if layout and layout != cur_layout else dict(cur_pins)
        for tile, cam in (pins or {}).items():
            if cam is None:
                new_pins.pop(tile, None)
            else:
                new_pins[tile] = cam
        pins_doc = orjson.dumps(new_pins).decode()
        await conn.execute(
            "INSERT INTO wall_state (one, layout, version, at, pins, updated_by) VALUES (true, $1, $2, $3, $4::jsonb, $5) "
            "ON CONFLICT (one) DO UPDATE SET layout = EXCLUDED.layout, version = EXCLUDED.version, at = EXCLUDED.at, "
            "pins = EXCLUDED.pins, updated_by = EXCLUDED.updated_by, updated_at = now()",
            new_layout, version, at, pins_doc, actor,
        )
        await conn.execute(
            "INSERT INTO wall_history (version, at, layout, layout_doc, pins, changed_by) "
            "VALUES ($1, to_timestamp($2), $3, $4::jsonb, $5::jsonb, $6)",
            version, at, new_layout, orjson.dumps(layout_doc).decode() if layout_doc is not None else None,
            pins_doc, actor)
        await audit.record(conn, actor, "wall.switched" if layout else "wall.pinned", new_layout,
                           {"version": version, "pins": new_pins})
    replay = orjson.loads(row["replay"]) if row is not None and row["replay"] is not None else None
    return WallState(new_layout, version, at, new_pins, Replay.from_dict(replay) if replay else None)
