"""The wall hub: live messages from the broker in, the tiles each client shows out.

Fan-out is the whole job, so it is built around two rules:

* A message for a tile is built once, as a whole websocket frame, and that frame is written
  as is to every client that shows the tile (a synchronous write per connection, no task
  and no copy per delivery).
* Latest wins per tile per client. A client whose socket buffer is over its limit gets no
  more writes; its newest message per tile waits in a dict (one slot per tile, so it
  cannot grow) and a flusher sends those when the socket drains. A slow tablet therefore
  skips stale pictures and never delays anyone else; one that stays stuck is closed.

Live video (`video_frame`, IOCV) follows the same two rules, except that a video frame
cannot replace another: latest-wins becomes skip-to-keyframe. Each IOCV message is written
unchanged, as one binary websocket frame built once, to the clients that play its camera's
stream; a client over its buffer limit gets none of that stream until the next keyframe.
The hub keeps each stream's current group of pictures (from its last keyframe) so that a
client that joins, reconnects or switches layout paints at once.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from ioc.core.contracts import camera as camera_contract
from ioc.core.contracts import kpi as kpi_contract
from ioc.core.contracts import tile_frame, topics, video_frame
from ioc.core.contracts import wall_frames as frames
from ioc.core.contracts import wall as wall_contract
from ioc.core.contracts.wall import WallState
from ioc.serve.wall import tiledata
from ioc.serve.wall.layout import Layout, Tile
from ioc.serve.wall.tiledata import KpiMeta

log = logging.getLogger("ioc.wall")
HD_MIN_PIXELS = 961  # tiles wider than this on a screen get the full-screen picture


def tile_stream(tile: Tile, layout: Layout, on_screen: bool) -> str:
    """The picture a camera tile plays, live or recorded: "main" on a wall screen where the
    tile is wider than HD_MIN_PIXELS, else "sub" (tablets and the console: small tiles)."""
    return "main" if on_screen and tile.pixel_width(layout) >= HD_MIN_PIXELS else "sub"


HD_FRESH_S = 5.0  # without an HD picture this recent, HD tiles get the SD one
STUCK_CLOSE_S = 30.0
#: a client's unsent bytes past this many times its buffer limit: it reads nothing while
#: something still writes to it (replies, the library's pongs); closed at the next tick
HARD_CAP_FACTOR = 8
STATUS_SILENT_S = 30.0  # camera services repeat each status every 10 s
VIDEO_FRESH_S = 2.0  # a stream with no frame this recent is not playing: clients take the other
GOP_MAX_FRAMES = 300  # the current group of pictures kept per stream, at most this many frames
GOP_MAX_BYTES = 16 * 1024 * 1024  # ... and bytes; over either, nothing until the next keyframe
GOP_STALE_S = 10.0
REPLAY_GRACE_S = 2.0  # after a replay's announced end, what a screen's last look at the past may take  # a group of pictures older than this is not sent to a joining client

Message = tuple[bytes, bool, bytes]  # (payload, is_text, the websocket frame every client gets)
_OPEN = State.OPEN


def ws_frame(data: bytes, text: bool) -> bytes:
    """`data` as one unfragmented, unmasked websocket frame (RFC 6455 section 5.2), as a server
    sends it. The hub negotiates no extension, so these bytes are what every client gets: built
    once per message rather than once per client (as `websockets.broadcast` does), a fifth to a
    quarter less CPU per delivery (bench/README.md, "bench/wall.py")."""
    n = len(data)
    first = 0x81 if text else 0x82
    if n < 126:
        return struct.pack("!BB", first, n) + data
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + data
    return struct.pack("!BBQ", first, 127, n) + data


def _message(data: bytes, text: bool) -> Message:
    return data, text, ws_frame(data, text)


@dataclass(eq=False)
class Client:
    conn: ServerConnection
    role: str  # screen | tablet | console
    screen: int | None
    user: str
    address: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    since: float = field(default_factory=time.time)
    keys: set[str] = field(default_factory=set)
    pending: dict[str, Message] = field(default_factory=dict)
    flusher: asyncio.Task[None] | None = None
    sent: int = 0
    skipped: int = 0
    video: bool = True  # False: this client asked for pictures only
    video_off: set[str] = field(default_factory=set)  # cameras it asked no video for
    playing: dict[str, str] = field(default_factory=dict)  # camera -> stream it gets now
    awaiting_key: set[tuple[str, str]] = field(default_factory=set)  # (camera, stream) skipped to a keyframe
    video_skipped: int = 0

    def buffered(self) -> int:
        transport = self.conn.transport
        return transport.get_write_buffer_size() if transport is not None else 0


@dataclass(eq=False)
class VideoStream:
    """One camera stream as the hub last heard it: its frames since the last keyframe, each
    already a websocket frame (`gop` empty while waiting for a keyframe), and who plays it."""

    gop: list[bytes] = field(default_factory=list)
    gop_bytes: int = 0
    heard: float = -1e9  # monotonic time of the last frame
    playing: bool = False  # had a frame within VIDEO_FRESH_S at the last look
    clients: set[Client] = field(default_factory=set)


class Hub:
    def __init__(self, presets: dict[str, Layout], *, buffer_limit: int = 512 * 1024,
                 on_camera_event: Callable[[dict[str, Any]], None] | None = None,
                 on_kpi: Callable[[KpiMeta | None, dict[str, Any]], None] | None = None,
                 on_demand_change: Callable[[], None] | None = None) -> None:
        self.presets = presets
        self.on_demand_change = on_demand_change  # what clients show changed: HD or video demand may too
        self.saved: dict[str, Layout] = {}
        self.buffer_limit = buffer_limit
        self.on_camera_event = on_camera_event
        self.on_kpi = on_kpi
        first = presets.get("overview") or next(iter(presets.values()))
        self.default = first  # what a wall never switched shows
        self.state = WallState(first.id, 0, 0.0)
        self.layout = first
        self.clients: set[Client] = set()
        self.subs: dict[str, set[Client]] = {}
        self.last: dict[str, Message] = {}
        self.seq: dict[str, int] = {}
        # what arrived from the broker, kept to build any tile at any time
        self.kpi_meta: dict[str, KpiMeta] = {}
        self.camera_names: dict[str, str] = {}
        self.registry_known = False  # camera_names came from the registry (set_catalogue)
        self.kpi_live: dict[tuple[str, str], dict[str, Any]] = {}
        self.kpi_prev: dict[tuple[str, str], float] = {}
        self.cam_status: dict[str, dict[str, Any]] = {}
        self.cam_heard: dict[str, float] = {}  # when each camera's status last arrived
        self.cam_picture: dict[tuple[str, str], tuple[dict[str, Any], bytes, float]] = {}
        self.alerts: list[dict[str, Any]] = []
        self._by_kpi: dict[tuple[str, str], list[Tile]] = {}
        self._by_camera: dict[str, list[Tile]] = {}
        self._by_kind: dict[str, list[Tile]] = {}
        self._health_dirty = False
        self._map_live: dict[str, dict[str, Any]] = {}  # kpi -> its newest live reading (any area)
        self._map_dirty = False  # map tiles are sent at most once a tick, however many readings came
        self.delivered = 0
        self.skipped = 0
        self.videos: dict[tuple[str, str], VideoStream] = {}
        self.video_delivered = 0
        self.video_skipped = 0
        self._video_bad: set[str] = set()  # cameras whose malformed video was logged once
        self._previous: Layout | None = None  # the layout being left, until the switch's `at`
        self._replaying = False  # screens show a replay now (its `at` has come): no live video for them
        self._replay_until = 0.0  # a replay that ended: its screens show it until the switch back
        self._index()

    # -- layouts ----------------------------------------------------------------------
    def find_layout(self, layout_id: str) -> Layout | None:
        return self.saved.get(layout_id) or self.presets.get(layout_id)

    def layouts(self) -> dict[str, Layout]:
        return {**self.presets, **self.saved}

    def apply_state(self, state: WallState, layout: Layout | None = None) -> bool:
        """Show a new layout (or new pins) from `state.at` on; older versions are ignored."""
        if state.version <= self.state.version:
            return False  # our own switch coming back from the broker, or an old one
        layout = layout or self.find_layout(state.layout)
        if layout is None:
            log.error("wall state names an unknown layout", extra={"layout": state.layout})
            return False
        self._previous = self.layout if state.at > time.time() else None
        if self.state.replay is not None and state.replay is None:
            self._replay_until = state.at + REPLAY_GRACE_S
        self.state = state
        self.layout = layout.with_pins(state.pins)
        self._replaying = self._replay_started()
        self._index()
        self.last.clear()
        self._rebuild_all()
        for c in list(self.clients):
            self._send_layout(c)
            self._send_replay_state(c)
            self._send_current(c)
            self._replay(c)
        self._demand_changed()
        log.info("wall layout", extra={"layout": layout.id, "version": state.version, "clients": len(self.clients)})
        return True

    def replay_open(self) -> bool:
        """Whether the screens show a replay of the past, or may still (back to live is
        announced ahead): while so, screens may read the past and its recordings."""
        return self.state.replay is not None or time.time() < self._replay_until

    def _replay_started(self) -> bool:
        r = self.state.replay
        return r is not None and time.time() >= r.at

    def _send_replay_state(self, c: Client) -> None:
        """Screens and consoles learn whether the wall shows the past (tablets stay live):
        the page changes at `at`, the same instant on every screen, as a layout switch does."""
        if c.role not in ("screen", "console"):
            return
        r = self.state.replay
        past = self.state.past if r is not None and c.role == "screen" else None
        self._write(c, frames.message("replay", replay=r.as_dict() if r else None, version=self.state.version,
                                      at=r.at if r else self.state.at, **({"past": past} if past else {})), True)

    def _demand_changed(self) -> None:
        if self.on_demand_change is not None:
            self.on_demand_change()

    def _index(self) -> None:
        self._by_kpi, self._by_camera, self._by_kind = {}, {}, {}
        for t in self.layout.tiles:
            self._by_kind.setdefault(t.kind, []).append(t)
            if t.kind in ("kpi", "chart"):
                self._by_kpi.setdefault((t.kpi or "", t.area or ""), []).append(t)
            elif t.kind == "ranking":  # any unit's reading may move a ranking
                self._by_kpi.setdefault((t.kpi or "", "*"), []).append(t)
            elif t.kind == "camera" and t.camera:
                self._by_camera.setdefault(t.camera, []).append(t)
        for c in self.clients:
            self._subscribe(c)

    def _keys_for(self, c: Client) -> set[str]:
        tiles = self.layout.tiles_for(c.screen if c.role == "screen" else None)
        keys = {t.id for t in tiles}
        for t in tiles:
            if t.kind == "camera":
                hd = tile_stream(t, self.layout, c.role == "screen") == "main"
                keys.add(f"{t.id}#{'hd' if hd else 'sd'}")
        if c.role == "console":
            keys.add("_screens")
        return keys

    def _subscribe(self, c: Client) -> None:
        for k in c.keys:
            s = self.subs.get(k)
            if s is not None:
                s.discard(c)
        c.keys = self._keys_for(c)
        for k in c.keys:
            self.subs.setdefault(k, set()).add(c)

    # -- clients ----------------------------------------------------------------------
    def add(self, c: Client) -> None:
        self.clients.add(c)
        self._subscribe(c)
        self._write(c, frames.message("welcome", client=c.id, role=c.role, screen=c.screen, now=time.time()), True)
        self._send_layout(c)
        self._send_replay_state(c)
        self._send_current(c)
        self._replay(c)
        self._demand_changed()
        if c.role == "screen":
            self._screens_changed()
        log.info("wall client connected", extra={"client": c.id, "role": c.role, "screen": c.screen,
                                                  "user": c.user, "address": c.address})

    def remove(self, c: Client) -> None:
        if c not in self.clients:
            return
        self.clients.discard(c)
        for k in c.keys:
            s = self.subs.get(k)
            if s is not None:
                s.discard(c)
        for cam, stream in c.playing.items():
            v = self.videos.get((cam, stream))
            if v is not None:
                v.clients.discard(c)
        c.playing.clear()
        if c.flusher is not None:
            c.flusher.cancel()
        self._demand_changed()
        if c.role == "screen":
            self._screens_changed()
        log.info("wall client left", extra={"client": c.id, "role": c.role, "screen": c.screen,
                                            "sent": c.sent, "skipped": c.skipped, "video_skipped": c.video_skipped})

    def set_video(self, c: Client, on: bool, camera: str | None = None) -> None:
        """A client's wish: video (the default) or pictures only, for one camera or all."""
        if camera is None:
            c.video = on
            c.video_off.clear()
        elif on:
            c.video_off.discard(camera)
        else:
            c.video_off.add(camera)
        self._replay(c)
        self._demand_changed()
        log.info("wall client video", extra={"client": c.id, "role": c.role, "screen": c.screen, "user": c.user,
                                             "camera": camera, "on": on})

    def hd_cameras(self) -> frozenset[str]:
        """Cameras that some connected screen shows large: only these need HD tiles."""
        cams = {t.id: t.camera for t in self._by_kind.get("camera", ()) if t.camera}
        return frozenset(cams[k[:-3]] for k, subscribers in self.subs.items()
                         if subscribers and k.endswith("#hd") and k[:-3] in cams)

    def screens(self) -> list[dict[str, Any]]:
        return sorted(({"screen": c.screen, "client": c.id, "address": c.address, "since": c.since, "user": c.user}
                       for c in self.clients if c.role == "screen"), key=lambda s: (s["screen"], s["since"]))

    def _screens_changed(self) -> None:
        self._fanout("_screens", frames.message("screens", screens=self.screens()), True)

    def _send_layout(self, c: Client) -> None:
        region = self.layout.region(c.screen) if c.role == "screen" and c.screen else None
        doc = self.layout.model_dump(mode="json")
        if region is not None:
            doc["tiles"] = [t.model_dump(mode="json") for t in self.layout.tiles_for(c.screen)]
        self._write(c, frames.message("layout", layout=doc, version=self.state.version, at=self.state.at,
                                      region=region.model_dump() if region else None), True)

    def _send_current(self, c: Client) -> None:
        for k in c.keys:
            m = self.last.get(k)
            if m is not None:
                self._offer(c, k, m)
        if c.role == "console":
            self._offer(c, "_screens", _message(frames.message("screens", screens=self.screens()), True))

    # -- delivery ---------------------------------------------------------------------
    def _write(self, c: Client, data: bytes, text: bool) -> None:
        self._send(c, ws_frame(data, text))

    @staticmethod
    def _send(c: Client, frame: bytes) -> bool:
        conn = c.conn
        if conn.protocol.state is not _OPEN:  # closing or closed: nothing more to send
            return False
        conn.transport.write(frame)
        c.sent += 1
        return True

    def _offer(self, c: Client, key: str, m: Message) -> None:
        if c.pending or c.buffered() > self.buffer_limit:
            if key in c.pending:
                c.skipped += 1
                self.skipped += 1
            c.pending[key] = m
            if c.flusher is None:
                c.flusher = asyncio.get_running_loop().create_task(self._flush(c))
        elif self._send(c, m[2]):
            self.delivered += 1

    def _fanout(self, key: str, data: bytes, text: bool) -> None:
        m = _message(data, text)
        frame = m[2]
        if not key.startswith("_"):
            self.last[key] = m
        clients = self.subs.get(key)
        if not clients:
            return
        limit = self.buffer_limit
        sent = 0
        for c in clients:
            conn = c.conn
            if conn.protocol.state is not _OPEN:
                continue
            transport = conn.transport
            if c.pending or transport.get_write_buffer_size() > limit:
                self._offer(c, key, m)
            else:
                transport.write(frame)
                c.sent += 1
                sent += 1
        self.delivered += sent

    async def _flush(self, c: Client) -> None:
        """Send a congested client its newest message per tile once its socket drains."""
        stuck_since = time.monotonic()
        try:
            while c.pending:
                if c.buffered() > self.buffer_limit // 2:
                    if time.monotonic() - stuck_since > STUCK_CLOSE_S:
                        log.warning("wall client too slow, closing", extra={"client": c.id, "role": c.role,
                                                                           "screen": c.screen, "address": c.address})
                        c.pending.clear()
                        await c.conn.close(1008, "client too slow")
                        return
                    await asyncio.sleep(0.02)
                    continue
                stuck_since = time.monotonic()
                key = next(iter(c.pending))
                if self._send(c, c.pending.pop(key)[2]):
                    self.delivered += 1
        finally:
            c.flusher = None

    def _next_seq(self, tile: str) -> int:
        n = self.seq.get(tile, 0) + 1
        self.seq[tile] = n
        return n

    def _emit(self, tile: Tile, data: dict[str, Any]) -> None:
        self._fanout(tile.id, frames.tile_message(tile.id, tile.kind, self._next_seq(tile.id), data), True)

    # -- live video -------------------------------------------------------------------------
    def wanted_streams(self, c: Client) -> dict[str, str]:
        """camera -> the stream this client should play: "main" where a screen shows the
        camera wider than HD_MIN_PIXELS (as HD pictures), else "sub"; tablets and the console
        get "sub". During an announced switch, the layout being left still plays until `at`."""
        if not c.video or (self._replaying and c.role == "screen"):
            return {}  # a screen in replay plays recordings, not live video
        want: dict[str, str] = {}
        layouts = [self.layout] if self._previous is None else [self._previous, self.layout]
        for layout in layouts:
            for t in layout.tiles_for(c.screen if c.role == "screen" else None):
                if t.kind != "camera" or not t.camera or t.camera in c.video_off:
                    continue
                stream = tile_stream(t, layout, c.role == "screen")
                if stream == "main" or t.camera not in want:
                    want[t.camera] = stream
        return want

    def _fresh(self, cam: str, stream: str, now: float) -> bool:
        v = self.videos.get((cam, stream))
        return v is not None and now - v.heard <= VIDEO_FRESH_S

    def _choose(self, cam: str, want: str, now: float) -> str:
        """The wanted stream, or the other one while only that one plays (a camera without a
        sub-stream, a main stream nobody forwards)."""
        other = "sub" if want == "main" else "main"
        return other if not self._fresh(cam, want, now) and self._fresh(cam, other, now) else want

    def _replay(self, c: Client) -> None:
        """Bring what a client plays in line with its tiles and wishes; a stream it starts
        gets the current group of pictures at once, so the page paints without waiting."""
        now = time.monotonic()
        target = {cam: self._choose(cam, want, now) for cam, want in self.wanted_streams(c).items()}
        for cam, stream in list(c.playing.items()):
            if target.get(cam) != stream:
                v = self.videos.get((cam, stream))
                if v is not None:
                    v.clients.discard(c)
                del c.playing[cam]
                c.awaiting_key.discard((cam, stream))
        for cam, stream in target.items():
            if c.playing.get(cam) == stream:
                continue
            c.playing[cam] = stream
            v = self.videos.setdefault((cam, stream), VideoStream())
            v.clients.add(c)
            self._send_gop(c, cam, stream, v)

    def _send_gop(self, c: Client, cam: str, stream: str, v: VideoStream) -> None:
        if not v.gop or c.pending or time.monotonic() - v.heard > GOP_STALE_S:
            c.awaiting_key.add((cam, stream))
            return
        c.awaiting_key.discard((cam, stream))
        for frame in v.gop:
            if c.buffered() > self.buffer_limit:  # the rest would be a queue: next keyframe
                c.awaiting_key.add((cam, stream))
                return
            if self._send(c, frame):
                self.video_delivered += 1

    def video_demand(self) -> tuple[frozenset[str], frozenset[str]]:
        """(main, sub): the cameras whose streams this node's clients want, for the camera
        services (wanted, not the fallback actually played: that is the camera service's call)."""
        main: set[str] = set()
        sub: set[str] = set()
        for c in self.clients:
            for cam, stream in self.wanted_streams(c).items():
                (main if stream == "main" else sub).add(cam)
        return frozenset(main), frozenset(sub)

    def video_buffered(self) -> int:
        """Bytes the hub holds for video: every stream's current group of pictures."""
        return sum(v.gop_bytes for v in self.videos.values())

    def _on_video(self, cam: str, stream: str, payload: bytes) -> None:
        try:
            head, _ = video_frame.decode_video(payload)
            if head["camera"] != cam or head["stream"] != stream:
                raise ValueError(f"header says {head['camera']}/{head['stream']}, the topic {cam}/{stream}")
            if head["key"] and not isinstance(head.get("codec"), str):
                raise ValueError("keyframe without a codec string")
        except ValueError as exc:
            if cam not in self._video_bad:  # once per camera: a broken encoder sends 25 a second
                self._video_bad.add(cam)
                log.warning("camera video ignored", extra={"camera": cam, "stream": stream, "error": str(exc)[:200]})
            return
        key = head["key"]
        frame = ws_frame(payload, False)  # the IOCV bytes as they came, framed once for everyone
        sk = (cam, stream)
        v = self.videos.get(sk)
        if v is None:
            v = self.videos[sk] = VideoStream()
        now = time.monotonic()
        started = now - v.heard > VIDEO_FRESH_S
        v.heard = now
        v.playing = True
        limit = self.buffer_limit
        sent = 0
        for c in v.clients:
            if sk in c.awaiting_key:
                if not key:
                    c.video_skipped += 1
                    self.video_skipped += 1
                    continue
                c.awaiting_key.discard(sk)
            conn = c.conn
            if conn.protocol.state is not _OPEN:
                continue
            transport = conn.transport
            if c.pending or transport.get_write_buffer_size() > limit:
                c.awaiting_key.add(sk)  # never a queue of video: the rest of this GOP is lost to it
                c.video_skipped += 1
                self.video_skipped += 1
                continue
            transport.write(frame)
            c.sent += 1
            sent += 1
        self.video_delivered += sent
        if key:
            v.gop = [frame]
            v.gop_bytes = len(frame)
        elif v.gop:
            v.gop.append(frame)
            v.gop_bytes += len(frame)
            if len(v.gop) > GOP_MAX_FRAMES or v.gop_bytes > GOP_MAX_BYTES:
                v.gop, v.gop_bytes = [], 0  # a camera with rare keyframes: joiners wait for one
        if started:  # a stream (re)starts: clients that took the other one may come back
            for c in list(self.clients):
                if cam in c.playing:
                    self._replay(c)

    def _video_tick(self) -> None:
        """Clients of a stream that stopped take the other one; a switch's old layout ends.
        Only the clients concerned are looked at: this runs every second for thousands."""
        everyone = False
        if self._previous is not None and time.time() >= self.state.at:
            self._previous = None
            everyone = True
            self._demand_changed()
        if self._replaying != self._replay_started():
            self._replaying = not self._replaying
            everyone = True
            self._demand_changed()
        now = time.monotonic()
        stopped: set[str] = set()
        for sk, v in list(self.videos.items()):
            quiet = now - v.heard
            if v.playing and quiet > VIDEO_FRESH_S:
                v.playing = False
                stopped.add(sk[0])
            if quiet > 60:
                if not v.clients:
                    del self.videos[sk]
                else:
                    v.gop, v.gop_bytes = [], 0  # a stream gone quiet: its pictures are a minute old
        if everyone or stopped:
            for c in list(self.clients):
                if everyone or not stopped.isdisjoint(c.playing):
                    self._replay(c)

    # -- building tiles -----------------------------------------------------------------
    def _rebuild_all(self) -> None:
        for t in self.layout.tiles:
            if t.kind in ("clock", "text"):
                self._emit(t, tiledata.static_data(t))
            elif t.kind == "kpi":
                live = self.kpi_live.get((t.kpi or "", t.area or ""))
                if live is not None:
                    self._emit(t, tiledata.kpi_data(self.kpi_meta.get(t.kpi or ""), live, self.kpi_prev.get((t.kpi or "", t.area or ""))))
            elif t.kind == "chart":
                self._emit(t, tiledata.chart_data(t, self.kpi_live.get((t.kpi or "", t.area or ""))))
            elif t.kind == "ranking":
                self._emit(t, tiledata.ranking_data(t, tiledata.newest_received(
                    v for (k, _), v in self.kpi_live.items() if k == t.kpi)))
            elif t.kind == "camera" and t.camera:
                self._emit(t, self._camera_data(t.camera))
                for variant in ("sd", "hd"):
                    pic = self.cam_picture.get((t.camera, variant))
                    if pic is not None:
                        self._picture_to(t, variant, pic[0], pic[1])
                if (t.camera, "hd") not in self.cam_picture and (t.camera, "sd") in self.cam_picture:
                    head, jpeg, _ = self.cam_picture[(t.camera, "sd")]
                    self._picture_to(t, "hd", head, jpeg)
            elif t.kind == "camera_health":
                self._emit(t, self._health())
            elif t.kind == "alerts":
                self._emit(t, {"alerts": self.alerts})
            elif t.kind == "map":
                self._emit(t, self._map_data(t))

    def _known(self, cam: str) -> bool:
        """In the registry, or reported on by a camera service (which reads a registry of its
        own); until the registry has been read, a hub alone calls no camera unknown."""
        return not self.registry_known or cam in self.camera_names or cam in self.cam_status

    def unknown_cameras(self) -> list[Tile]:
        """Camera tiles of the layout shown whose camera nobody knows: no picture will ever come."""
        return [t for t in self.layout.tiles if t.kind == "camera" and t.camera and not self._known(t.camera)]

    def _camera_data(self, cam: str) -> dict[str, Any]:
        known = self._known(cam)
        return tiledata.camera_data(cam, self.camera_names.get(cam), self.cam_status.get(cam), known=known)

    def _health(self) -> dict[str, Any]:
        """The cameras camera services report on, and every camera the wall shows: one it
        shows that no service reports on is offline there, so it is offline here too."""
        unknown = frozenset(t.camera for t in self.unknown_cameras() if t.camera)
        shown = frozenset(t.camera for t in self._by_kind.get("camera", ()) if t.camera) - unknown
        return tiledata.health_summary(self.cam_status, self.camera_names, unknown, shown)

    def _map_data(self, t: Tile) -> dict[str, Any]:
        return tiledata.map_data(t, self._map_live.get(t.kpi or ""), self._health(), self.alerts)

    def _picture_to(self, t: Tile, variant: str, head: dict[str, Any], jpeg: bytes) -> None:
        self._fanout(f"{t.id}#{variant}", frames.picture_frame(t.id, t.camera or "", head, jpeg), False)

    def set_catalogue(self, meta: dict[str, KpiMeta], camera_names: dict[str, str]) -> None:
        changed = meta != self.kpi_meta or camera_names != self.camera_names or not self.registry_known
        self.kpi_meta, self.camera_names = meta, camera_names
        self.registry_known = True
        if changed:
            self._rebuild_all()

    def set_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self.alerts = alerts
        for t in self._by_kind.get("alerts", ()):
            self._emit(t, {"alerts": alerts})
        self._map_dirty = True

    def tick(self) -> None:
        """Called about once a second: summaries that many messages change at once, and
        cameras whose service went quiet (it repeats every status at least every 10 s):
        their last retained "online" must not stay on the wall."""
        self._video_tick()
        self._close_overfull()
        now = time.monotonic()
        for cam, heard in list(self.cam_heard.items()):
            st = self.cam_status.get(cam)
            if st is not None and now - heard > STATUS_SILENT_S and st.get("reason") != tiledata.SILENT["reason"]:
                self.cam_status[cam] = {**st, **tiledata.SILENT}
                self._health_dirty = True
                for t in self._by_camera.get(cam, ()):
                    self._emit(t, self._camera_data(cam))
        if self._health_dirty:
            self._health_dirty = False
            self._map_dirty = True
            summary = self._health()
            for t in self._by_kind.get("camera_health", ()):
                self._emit(t, summary)
        if self._map_dirty:
            self._map_dirty = False
            for t in self._by_kind.get("map", ()):
                self._emit(t, self._map_data(t))

    def _close_overfull(self) -> None:
        """Every write to a client is bounded: tiles and video skip, replies are dropped past
        the buffer limit, and a client whose buffer still grows past the hard cap (it sends and
        never reads, so the library's own pongs pile up) is cut off, its memory freed."""
        cap = self.buffer_limit * HARD_CAP_FACTOR
        for c in list(self.clients):
            size = c.buffered()
            if size > cap and c.conn.transport is not None:
                log.warning("wall client cut off: it does not read", extra={
                    "client": c.id, "user": c.user, "address": c.address, "role": c.role, "buffered": size})
                c.conn.transport.abort()

    def reply(self, c: Client, data: bytes) -> bool:
        """A reply to the client's own message (a pong): dropped, not queued, while the client
        is not reading; False then."""
        if c.buffered() > self.buffer_limit:
            c.skipped += 1
            return False
        self._write(c, data, True)
        return True

    # -- from the broker ------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool, generation: int) -> None:
        try:
            self._route(topic, payload)
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            log.warning("live message ignored", extra={"topic": topic[:200], "error": str(exc)[:200]})

    def _route(self, topic: str, payload: bytes) -> None:
        camera = topics.parse_live_camera(topic)
        if camera is not None:
            cam, what = camera
            if what == "tile":
                self._on_picture(cam, "sd", payload)
            elif what == "tile/hd":
                self._on_picture(cam, "hd", payload)
            elif what == "status":
                self._on_status(cam, payload)
            elif what in ("video/main", "video/sub"):
                self._on_video(cam, what[6:], payload)
            elif what == "event" and self.on_camera_event is not None and payload:
                self.on_camera_event(cast(dict[str, Any], camera_contract.decode_event(payload)))
            return
        source = topics.parse_live_kpi(topic)
        if source is not None:
            if payload:
                self._on_kpi(source, cast(dict[str, Any], kpi_contract.decode_live(payload)))
        elif topic == topics.WALL_ALERTS and payload:
            self.set_alerts(wall_contract.decode_alerts(payload))
        elif topic == topics.WALL_STATE and payload:
            state, layout_doc = wall_contract.decode_state(payload)
            self.apply_state(state, Layout.model_validate(layout_doc) if layout_doc else None)

    def _on_kpi(self, source: tuple[str, str], live: dict[str, Any]) -> None:
        old = self.kpi_live.get(source)
        if old is not None and old.get("ts") != live.get("ts"):
            self.kpi_prev[source] = float(old["value"])
        self.kpi_live[source] = live
        self._map_live[source[0]] = live
        if any(t.kpi == source[0] for t in self._by_kind.get("map", ())):
            self._map_dirty = True
        meta = self.kpi_meta.get(source[0])
        if self.on_kpi is not None:
            self.on_kpi(meta, live)
        for t in self._by_kpi.get(source, ()):
            if t.kind == "kpi":
                self._emit(t, tiledata.kpi_data(meta, live, self.kpi_prev.get(source)))
            else:
                self._emit(t, tiledata.chart_data(t, live))
        for t in self._by_kpi.get((source[0], "*"), ()):
            self._emit(t, tiledata.ranking_data(t, live.get("received_at")))

    def _on_status(self, cam: str, payload: bytes) -> None:
        if not payload:
            self.cam_status.pop(cam, None)
            self.cam_heard.pop(cam, None)
        else:
            self.cam_status[cam] = camera_contract.decode_status(payload)
            self.cam_heard[cam] = time.monotonic()
        self._health_dirty = True
        for t in self._by_camera.get(cam, ()):
            self._emit(t, self._camera_data(cam))

    def _on_picture(self, cam: str, variant: str, payload: bytes) -> None:
        head, jpeg = tile_frame.decode_tile(payload)  # a copy: the link hands over a bytearray
        now = time.monotonic()
        self.cam_picture[(cam, variant)] = (head, jpeg, now)
        tiles = self._by_camera.get(cam, ())
        for t in tiles:
            self._picture_to(t, variant, head, jpeg)
        if variant == "sd":
            hd = self.cam_picture.get((cam, "hd"))
            if hd is None or now - hd[2] > HD_FRESH_S:
                for t in tiles:
                    self._picture_to(t, "hd", head, jpeg)
