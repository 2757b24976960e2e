// The time machine on a page: while the wall (or the console's own preview) replays the past,
// a second WallModel shows the wall as it was at the replayed instant, over the live one
// (which keeps running underneath, so going back to live shows the present at once).
//
// The replay is four numbers from the hub's `replay` message (dashboards/PROTOCOL.md): at
// server time `at` the wall shows instant `t`, then `t + (now - at) * speed` unless paused.
// Every screen computes the instant from its own hub clock, so the nine move together. The
// state at that instant (layout, pins, KPI values as known then, alerts then, each camera's
// recording and offset) comes from GET /api/v1/wall/at, asked again every few seconds; camera
// tiles play the recorded fMP4 segments in a <video>, seeking to the instant.

import { formatDateTime } from "./format.js";
import { t } from "./i18n.js";
import { TileView } from "./tiles.js";
import { WallModel } from "./wall.js";

const REFRESH_S = 4; // replayed seconds between two looks at the state (at most once a second)
const DRIFT_S = 0.4; // a video further than this (times the speed) from the instant seeks
const KEEP_S = 0.1;
const SETTLE_MS = 2000; // a video just shown, playing, is left this long before a drift seeks it again
// how long a seek into a freshly loaded segment takes on this page, learned: a playing replay
// seeks that far ahead of the instant, so the picture it shows first is the instant's
let seekLag = 0.25;
const READ_AHEAD_S = 1.5; // the next segment is fetched this long (times the speed) before it plays
const PUSHED_MAX_S = 1; // a past sent with the replay is shown if it is this near the instant (times the speed)

const epoch = (iso) => Date.parse(iso) / 1000;
const once = (target, type) => new Promise((resolve) => target.addEventListener(type, resolve, { once: true }));

/** The instant a replay shows at server time `now` (epoch seconds). */
export function replayPosition(spec, now) {
  if (!spec) return now;
  return spec.paused || now < spec.at ? spec.t : spec.t + (now - spec.at) * spec.speed;
}

/** fetch() of a recorded segment with the page's token, as a blob URL for a <video>. */
async function segmentUrl(url, token) {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`segment ${url}: ${res.status}`);
  return URL.createObjectURL(await res.blob());
}

/**
 * A camera tile in a replay: the recording at the replayed instant, in a <video>.
 *
 * Which stream: the answer's `stream` is the hub's rule for live tiles (a wall screen's tile
 * wider than its HD threshold plays the main stream, a smaller one the sub-stream), so a
 * replay tile plays the picture its live tile would; where the sub-stream was not recorded
 * at that instant, the main one.
 *
 * Two <video>s take turns: the shown one plays, the other loads the segment that comes next
 * (read ahead, in the shown one's last READ_AHEAD_S, times the speed) or the one a seek asked
 * for, and is shown only once it has a picture, so a segment's end or a seek never blanks the
 * tile. At most one segment is held ahead; a blob URL is revoked as soon as its video lets go.
 */
export class RecordingTile extends TileView {
  build() {
    this.players = [0, 1].map(() => {
      const v = document.createElement("video");
      v.className = "cam-video rec-video";
      v.muted = true;
      v.playsInline = true;
      v.preload = "auto";
      v.seg = null; // the segment it holds (ready once its picture is)
      v.url = null; // its blob URL
      v.ready = false;
      v.addEventListener("ended", () => v === this.shown && this._follow());
      v.addEventListener("timeupdate", () => v === this.shown && this._readAhead());
      this.body.append(v);
      return v;
    });
    this.shown = null; // the <video> on show
    this.noteEl = document.createElement("div");
    this.noteEl.className = "cam-status";
    this.el.append(this.noteEl);
    this.el.classList.add("replay");
    this.seg = null; // the segment on show
    this.showWhenReady = null; // id of the segment to show as soon as it has a picture
    this.aheads = 0; // segments fetched ahead (for the tests)
    this.endTimer = null;
  }

  title() {
    return super.title() || (this.data && this.data.name) || this.def.camera || "";
  }

  update(data) {
    this.data = data;
    this.renderTitle();
    this.render();
    this._follow();
  }

