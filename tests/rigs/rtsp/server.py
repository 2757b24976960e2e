#!/usr/bin/python3
"""A real RTSP server for the camera tests: GstRtspServer streaming H.264 files as live cameras.

Run it with Debian's ``/usr/bin/python3`` (it imports ``gi``)::

    /usr/bin/python3 tests/rigs/rtsp/server.py --port 8554 \
        --mount street=/var/cache/ioc-test-media/street-360p.mp4 \
        --mount stall=/var/cache/ioc-test-media/street-360p.mp4,stall_after=3 \
        --mount frozen=/var/cache/ioc-test-media/frozen-360p.mp4,timeline=per-client

or ``--config mounts.json`` with ``{"host": "127.0.0.1", "port": 8554, "mounts": [{"name":
"street", "file": "...", "timeline": "shared", "stall_after": null}]}``.  Each mount is then
``rtsp://127.0.0.1:<port>/<name>``.  When it listens it prints one line::

    READY {"host": "127.0.0.1", "port": 8554, "pid": 1234, "mounts": {...}}

How it works (nothing is re-encoded, so it costs little CPU):

* At start each file is demuxed once (``filesrc ! qtdemux ! appsink``) into memory: the H.264
  access units as they are in the file (AVC, with the SPS/PPS in the caps' codec_data) and
  whether each one is a keyframe.  Files shared by several mounts are loaded once.
* A *channel* per mount plays those frames in real time, like a camera: a thread ticks at the
  file's frame rate and hands the current frame to every client of the mount.  At the end of
  the file it starts again at frame 0 (the files begin with an IDR), so the loop is seamless.
  ``timeline=shared`` (the default): all clients see the same frame at the same moment and
  frame ``k`` (counted since the channel's start ``t0``, CLOCK_MONOTONIC) is sent at
  ``t0 + k / fps``; ``timeline=per-client``: each client starts at frame 0 of the file, for
  fault streams whose course must be known (frozen: 3 s moving, then still).
  ``offset=N`` (shared timeline) shifts the file: tick ``k`` shows frame ``(k + N) % frames``,
  so mounts of one file can have their keyframes at different moments, as real cameras do.
  The status reports how late the clock thread ran (``late_ms``: p50/p95/max over the last
  minute), so a loaded machine's pacing error is known.
* Each client gets a tiny media of its own (``appsrc ! rtph264pay``; the factory is not
  "shared" in GstRtspServer's sense, the channel is), so each client's stream begins at a
  keyframe: the channel feeds a client only from the first keyframe after its PLAY (at most
  one GOP, 1 s, of waiting; DESCRIBE is answered at once with the latest keyframe).
  ``rtph264pay config-interval=-1`` repeats SPS/PPS in-band before every IDR.
* Faults: ``stall_after=N`` on a mount stops sending frames to each client N seconds after
  its stream started, keeping the RTSP/TCP connection (and RTCP) open; the control commands
  below stall or resume a whole mount at any time; SIGKILL kills everything mid-stream, and a
  new server can bind the same port at once (the listening socket uses SO_REUSEADDR).

Control (with ``--control-stdin``): one command a line on stdin, one JSON reply a line on
stdout; EOF on stdin stops the server (so it never outlives the test that started it):
``stall NAME`` / ``resume NAME`` (frames stop / go on for every client of the mount, connections
kept), ``offline NAME`` (the camera goes away: its clients are hung up on, and DESCRIBE answers
404 until ``online NAME``), ``status``, ``quit``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

_OUT_LOCK = threading.Lock()


def emit(prefix: str, obj: dict[str, Any]) -> None:
    """One line on stdout, flushed (the rig reads them)."""
    with _OUT_LOCK:
        sys.stdout.write(f"{prefix} {json.dumps(obj, separators=(',', ':'))}\n")
        sys.stdout.flush()


def log(msg: str) -> None:
    sys.stderr.write(f"[rtsp-server] {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------
# media files, demuxed once into memory


@dataclass
class Clip:
    path: str
    caps: Gst.Caps
    frames: list[GLib.Bytes]
    keys: list[bool]
    fps: float
    width: int
    height: int
    last_key: list[int] = field(default_factory=list)  # index of the keyframe at or before i

    @property
    def nbytes(self) -> int:
        return sum(f.get_size() for f in self.frames)


_CLIPS: dict[str, Clip] = {}


def load_clip(path: str) -> Clip:
    """Demux an .mp4 (H.264) into access units; cached per path."""
    path = os.path.realpath(path)
    if path in _CLIPS:
        return _CLIPS[path]
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    pipe = Gst.parse_launch(
        "filesrc name=src ! qtdemux ! video/x-h264 ! "
        "appsink name=sink sync=false emit-signals=false max-buffers=0"
    )
    pipe.get_by_name("src").set_property("location", path)
    sink = pipe.get_by_name("sink")
    pipe.set_state(Gst.State.PLAYING)
    frames: list[GLib.Bytes] = []
    keys: list[bool] = []
    caps = None
    try:
        while True:
            sample = sink.emit("try-pull-sample", 2 * Gst.SECOND)
            if sample is None:
                break
            if caps is None:
                caps = sample.get_caps()
            buf = sample.get_buffer()
            frames.append(GLib.Bytes.new(buf.extract_dup(0, buf.get_size())))
            keys.append(not buf.has_flags(Gst.BufferFlags.DELTA_UNIT))
        msg = pipe.get_bus().pop_filtered(Gst.MessageType.ERROR)
        if msg is not None:
            err, dbg = msg.parse_error()
            raise RuntimeError(f"cannot demux {path}: {err.message} ({dbg})")
    finally:
        pipe.set_state(Gst.State.NULL)
    if caps is None or not frames:
        raise RuntimeError(f"no H.264 video in {path}")
    if not keys[0]:
        raise RuntimeError(f"{path} does not start with a keyframe")
    st = caps.get_structure(0)
    if st.get_value("stream-format") != "avc":
        raise RuntimeError(f"{path}: expected AVC from qtdemux, got {caps.to_string()}")
    ok, num, den = st.get_fraction("framerate")
    fps = num / den if ok and num > 0 and den > 0 else 25.0
    last, last_key = 0, []
    for i, k in enumerate(keys):
        last = i if k else last
        last_key.append(last)
    clip = Clip(path, caps, frames, keys, fps, st.get_value("width"), st.get_value("height"), last_key)
    _CLIPS[path] = clip
    return clip


# --------------------------------------------------------------------------------------
# channels: one live "camera" per mount, fanned out to its clients


class Feed:
    """One client's media: its appsrc and where it is in the keyframe gate."""

    DESCRIBE, ARMED, LIVE, GONE = "describe", "armed", "live", "gone"

    def __init__(self, media: GstRtspServer.RTSPMedia, appsrc: Gst.Element) -> None:
        self.media = media
        self.appsrc = appsrc
        self.state = Feed.DESCRIBE
        self.live_since = 0.0
        self.pos = 0  # per-client timeline position
        self.sent = 0
        self.stalled_logged = False
        self.client: Any = None  # the GstRtspServer client it belongs to, once known
        self.pts_base: int | None = None  # running time of its first live frame
        self.tick_base = 0


