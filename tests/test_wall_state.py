"""The hub's own bookkeeping, without sockets: layouts, screens' regions, stale camera status."""

from __future__ import annotations

import orjson
import pytest

from dashboards import LAYOUTS
from ioc.serve.wall import hub as hub_module
from ioc.serve.wall.layout import LayoutError, load_presets, parse_layout


def test_presets_load_and_every_screen_has_tiles() -> None:
    presets = load_presets(LAYOUTS)
    assert {"overview", "phu-ly-cameras", "tthc", "env-traffic"} <= set(presets)
    for layout in presets.values():
        assert all(layout.tiles_for(n) for n in range(1, 10)), layout.id
    cams = presets["phu-ly-cameras"]
    assert sorted(t.camera or "" for t in cams.tiles if t.kind == "camera") == [f"pl-{i:02d}" for i in range(1, 11)]
    assert presets["overview"].region(5).model_dump() == {"x": 4, "y": 4, "w": 4, "h": 4}
    # a camera tile has its picture's shape (16:9, as every screen and cell is): no black bars
    for layout in presets.values():
        for t in layout.tiles:
            if t.kind == "camera":
                aspect = (t.w * 5760 / layout.cols) / (t.h * 3240 / layout.rows)
                assert abs(aspect / (16 / 9) - 1) < 0.2, (layout.id, t.id, round(aspect, 2))
    # a tile spanning screens 7 and 8 is drawn by both, and only by them
    assert [n for n in range(1, 10) if any(t.id == "c-received" for t in presets["overview"].tiles_for(n))] == [7, 8]


@pytest.mark.parametrize("change, words", [
    ({"cols": 10}, "divide by 3"),
    ({"tiles": [{"id": "a", "kind": "kpi", "x": 0, "y": 0, "w": 1, "h": 1}]}, "needs `kpi`"),
    ({"tiles": [{"id": "a", "kind": "clock", "x": 11, "y": 0, "w": 2, "h": 1}]}, "runs off"),
    ({"tiles": [{"id": "a", "kind": "clock", "x": 0, "y": 0, "w": 1, "h": 1}] * 2}, "used twice"),
    ({"tiles": [{"id": "a", "kind": "video", "x": 0, "y": 0, "w": 1, "h": 1}]}, "kind"),
])
def test_bad_layouts_are_refused_naming_what_is_wrong(change: dict[str, object], words: str) -> None:
    doc = {"id": "x", "name_vi": "X", "cols": 12, "rows": 12, "tiles": [], **change}
    with pytest.raises(LayoutError, match=words):
        parse_layout(doc)


def test_a_silent_camera_service_does_not_leave_cameras_healthy() -> None:
    hub = hub_module.Hub(load_presets(LAYOUTS))
    hub.on_message("ioc/v1/live/camera/pl-01/status", orjson.dumps(
        {"camera": "pl-01", "state": "online", "healthy": True, "flags": {}}), 0, 0, True, 1)
    hub.tick()
    assert orjson.loads(hub.last["cam-main"][0])["data"]["healthy"] is True
    hub.cam_heard["pl-01"] -= hub_module.STATUS_SILENT_S + 1  # as if 31 s passed without a status
    hub.tick()
    data = orjson.loads(hub.last["cam-main"][0])["data"]
    assert data["online"] is False and data["healthy"] is False and "camera service" in data["reason"]
    summary = orjson.loads(hub.last["cam-health"][0])["data"]
    # every camera the overview shows is offline (pl-01 gone silent, the others never heard)
    assert summary["online"] == 0 and summary["offline"] == summary["total"] >= 1
    assert next(c for c in summary["cameras"] if c["id"] == "pl-01")["state"] == "offline"


def test_a_chart_message_carries_the_live_reading() -> None:
    """Pages put the reading into their series themselves (PROTOCOL.md, "chart")."""
    from ioc.core.contracts import kpi, topics

    from ioc.serve.wall.tiledata import chart_data

    hub = hub_module.Hub(load_presets(LAYOUTS))
    before = chart_data(next(t for t in hub.layout.tiles if t.id == "c-aqi"), None)
    assert (before["ts"], before["value"], before["rev"]) == (None, None, 0)
    hub.on_message(topics.live_kpi("mt.aqi", "13285"),
                   kpi.encode_live("mt.aqi", "13285", "2026-11-02T08:15:00+07:00", 87, 1, "stnmt", 1793600000.5), 0, 1, True, 1)
    data = orjson.loads(hub.last["c-aqi"][0])["data"]
    assert data == {"kpi": "mt.aqi", "area": "13285", "bucket": "1h", "hours": 48, "changed_at": 1793600000.5,
                    "ts": "2026-11-02T08:15:00+07:00", "value": 87.0, "rev": 1}


def test_screens_in_a_replay_play_no_live_video_and_may_read_the_past_until_it_ends() -> None:
    """From a replay's start the screens play recordings, so the hub wants no live video for
    them (the console's mini-wall keeps its own); after "back to live" the screens may still
    read the past until the announced switch back, plus a grace."""
    import time

    from ioc.core.contracts.wall import Replay, WallState

    hub = hub_module.Hub(load_presets(LAYOUTS))
    layout = hub.layouts()["overview"]
    screen = next(n for n in range(1, 10) if any(t.kind == "camera" for t in layout.tiles_for(n)))
    wall_screen = hub_module.Client(None, "screen", screen, "screen-x", "test")  # type: ignore[arg-type]
    console = hub_module.Client(None, "console", None, "op", "test")  # type: ignore[arg-type]
    now = time.time()
    assert hub.wanted_streams(wall_screen) and not hub.replay_open()
    hub.apply_state(WallState("overview", 1, now, {}, Replay(now - 600, now + 60, 1.0)))  # announced, not begun
    assert hub.wanted_streams(wall_screen) and hub.replay_open()
    hub.apply_state(WallState("overview", 2, now, {}, Replay(now - 600, now - 0.1, 4.0)))
    assert hub.wanted_streams(wall_screen) == {} and hub.wanted_streams(console)
    hub.apply_state(WallState("overview", 3, now + 1.0, {}, None))  # back to live, announced 1 s ahead
    assert hub.wanted_streams(wall_screen) and hub.replay_open()
    hub._replay_until = time.time() - 0.01  # as if the grace had passed
    assert not hub.replay_open()
