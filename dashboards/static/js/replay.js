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

const epoch = (iso) => Date.parse(iso) / 1000;

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

/** A camera tile in a replay: the recording at the replayed instant, in a <video>. */
export class RecordingTile extends TileView {
  build() {
    this.video = document.createElement("video");
    this.video.className = "cam-video rec-video";
    this.video.muted = true;
    this.video.playsInline = true;
    this.video.preload = "auto";
    this.body.append(this.video);
    this.noteEl = document.createElement("div");
    this.noteEl.className = "cam-status";
    this.el.append(this.noteEl);
    this.el.classList.add("replay");
    this.seg = null; // the segment loaded in the video
    this.segs = []; // the segments known around the instant (from the last state)
    this.loading = null; // id of the segment being fetched
    this.src = null;
    this.video.addEventListener("ended", () => this._follow());
  }

  title() {
    return super.title() || (this.data && this.data.name) || this.def.camera || "";
  }

  update(data) {
    this.data = data;
    const r = data && data.recording;
    this.segs = r ? [r.segment, ...(r.following || [])] : [];
    this.renderTitle();
    this.render();
    this._follow();
  }

  render() {
    const gap = !(this.data && this.data.recording);
    this.el.dataset.state = gap ? "no-recording" : "replay";
    this.el.classList.toggle("has-video", !gap && this.seg !== null);
    this.noteEl.textContent = gap && this.data ? t(this.lang, "replay.no_recording") : "";
    this.noteEl.hidden = !this.noteEl.textContent;
  }

  tick() {
    this._follow();
  }

  /** Load the segment that holds the instant, or keep the loaded one in step with it. */
  _follow() {
    if (this.destroyed) return;
    const pos = this.ctx.serverNow();
    const seg = this.segs.find((s) => pos >= epoch(s.start) && pos < epoch(s.end));
    if (!seg) {
      if (this.seg && pos >= epoch(this.seg.end)) this.video.pause();
      return;
    }
    if (this.seg && this.seg.id === seg.id) this._sync();
    else if (this.loading !== seg.id) this._load(seg);
  }

  async _load(seg) {
    this.loading = seg.id;
    let url;
    try {
      url = await this.ctx.segment(seg.url);
    } catch (err) {
      console.warn("replay: segment not loaded", err);
      this.loading = null;
      return;
    }
    if (this.destroyed || this.loading !== seg.id) {
      URL.revokeObjectURL(url);
      return;
    }
    const ready = new Promise((resolve) => this.video.addEventListener("loadedmetadata", resolve, { once: true }));
    this.video.src = url;
    if (this.src) URL.revokeObjectURL(this.src);
    this.src = url;
    await ready;
    if (this.destroyed || this.loading !== seg.id) return;
    this.loading = null;
    this.seg = seg;
    this.el.dataset.segment = String(seg.id);
    this.render();
    this._sync(true);
  }

  _sync(force = false) {
    const clock = this.ctx.replayClock();
    const v = this.video;
    const want = this.ctx.serverNow() - epoch(this.seg.start);
    v.playbackRate = clock.speed || 1;
    const end = Number.isFinite(v.duration) ? Math.max(0, v.duration - 0.05) : want;
    // paused, the frame of the instant exactly; playing, only when it drifts off
    const off = Math.abs(v.currentTime - want);
    if (force || (clock.paused ? off > 0.02 : off > DRIFT_S * Math.max(1, clock.speed))) {
      v.currentTime = Math.min(Math.max(0, want), end);
    }
    this.el.dataset.offset = want.toFixed(3);
    if (clock.paused) v.pause();
    else if (v.paused) v.play().catch(() => {});
  }

  destroy() {
    this.destroyed = true;
    this.video.pause();
    this.video.removeAttribute("src");
    if (this.src) URL.revokeObjectURL(this.src);
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
    this.fetches = 0;
    this.last = null; // the last /wall/at answer shown
    this.seq = 0;
    this.gen = 0;
    this.timer = null;
    this.model = new WallModel({
      ...ctx,
      serverNow: () => this.position(),
      replayClock: () => this.spec || { speed: 1, paused: true },
      pastSeries: true,
      segment: (url) => segmentUrl(url, token()),
      views: { camera: RecordingTile },
      video: null,
    }, page);
  }

  get active() {
    return this.spec !== null;
  }

  /** The instant shown: a replay that catches up with the present stays there. */
  position() {
    const now = this.live();
    return Math.min(replayPosition(this.spec, now), now);
  }

  /** Show this replay (a new one or a change to the one shown); null: back to live. */
  set(spec) {
    this.spec = spec ? { ...spec } : null;
    this.gen += 1;
    clearTimeout(this.timer);
    if (!spec) {
      this.model.clear();
      this.last = null;
    } else {
      this.refresh();
    }
    this.onChange(this);
  }

  async refresh() {
    clearTimeout(this.timer);
    if (!this.spec) return;
    const gen = this.gen;
    const at = new Date(this.position() * 1000).toISOString();
    const q = new URLSearchParams({ t: at });
    if (this.screen) q.set("screen", String(this.screen));
    try {
      const answer = await this.model.ctx.api(`/api/v1/wall/at?${q}`);
      if (gen !== this.gen) return; // the replay changed meanwhile
      this.fetches += 1;
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