class Channel:
    def __init__(self, name: str, clip: Clip, timeline: str, stall_after: float | None,
                 offset: int = 0) -> None:
        if timeline not in ("shared", "per-client"):
            raise ValueError(f"mount {name}: timeline must be 'shared' or 'per-client'")
        self.name = name
        self.clip = clip
        self.timeline = timeline
        self.stall_after = stall_after
        self.offset = int(offset) % len(clip.frames)  # shared timeline: tick k shows frame k + offset
        self.late: deque[float] = deque(maxlen=max(1, int(60 * clip.fps)))  # s behind the clock, per tick
        self.stalled = False  # whole mount, by control command
        self.offline = False  # unmounted, by control command
        self.factory: Any = None
        self.period = 1.0 / clip.fps
        self.duration_ns = int(Gst.SECOND / clip.fps)
        self.feeds: list[Feed] = []
        self.lock = threading.Lock()
        self.t0 = 0.0
        self.tick = 0
        self.late_resyncs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"channel-{name}", daemon=True)

    # -- lifecycle
    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def add(self, feed: Feed) -> None:
        with self.lock:
            self.feeds.append(feed)

    def remove(self, feed: Feed) -> None:
        with self.lock:
            feed.state = Feed.GONE
            if feed in self.feeds:
                self.feeds.remove(feed)

    def find(self, media: Any) -> Feed | None:
        with self.lock:
            for f in self.feeds:
                if f.media == media:
                    return f
        return None

    def status(self) -> dict[str, Any]:
        with self.lock:
            feeds = list(self.feeds)
        return {
            "file": os.path.basename(self.clip.path),
            "width": self.clip.width,
            "height": self.clip.height,
            "fps": self.clip.fps,
            "frames": len(self.clip.frames),
            "timeline": self.timeline,
            "stall_after": self.stall_after,
            "stalled": self.stalled,
            "offline": self.offline,
            "t0": self.t0,
            "tick": self.tick,
            "clients": len(feeds),
            "live_clients": sum(1 for f in feeds if f.state == Feed.LIVE),
            "late_resyncs": self.late_resyncs,
            "offset": self.offset,
            "late_ms": self._lateness(),
        }

    def _lateness(self) -> dict[str, float]:
        late = sorted(self.late)
        if not late:
            return {"p50": 0.0, "p95": 0.0, "max": 0.0, "ticks": 0}
        at = lambda q: round(1000 * late[min(len(late) - 1, int(q * len(late)))], 2)  # noqa: E731
        return {"p50": at(0.5), "p95": at(0.95), "max": round(1000 * late[-1], 2), "ticks": len(late)}

    # -- the clock
    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            deadline = self.t0 + k * self.period
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -5 * self.period:
                # far behind (the process was paused): jump to now, as a live source does
                k = int((time.monotonic() - self.t0) / self.period)
                self.late_resyncs += 1
                continue
            self.tick = k
            self.late.append(max(0.0, time.monotonic() - deadline))
            self._deliver(k)
            k += 1

    def _push(self, feed: Feed, index: int, tick: int | None = None) -> bool:
        clip = self.clip
        buf = Gst.Buffer.new_wrapped_bytes(clip.frames[index])
        buf.duration = self.duration_ns
        if tick is not None:
            # Exact timestamps, as a camera's clock gives (RTP +3600 a frame at 25 fps):
            # the running time of the first live frame, then one period per tick.  Without
            # them appsrc's do-timestamp stamps the push time, with the thread's jitter.
            if feed.pts_base is None:
                clock = feed.appsrc.get_clock()
                if clock is not None:
                    feed.pts_base = clock.get_time() - feed.appsrc.get_base_time()
                    feed.tick_base = tick
            if feed.pts_base is not None:
                buf.pts = feed.pts_base + (tick - feed.tick_base) * self.duration_ns
        if not clip.keys[index]:
            buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
        ret = feed.appsrc.emit("push-buffer", buf)
        if ret == Gst.FlowReturn.OK:
            feed.sent += 1
            return True
        return False

    def _deliver(self, k: int) -> None:
        clip = self.clip
        n = len(clip.frames)
        now = time.monotonic()
        with self.lock:
            feeds = list(self.feeds)
        for feed in feeds:
            if feed.state == Feed.DESCRIBE:
                # One buffer lets the media negotiate caps and answer DESCRIBE; the payloader
                # holds it until PLAY, so it is the first frame the client gets: a keyframe
                # (shared: the latest one; per-client: frame 0, and PLAY goes on from 1).
                if feed.sent == 0:
                    i = clip.last_key[(k + self.offset) % n] if self.timeline == "shared" else 0
                    if self._push(feed, i):
                        feed.pos = 1
                continue
            if feed.state == Feed.ARMED:
                if self.timeline == "shared" and not clip.keys[(k + self.offset) % n]:
                    continue  # a fresh keyframe is due within one GOP
                feed.state = Feed.LIVE
                feed.live_since = now
            if feed.state != Feed.LIVE:
                continue
            if self.stalled or (
                self.stall_after is not None and now - feed.live_since >= self.stall_after
            ):
                if not feed.stalled_logged:
                    feed.stalled_logged = True
                    log(f"{self.name}: stalling a client after {feed.sent} frames")
                continue
            if feed.stalled_logged:
                feed.stalled_logged = False
                if self.timeline == "shared" and not clip.keys[(k + self.offset) % n]:
                    # resumed: the frames it missed were references, so go on from the next
                    # keyframe (per-client timelines simply go on where they stopped)
                    feed.state = Feed.ARMED
                    continue
            i = (k + self.offset) % n if self.timeline == "shared" else feed.pos % n
            feed.pos += 1
            self._push(feed, i, k)