  render() {
    const gap = !(this.data && (this.data.recording || this.data.recording_sub));
    this.el.dataset.state = gap ? "no-recording" : "replay";
    this.el.classList.toggle("has-video", !gap && this.seg !== null);
    this.noteEl.textContent = gap && this.data ? t(this.lang, "replay.no_recording") : "";
    this.noteEl.hidden = !this.noteEl.textContent;
  }

  tick() {
    this._follow();
  }

  /** The segment to play at instant `pos`: the stream the tile's size calls for, else main. */
  _segmentAt(pos) {
    return (this.data && this.data.stream === "sub" && this._streamAt("sub", pos)) || this._streamAt("main", pos);
  }

  /** The segment of one stream that holds instant `pos`, if the last state named it. */
  _streamAt(stream, pos) {
    const r = this.data && (stream === "sub" ? this.data.recording_sub : this.data.recording);
    const segs = r ? [r.segment, ...(r.following || [])] : [];
    return segs.find((s) => pos >= epoch(s.start) && pos < epoch(s.end)) || null;
  }

  _holds(pos) {
    return this.seg !== null && pos >= epoch(this.seg.start) - KEEP_S && pos < epoch(this.seg.end);
  }

  get _standby() {
    return this.players[0] === this.shown ? this.players[1] : this.players[0];
  }

  /** Show the segment that holds the instant, or keep the shown one in step with it. */
  _follow() {
    if (this.destroyed) return;
    const pos = this.ctx.serverNow();
    const want = this._segmentAt(pos);
    if (want) this.el.dataset.wants = want.stream; // what it plays once settled (for the tests)
    // the segment on show keeps the instant a hair before its start (it took over on a timer),
    // unless it is the quick picture of a tile that wants the main stream
    const keep = this._holds(pos) && (!want || want.stream === this.seg.stream);
    const seg = keep ? this.seg : want;
    if (!seg) {
      if (this.seg && pos >= epoch(this.seg.end)) this.shown.pause();
      return;
    }
    if (this.seg && this.seg.id === seg.id) {
      this._sync();
      return;
    }
    const next = this._standby;
    // nothing on show at the instant (a start, a seek): a large tile shows the sub-stream's
    // picture first, quick to fetch and decode, and its main one as soon as that is ready
    const quick = seg.stream !== "sub" && !this._holds(pos) ? this._streamAt("sub", pos) : null;
    const target = (next.seg && next.seg.id === seg.id) || !quick ? seg : quick;
    if (next.seg && next.seg.id === target.id) {
      if (next.ready) this._show(next); // read ahead: it waits at its first frame
      else this.showWhenReady = target.id; // on its way: shown once it has the instant's picture
    } else {
      this._load(target, true);
    }
  }

  /** Fetch `seg` into the video not on show; `show`: show it once it has the instant's picture. */
  async _load(seg, show) {
    const v = this._standby;
    this.showWhenReady = show ? seg.id : null;
    this._release(v);
    v.seg = seg;
    let url;
    try {
      url = await this.ctx.segment(seg.url);
    } catch (err) {
      console.warn("replay: segment not loaded", err);
      if (v.seg === seg) v.seg = null;
      return;
    }
    if (this.destroyed || v.seg !== seg || v === this.shown) {
      URL.revokeObjectURL(url);
      return;
    }
    v.url = url;
    v.src = url;
    const loaded = await Promise.race([once(v, "loadeddata").then(() => true), once(v, "error").then(() => false)]);
    if (this.destroyed || v.seg !== seg || v === this.shown) return;
    if (!loaded) {
      console.warn("replay: segment does not play", seg.url);
      this._release(v);
      return;
    }
    v.ready = true;
    if (this.showWhenReady !== seg.id) return; // read ahead: wait at the first frame
    const clock = this.ctx.replayClock();
    const lead = clock.paused ? 0 : seekLag * (clock.speed || 1);
    const want = this.ctx.serverNow() - epoch(seg.start) + lead;
    if (want > 0.02) { // seeked unseen, so the tile never shows a wrong frame first
      const seeked = once(v, "seeked");
      const t0 = performance.now();
      v.currentTime = Math.min(want, Number.isFinite(v.duration) ? Math.max(0, v.duration - 0.05) : want);
      await seeked;
      if (!clock.paused) seekLag = Math.min(2, 0.7 * seekLag + 0.3 * ((performance.now() - t0) / 1000));
      if (this.destroyed || v.seg !== seg || v === this.shown || this.showWhenReady !== seg.id) return;
    }
    this._show(v);
  }

