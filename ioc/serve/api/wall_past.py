"""The layout the wall showed at a past instant, shared by the time machine's routes and the
screens' access to recordings (a screen may play only what its wall showed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ioc.core.storage import past
from ioc.serve.wall.hub import Hub
from ioc.serve.wall.layout import Layout, LayoutError, parse_layout


async def layout_at(conn: asyncpg.Connection, hub: Hub, at: datetime) -> tuple[Layout, dict[str, Any]]:
    """The layout in force at `at`, with the pins in force then, and what the history says
    about it. Before the first recorded change the wall showed its default layout (the
    history starts with migration 0012: `before_history` says so). A change recorded
    without its document (carried over by the migration) uses the layout as it is now."""
    state = await past.state_at(conn, at)
    if state is None:
        return hub.default, {"version": None, "since": None, "layout": hub.default.id, "pins": {},
                             "changed_by": None, "before_history": True}
    base: Layout | None = None
    if state["layout_doc"] is not None:
        try:
            base = parse_layout(state["layout_doc"], where=f"layout history v{state['version']}")
        except LayoutError:
            base = None
    base = base or hub.find_layout(state["layout"]) or hub.default
    info = {"version": state["version"], "since": state["at"].isoformat(), "layout": state["layout"],
            "pins": state["pins"], "changed_by": state["changed_by"], "before_history": False,
            "document": "as it was" if state["layout_doc"] is not None else "as it is now"}
    return base.with_pins(state["pins"]), info


def cameras_of(layout: Layout) -> set[str]:
    return {t.camera for t in layout.tiles if t.kind == "camera" and t.camera}