# --------------------------------------------------------------------------------------
# the RTSP server


LAUNCH = (
    "( appsrc name=src is-live=true format=time do-timestamp=true min-latency=0 "
    "max-bytes=0 ! rtph264pay name=pay0 pt=96 config-interval=-1{pay} )"
)
# aggregate: small NAL units of one picture (SPS, PPS, SEI, small slices) go together in
# STAP-A packets, as many cameras send them
AGGREGATE = " aggregate-mode=zero-latency"
USER_ROLE = "user"


def _role(factory: Any, role: str) -> None:
    """Let `role` see and play the mount."""
    factory.add_role_from_structure(Gst.Structure.new_from_string(
        f"{role}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))


class Server:
    def __init__(self, host: str, port: int, mounts: list[dict[str, Any]]) -> None:
        self.host = host
        self.port = port
        self.channels: dict[str, Channel] = {}
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(host)
        self.server.set_service(str(port))
        self.loop = GLib.MainLoop()
        mp = self.server.get_mount_points()
        secured = [m for m in mounts if m.get("auth")]
        if secured:  # Digest (Basic if a mount asks for it); GstRTSPAuth challenges only when there is no default token, so
            # in a rig with an auth mount every mount asks for credentials (any user's will do)
            auth = GstRtspServer.RTSPAuth()
            basic = any(m.get("auth_scheme") == "basic" for m in secured)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC if basic else GstRtsp.RTSPAuthMethod.DIGEST)
            for m in secured:
                user, _, password = str(m["auth"]).partition(":")
                token = GstRtspServer.RTSPToken()
                token.set_string("media.factory.role", USER_ROLE)
                if basic:
                    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
                else:
                    auth.add_digest(user, password, token)
            self.server.set_auth(auth)
        for m in mounts:
            name = str(m["name"]).strip("/")
            if not name or name in self.channels:
                raise ValueError(f"bad or duplicate mount name {m['name']!r}")
            clip = load_clip(m["file"])
            stall = m.get("stall_after")
            ch = Channel(name, clip, m.get("timeline", "shared"), float(stall) if stall is not None else None,
                         int(m.get("offset") or 0))
            self.channels[name] = ch
            factory = ch.factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(LAUNCH.format(pay=AGGREGATE if m.get("aggregate") else ""))
            if secured:
                _role(factory, USER_ROLE)
            factory.set_shared(False)
            factory.set_latency(0)
            factory.connect("media-configure", self._on_media_configure, ch)
            mp.add_factory(f"/{name}", factory)
        self.server.connect("client-connected", self._on_client)

    # -- GstRtspServer callbacks
    def _on_media_configure(self, factory: Any, media: Any, ch: Channel) -> None:
        try:
            self._configure(media, ch)
        except Exception as exc:  # an exception here would leave the client hanging
            log(f"{ch.name}: media-configure failed: {exc!r}")
            raise

    def _configure(self, media: Any, ch: Channel) -> None:
        element = media.get_element()
        appsrc = element.get_by_name("src")
        appsrc.set_property("caps", ch.clip.caps)
        feed = Feed(media, appsrc)
        media.connect("unprepared", lambda _m: ch.remove(feed))
        ch.add(feed)

    def _on_client(self, _server: Any, client: Any) -> None:
        client.connect("describe-request", self._on_describe)
        client.connect("pre-play-request", self._on_pre_play)

    def _on_describe(self, client: Any, ctx: Any) -> None:
        """Remember which client a media belongs to (for ``offline``)."""
        for ch in self.channels.values():
            feed = ch.find(ctx.media)
            if feed is not None:
                feed.client = client

    def _on_pre_play(self, client: Any, ctx: Any) -> GstRtsp.RTSPStatusCode:
        media = ctx.media
        for ch in self.channels.values():
            feed = ch.find(media)
            if feed is not None and feed.state == Feed.DESCRIBE:
                feed.client = client
                feed.state = Feed.ARMED  # from the next keyframe on
        return GstRtsp.RTSPStatusCode.OK

    def _set_online(self, name: str, online: bool) -> int:
        """Main-loop side of offline/online: unmount (404 from now on) and hang up on clients."""
        ch = self.channels[name]
        mp = self.server.get_mount_points()
        if online:
            if ch.offline:
                mp.add_factory(f"/{name}", ch.factory)
                ch.offline = False
            return 0
        if not ch.offline:
            mp.remove_factory(f"/{name}")
            ch.offline = True
        with ch.lock:
            clients = {id(f.client): f.client for f in ch.feeds if f.client is not None}
        for client in clients.values():
            client.close()
        return len(clients)

    def _in_main_loop(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` in the GLib main loop (GstRtspServer's thread) and return its result."""
        done = threading.Event()
        box: list[Any] = []

        def call() -> bool:
            try:
                box.append(fn(*args))
            except Exception as exc:  # reported to the caller
                box.append(exc)
            done.set()
            return False

        GLib.idle_add(call)
        if not done.wait(10):
            raise TimeoutError("the main loop did not run the command")
        if isinstance(box[0], Exception):
            raise box[0]
        return box[0]

    # -- control
    def command(self, line: str) -> dict[str, Any]:
        parts = line.split()
        if not parts:
            return {"ok": False, "error": "empty command"}
        cmd, args = parts[0], parts[1:]
        if cmd in ("stall", "resume"):
            if len(args) != 1 or args[0] not in self.channels:
                return {"ok": False, "cmd": cmd, "error": f"unknown mount {args}"}
            self.channels[args[0]].stalled = cmd == "stall"
            return {"ok": True, "cmd": cmd, "mount": args[0], "t": time.monotonic()}
        if cmd in ("offline", "online"):
            if len(args) != 1 or args[0] not in self.channels:
                return {"ok": False, "cmd": cmd, "error": f"unknown mount {args}"}
            closed = self._in_main_loop(self._set_online, args[0], cmd == "online")
            return {"ok": True, "cmd": cmd, "mount": args[0], "closed_clients": closed, "t": time.monotonic()}
        if cmd == "status":
            return {"ok": True, "cmd": cmd, "t": time.monotonic(),
                    "mounts": {n: c.status() for n, c in self.channels.items()}}
        if cmd == "quit":
            GLib.idle_add(self.loop.quit)
            return {"ok": True, "cmd": cmd}
        return {"ok": False, "cmd": cmd, "error": "unknown command"}

    def _control_stdin(self) -> None:
        for line in sys.stdin:
            if line.strip():
                emit("REPLY", self.command(line))
        log("stdin closed: stopping")
        GLib.idle_add(self.loop.quit)

    def run(self, control_stdin: bool) -> None:
        if self.server.attach(None) == 0:
            raise SystemExit(f"cannot listen on {self.host}:{self.port}")
        port = self.server.get_bound_port()
        t0 = time.monotonic()
        for ch in self.channels.values():
            ch.start(t0)
        if control_stdin:
            threading.Thread(target=self._control_stdin, name="control", daemon=True).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, self.loop.quit)
        emit("READY", {
            "host": self.host, "port": port, "pid": os.getpid(), "t0": t0,
            "mounts": {n: c.status() for n, c in self.channels.items()},
        })
        try:
            self.loop.run()
        finally:
            for ch in self.channels.values():
                ch.stop()


def parse_mount(spec: str) -> dict[str, Any]:
    """``name=path[,key=value...]``, e.g. ``stall=/x/street-360p.mp4,stall_after=3``."""
    head, *opts = spec.split(",")
    name, sep, path = head.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"mount must be NAME=FILE[,key=value...]: {spec!r}")
    mount: dict[str, Any] = {"name": name, "file": path}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if key == "stall_after" and sep:
            mount[key] = float(value)
        elif key == "timeline" and sep:
            mount[key] = value
        elif key == "offset" and sep:
            mount[key] = int(value)
        elif key == "aggregate" and sep:
            mount[key] = value.lower() in ("1", "true", "yes")
        elif key in ("auth", "auth_scheme") and sep:
            mount[key] = value
        else:
            raise argparse.ArgumentTypeError(f"unknown mount option {opt!r}")
    return mount


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="JSON file: {host, port, mounts: [{name, file, timeline, stall_after, offset}]}")
    ap.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=None, help="TCP port (0: any free port; default 8554)")
    ap.add_argument("--mount", action="append", type=parse_mount, default=[], metavar="NAME=FILE[,opt=v]")
    ap.add_argument("--control-stdin", action="store_true", help="read commands on stdin, stop at EOF")
    args = ap.parse_args(argv)
    cfg: dict[str, Any] = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            cfg = json.load(f)
    host = args.host or cfg.get("host", "127.0.0.1")
    port = args.port if args.port is not None else int(cfg.get("port", 8554))
    mounts = list(cfg.get("mounts", [])) + args.mount
    if not mounts:
        ap.error("no mounts: give --mount NAME=FILE or --config")
    Gst.init(None)
    t = time.monotonic()
    server = Server(host, port, mounts)
    log(f"loaded {len(_CLIPS)} file(s), {sum(c.nbytes for c in _CLIPS.values()) / 1e6:.1f} MB "
        f"in {time.monotonic() - t:.2f} s")
    server.run(args.control_stdin)


if __name__ == "__main__":
    main()