  /** Read ahead: in the shown segment's last READ_AHEAD_S (times the speed), fetch the next. */
  _readAhead() {
    const clock = this.ctx.replayClock();
    if (!this.seg || clock.paused || this.destroyed || this.showWhenReady !== null) return;
    if (this.data && this.seg.stream !== this.data.stream && this._segmentAt(epoch(this.seg.start))?.stream
        !== this.seg.stream) return; // a quick picture on show: the main stream's segment comes first
    const now = this.ctx.serverNow();
    const end = epoch(this.seg.end);
    if (now < epoch(this.seg.start) || end - now > READ_AHEAD_S * Math.max(1, clock.speed)) return;
    const next = this._segmentAt(end + 0.001);
    if (!next || next.id === this.seg.id) return;
    const v = this._standby;
    if (v.seg && v.seg.id === next.id) return; // held already (or on its way)
    this.aheads += 1;
    this.el.dataset.readAhead = String(next.id);
    this.el.dataset.readAheads = String(this.aheads);
    this._load(next, false);
  }

  _show(v) {
    const old = this.shown;
    this.shown = v;
    this.seg = v.seg;
    this.showWhenReady = null;
    v.classList.add("rec-active");
    if (old && old !== v) {
      old.classList.remove("rec-active");
      this._release(old);
    }
    this.shownAt = performance.now();
    this.el.dataset.segment = String(v.seg.id);
    this.el.dataset.stream = v.seg.stream || "main";
    this.render();
    this._sync();
    if (this.data && v.seg.stream !== this.data.stream) this._follow(); // a quick picture: now the main one
  }

  /** Let go of a video's segment: stop it, drop its source, revoke its blob URL. */
  _release(v) {
    v.pause();
    v.ready = false;
    v.seg = null;
    if (v.url) {
      v.removeAttribute("src");
      v.load();
      URL.revokeObjectURL(v.url);
      v.url = null;
    }
  }

  _sync(force = false) {
    const clock = this.ctx.replayClock();
    const v = this.shown;
    const pos = this.ctx.serverNow();
    const want = pos - epoch(this.seg.start);
    v.playbackRate = clock.speed || 1;
    const end = Number.isFinite(v.duration) ? Math.max(0, v.duration - 0.05) : want;
    // paused, the frame of the instant exactly; playing, only when it drifts off
    const off = Math.abs(v.currentTime - want);
    const settling = performance.now() - (this.shownAt || 0) < SETTLE_MS; // a seek now would only lag more
    const drift = DRIFT_S * Math.max(1, clock.speed) * (settling ? 3 : 1);
    if (force || (clock.paused ? off > 0.02 : off > drift)) {
      v.currentTime = Math.min(Math.max(0, want), end);
    }
    this.el.dataset.offset = want.toFixed(3);
    clearTimeout(this.endTimer);
    if (clock.paused) {
      v.pause();
      return;
    }
    if (v.paused) v.play().catch(() => {});
    // the next segment takes over at this one's end on the replay's clock, not a tick later
    const left = (epoch(this.seg.end) - pos) / (clock.speed || 1);
    this.endTimer = setTimeout(() => this._follow(), Math.max(0, left * 1000) + 5);
    this._readAhead();
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.endTimer);
    for (const v of this.players) this._release(v);
  }
}

export class Replayer {
  /**
   * ctx: the page's tiles context (its serverNow is the live clock); page: how the page
   * mounts and places views (as for WallModel); screen: 1-9, or null for the whole wall;
   * token: for the segments; onChange(replayer): the page redraws its banner.
   */
  constructor({ ctx, page, screen = null, token, onChange = () => {} }) {
    this.live = ctx.serverNow;
    this.spec = null;
    this.screen = screen;
    this.onChange = onChange;
    this.fetches = 0; // answers of /wall/at shown
    this.pushedShown = 0; // pasts the hub sent with a replay, shown instead
    this.last = null; // the last /wall/at answer shown
    this.seq = 0;
    this.gen = 0;
    this.timer = null;
    this.startTimer = null;
    this.model = new WallModel({
      ...ctx,
      serverNow: () => this.position(),
      replayClock: () => this.clock(),
      pastSeries: true,
      segment: (url) => segmentUrl(url, token()),
      views: { camera: RecordingTile },
      video: null,
    }, page);
  }

  get active() {
    return this.spec !== null;
  }

  /** How the replay moves: held at its instant until its `at` (a screen that gets ready for
   * it ahead, out of sight, has its videos wait at the first picture), then as it says. */
  clock() {
    const spec = this.spec;
    if (!spec) return { speed: 1, paused: true };
    return !spec.paused && this.live() < spec.at ? { ...spec, paused: true } : spec;
  }

  /** The instant shown: a replay that catches up with the present stays there. */
  position() {
    const now = this.live();
    return Math.min(replayPosition(this.spec, now), now);
  }

  /**
   * Show this replay (a new one or a change to the one shown); null: back to live. `past`:
   * the wall at the replay's instant, as the hub sent it with the replay (whole, with each
   * screen's part), shown at once instead of asking /wall/at first.
   */
  set(spec, past = null) {
    this.spec = spec ? { ...spec } : null;
    this.gen += 1;
    clearTimeout(this.timer);
    clearTimeout(this.startTimer);
    if (spec && !spec.paused && this.live() < spec.at) {
      // its videos wait at the instant's picture until `at`, then start together
      this.startTimer = setTimeout(() => this._start(), (spec.at - this.live()) * 1000);
    }
    if (!spec) {
      this.model.clear();
      this.last = null;
    } else {
      this.refresh(this._pushed(past));
    }
    this.onChange(this);
  }

  _start() {
    for (const view of this.model.views.values()) {
      try {
        view.tick();
      } catch (err) {
        console.error("replay: tile not started", err);
      }
    }
  }

  /** This screen's part of the pushed past, if it is of the instant shown now (a screen that
   * joins a replay long after its start gets the start's, and asks instead). */
  _pushed(past) {
    const part = past && this.screen && past.screens && past.screens[String(this.screen)];
    if (!part || !past.layout) return null;
    if (Math.abs(Number(past.epoch) - this.position()) > PUSHED_MAX_S * Math.max(1, this.spec.speed || 1)) return null;
    const ids = new Set(part.tiles);
    return { ...past, region: part.region, layout: { ...past.layout, tiles: past.layout.tiles.filter((d) => ids.has(d.id)) } };
  }

  async refresh(given = null) {
    clearTimeout(this.timer);
    if (!this.spec) return;
    const gen = this.gen;
    const at = new Date(this.position() * 1000).toISOString();
    const q = new URLSearchParams({ t: at });
    if (this.screen) q.set("screen", String(this.screen));
    try {
      const answer = given || await this.model.ctx.api(`/api/v1/wall/at?${q}`);
      if (gen !== this.gen) return; // the replay changed meanwhile
      if (given) this.pushedShown += 1;
      else this.fetches += 1;
      this.last = answer;
      this.model.layout({ layout: answer.layout, region: answer.region, version: answer.state.version, at: 0 });
      for (const def of answer.layout.tiles || []) {
        const data = answer.tiles[def.id];
        if (data !== undefined) this.model.tile({ tile: def.id, kind: def.kind, seq: ++this.seq, data });
      }
      this.onChange(this);
    } catch (err) {
      console.warn("replay: state not loaded", err);
    }
    if (gen !== this.gen || !this.spec) return;
    const wait = this.spec.paused ? 30 : Math.max(1, REFRESH_S / (this.spec.speed || 1));
    this.timer = setTimeout(() => this.refresh(), wait * 1000);
  }
}

/** The banner's two lines: what the screens show is the past, which instant, how fast. */
export function bannerLines(replayer) {
  const spec = replayer.spec;
  const when = formatDateTime(replayer.position());
  const how = spec.paused ? null : `${spec.speed}×`;
  return {
    vi: `${t("vi", "replay.banner")} · ${when}${spec.paused ? ` · ${t("vi", "replay.paused")}` : ` · ${how}`}`,
    en: `${t("en", "replay.banner")} · ${when} (${t("en", "replay.tz")})${spec.paused ? ` · ${t("en", "replay.paused")}` : ` · ${how}`}`,
  };
}
