// One view per tile kind. A view owns its element (`el`) and is told: update(data) for a
// JSON tile update, picture(header, jpeg) for a camera frame, video(header, data) for a
// live video frame of its camera (camera tiles), tick() every second,
// setDef(def) when the layout moves it, setLang() when the language changes. Views never
// talk to the hub themselves; `ctx` gives them the clock, the language and REST calls:
//   ctx = {lang(): "vi"|"en", serverNow(): epoch s, api(path): Promise<json>, ack(id)?,
//          video(camera, on)?: ask the hub for a camera's video, or pictures only}

import { formatAge, formatDateTime, formatNumber, formatShort, formatDate, formatTime, localParts, weekday, toDate } from "./format.js";
import { pick, t } from "./i18n.js";
import { rankingTile } from "./tile-ranking.js";
import { mapTile } from "./map.js";
import { el, svg } from "./dom.js";

export const STALE_AFTER_S = 10;

export class TileView {
  constructor(def, ctx) {
    this.def = def;
    this.ctx = ctx;
    this.data = null;
    this.el = el("div", `tile tile-${def.kind}`);
    this.el.dataset.tile = def.id;
    this.el.dataset.kind = def.kind;
    this.titleEl = el("div", "tile-title");
    this.body = el("div", "tile-body");
    this.el.append(this.titleEl, this.body);
    this.build();
    this.renderTitle();
    this.render();
  }

  get lang() {
    return this.ctx.lang();
  }

  build() {}

  title() {
    return pick(this.def, "title", this.lang) || pick(this.data, "name", this.lang);
  }

  renderTitle() {
    this.titleEl.textContent = this.title();
    this.titleEl.hidden = !this.titleEl.textContent;
  }

  render() {}

  setDef(def) {
    this.def = def;
    this.renderTitle();
  }

  update(data) {
    this.data = data;
    this.renderTitle();
    this.render();
  }

  setLang() {
    this.renderTitle();
    this.render();
  }

  picture() {}

  /**
   * Where the whole tile lies relative to its visible part (spanning tiles); null: same box.
   * On a wall screen that shows only part of this tile (`frame`: the whole tile, relative to
   * the slot's padding edge as `outerLeft`/`outerTop`): lay the whole tile out and let the
   * slot clip it, so a chart spanning two screens reads as one across them instead of being
   * drawn whole, squeezed, on each.
   */
  setFrame(frame) {
    const s = this.el.style;
    if (!frame) {
      s.position = s.left = s.top = s.width = s.height = "";
      return;
    }
    s.position = "absolute";
    s.left = `${frame.outerLeft}px`;
    s.top = `${frame.outerTop}px`;
    s.width = `${frame.width}px`;
    s.height = `${frame.height}px`;
  }

  tick() {}

  /** Shown again by a new layout or after a reconnection: views that load data reload it. */
  refresh() {}

  destroy() {}
}

// -- camera -----------------------------------------------------------------------------

const PROBLEM_ORDER = ["black", "frozen", "uniform", "scene_changed", "turned", "covered", "blurred"];

function problemKey(status) {
  if (!status) return null;
  if (status.state === "unknown_camera") return "unknown_camera"; // not in the registry: nothing will ever come
  if (status.online === false || status.state === "offline") return "offline";
  if (status.state === "starting") return "starting";
  const raw = (status.problems || []).map((p) => (typeof p === "string" ? p : p && (p.kind || p.name))).filter(Boolean);
  if (raw.length) return PROBLEM_ORDER.find((p) => raw.includes(p)) || raw[0];
  if (status.healthy === false) return "unhealthy";
  return null;
}

// Live video: WebCodecs decodes the camera's own H.264 into a canvas over the picture.
// frames waiting in the decoder, and more at each of VIDEO_SLOW_TICKS ticks running: it falls
// behind (a queue that holds steady is a decoder keeping up, late by the burst it was handed on
// joining: the lag rule below judges that one)
const VIDEO_MAX_QUEUE = 10;
const VIDEO_SLOW_TICKS = 3;
const VIDEO_STALL_MS = 2000; // fed this long with nothing drawn: it falls behind
// a decoder just configured is given this long for its first picture before any of the
// "behind" rules apply (starting one on a busy machine, with a whole group of pictures queued)
const VIDEO_START_MS = 6000;
const VIDEO_IDLE_MS = 3000; // no frame drawn this long: waiting (a newer picture shows instead of the last frame)
// after falling back to pictures, try video again this much later: 30 s, or `?video_retry=<s>`
// on the page's address (1 to 3600 s; for people checking a wall, and the tests)
const VIDEO_RETRY_MS = retryMs(globalThis.location ? new URLSearchParams(location.search).get("video_retry") : null);
const VIDEO_MAX_ERRORS = 3; // decoding errors within VIDEO_RETRY_MS before falling back
// the frame shown older than this (against the hub's clock) at three ticks running, and not
// catching up: it falls behind (a decoder or a link that keeps up but late: a steady backlog)
const VIDEO_MAX_LAG_S = 2.0;

function retryMs(param) {
  const s = Number(param);
  return param && Number.isFinite(s) && s >= 1 && s <= 3600 ? s * 1000 : 30000;
}

/** Whether this browser has WebCodecs' decoder at all (a page says so in its hello). */
export const hasVideoDecoder = () => typeof globalThis.VideoDecoder === "function";

const codecChecks = new Map(); // codec string -> Promise<boolean>

function codecSupported(codec) {
  let check = codecChecks.get(codec);
  if (!check) {
    check = hasVideoDecoder() && typeof codec === "string"
      ? VideoDecoder.isConfigSupported({ codec, optimizeForLatency: true }).then((r) => !!r.supported, () => false)
      : Promise.resolve(false);
    codecChecks.set(codec, check);
  }
  return check;
}

class CameraTile extends TileView {
  build() {
    this.frame = el("div", "cam-frame");
    this.img = el("img", "cam-img");
    this.img.alt = "";
    this.img.draggable = false;
    this.canvas = el("canvas", "cam-video");
    this.frame.append(this.img, this.canvas);
    this.dec = null; // VideoDecoder, configured for `decSig`
    this.decSig = null; // "codec|widthxheight" of the keyframe it was configured for
    this.decGen = 0;
    this.vqueue = null; // frames waiting for the codec check
    this.vneedKey = true;
    this.vstream = null;
    this.vmeta = new Map(); // chunk timestamp -> its header, until drawn
    this.vts = 0;
    this.vframes = 0;
    this.vfeedStart = 0; // when the first frame fed since the last one drawn went in (0: none)
    this.vdrawnAt = 0;
    this.vshownAt = 0; // captured_at of the newest frame shown
    this.vhold = 0; // frames captured at or before this are not drawn (a group of pictures sent again)
    this.vslowTicks = 0;
    this.vlastQueue = 0; // the decoder's queue at the previous tick
    this.vlagTicks = 0;
    this.vlastLag = 0; // how old the frame shown was at the previous tick, s
    this.verrors = [];
    this.vretry = null;
    this.setVideoMode(hasVideoDecoder() ? "waiting" : "snapshots", hasVideoDecoder() ? "" : "no-webcodecs");
    this.body.append(this.frame);
    this.statusEl = el("div", "cam-status");
    this.ageEl = el("div", "cam-age");
    this.el.append(this.statusEl, this.ageEl);
    this.capturedAt = null;
    this.header = null;
    this.url = null;
    this.loading = false;
    this.next = null;
  }

  title() {
    return pick(this.def, "title", this.lang) || (this.data && this.data.name) || this.def.camera || "";
  }

  picture(header, jpeg) {
    this.next = { header, jpeg };
    if (!this.loading) this._load();
  }

  // latest wins: while one picture decodes, newer ones replace each other in `next`
  async _load() {
    const item = this.next;
    this.next = null;
    if (!item || this.destroyed) return;
    this.loading = true;
    const url = URL.createObjectURL(item.jpeg);
    const probe = new Image();
    probe.src = url;
    try {
      await probe.decode();
      if (this.destroyed) {
        URL.revokeObjectURL(url);
      } else {
        this.img.src = url;
        if (this.url) URL.revokeObjectURL(this.url);
        this.url = url;
        this.header = item.header;
        // video frames may be newer than the picture: the badge tells the newest one shown
        this.capturedAt = Math.max(Number(item.header.captured_at) || 0, this.vmode === "playing" ? this.capturedAt || 0 : 0) || null;
        this.el.classList.add("has-picture");
        this._showNewest();
        this.el.dataset.seq = String(item.header.seq ?? "");
        this.el.dataset.camera = String(item.header.camera ?? "");
        this.render();
      }
    } catch {
      URL.revokeObjectURL(url);
    }
    this.loading = false;
    if (this.next) this._load();
  }

  setVideoMode(mode, reason = "") {
    this.vmode = mode;
    this.el.dataset.video = mode;
    this.el.dataset.videoReason = reason;
    this._showNewest();
  }

  // The canvas while it plays; after a pause in the video its last frame stays until a newer
  // picture arrives (no flip back to an older still, no flicker on a short stall).
  _showNewest() {
    const stillAt = this.header ? Number(this.header.captured_at) || 0 : 0;
    const video = this.vmode === "playing" || (this.vmode === "waiting" && this.vframes > 0 && this.vshownAt >= stillAt);
    this.el.classList.toggle("has-video", video);
  }

  /** A frame of this camera's live video (IOCV header, Annex B access unit). */
  video(header, data) {
    if (this.destroyed || this.vmode === "snapshots") return;
    if (header.key) {
      // a group of pictures sent again (a reconnection, the other stream) starts before what is
      // shown: decoded for its references, drawn only from what is newer (never back in time;
      // a clock that jumped back seconds is followed)
      const at = Number(header.captured_at) || 0;
      if (at && at <= this.vshownAt && at > this.vshownAt - 5) this.vhold = this.vshownAt;
      const sig = `${header.codec}|${header.width}x${header.height}`;
      if (sig !== this.decSig) this._configure(header, sig); // a new camera, stream or resolution
      this.vneedKey = false;
      this.vstream = header.stream;
    } else if (this.vneedKey || header.stream !== this.vstream) {
      return; // a decoder starts only at a keyframe
    }
    if (this.vqueue) {
      if (this.vqueue.length < 400) this.vqueue.push({ header, data });
      return;
    }
    this._decode(header, data);
  }

  _configure(header, sig) {
    this.decSig = sig;
    this.vqueue = [];
    const mine = ++this.decGen;
    codecSupported(header.codec).then((ok) => {
      if (mine !== this.decGen || this.destroyed || this.vmode === "snapshots") return;
      const queued = this.vqueue || [];
      this.vqueue = null;
      if (!ok) return this._fallBack("codec");
      try {
        if (!this.dec || this.dec.state === "closed") {
          this.dec = new VideoDecoder({ output: (f) => this._draw(f), error: (e) => this._decodeError(e) });
        }
        // Annex B with SPS/PPS in every keyframe: no description
        this.dec.configure({ codec: header.codec, optimizeForLatency: true });
        this.vstartedAt = performance.now();
        this.vstarted = false;
      } catch (err) {
        console.warn("camera video: configure failed", header.codec, err);
        return this._fallBack("codec");
      }
      for (const f of queued) this._decode(f.header, f.data);
    });
  }

  _decode(header, data) {
    const dec = this.dec;
    if (!dec || dec.state !== "configured") return;
    const ts = ++this.vts;
    this.vmeta.set(ts, header);
    if (this.vmeta.size > 500) this.vmeta.delete(this.vmeta.keys().next().value);
    try {
      dec.decode(new EncodedVideoChunk({ type: header.key ? "key" : "delta", timestamp: ts, data }));
    } catch (err) {
      this._decodeError(err);
      return;
    }
    if (!this.vfeedStart) this.vfeedStart = performance.now();
  }

  _draw(frame) {
    try {
      const head = this.vmeta.get(frame.timestamp);
      this.vmeta.delete(frame.timestamp);
      this.vfeedStart = 0; // the decoder keeps up
      this.vstarted = true;
      if (this.destroyed || this.vmode === "snapshots") return;
      // within a stream, every picture the decoder gives is drawn: with B-frames a reference
      // comes out after pictures sent later than it, and is not from the past
      const at = head ? Number(head.captured_at) || 0 : 0;
      if (at && at <= this.vhold && at > this.vhold - 5) return;
      if (at) this.vshownAt = at < this.vshownAt - 5 ? at : Math.max(this.vshownAt, at);
      const w = frame.displayWidth;
      const h = frame.displayHeight;
      const c = this.canvas;
      if (c.width !== w || c.height !== h) {
        c.width = w;
        c.height = h;
      }
      if (!this.cctx) this.cctx = c.getContext("2d");
      this.cctx.drawImage(frame, 0, 0, w, h);
      this.vframes += 1;
      this.vdrawnAt = performance.now();
      const ds = this.el.dataset;
      ds.videoFrames = String(this.vframes);
      if (head) {
        ds.videoLastSeq = String(head.seq);
        ds.videoCapturedAt = String(head.captured_at); // when the camera service had it (for people measuring a wall)
        ds.videoStream = String(head.stream);
        this.capturedAt = Number(head.captured_at) || this.capturedAt;
      }
      if (this.vframes === 1) ds.videoFirstDrawn = String(this.vdrawnAt);
      if (this.vmode !== "playing") {
        this.setVideoMode("playing");
        this.render();
      }
    } finally {
      frame.close();
    }
  }

  _resetDecoder() {
    this.decGen += 1;
    this.decSig = null;
    this.vqueue = null;
    this.vneedKey = true;
    this.vmeta.clear();
    this.vfeedStart = 0;
    this.vslowTicks = 0;
    this.vlastQueue = 0;
    this.vlagTicks = 0;
    if (this.dec && this.dec.state !== "closed") {
      try {
        this.dec.close();
      } catch { /* closed already */ }
    }
    this.dec = null;
  }

  _decodeError(err) {
    console.warn("camera video: decoding failed, waiting for a keyframe", this.def.camera, err);
    this._resetDecoder();
    const now = performance.now();
    this.verrors = this.verrors.filter((t) => now - t < VIDEO_RETRY_MS);
    this.verrors.push(now);
    if (this.verrors.length >= VIDEO_MAX_ERRORS) this._fallBack("errors");
  }

  /** Pictures only for this camera (no decoder, codec refused, decoding behind); video again later. */
  _fallBack(reason) {
    this._resetDecoder();
    this.setVideoMode("snapshots", reason);
    this.render();
    if (this.ctx.video) this.ctx.video(this.def.camera, false);
    clearTimeout(this.vretry);
    this.vretry = setTimeout(() => this._stepUp(), VIDEO_RETRY_MS);
  }

  _stepUp() {
    if (this.destroyed) return;
    this.verrors = [];
    this.setVideoMode("waiting");
    if (this.ctx.video) this.ctx.video(this.def.camera, true); // the hub sends its group of pictures again
  }

  _videoTick() {
    if (this.vmode === "snapshots") return;
    const now = performance.now();
    if (this.dec && this.dec.state === "configured" && !this.vstarted && now - this.vstartedAt < VIDEO_START_MS) {
      this.vslowTicks = 0;
      this.vfeedStart = 0;
    } else if (this.dec && this.dec.state === "configured") {
      // a long queue that keeps growing: a burst (the group of pictures sent on joining) drains,
      // or at worst holds steady on a busy machine
      const queue = this.dec.decodeQueueSize;
      this.vslowTicks = queue > VIDEO_MAX_QUEUE && queue > this.vlastQueue ? this.vslowTicks + 1 : 0;
      this.vlastQueue = queue;
      // late: an old frame shown while newer ones come, and not catching up (a group of
      // pictures sent on joining is old too, but drains within a tick or two)
      const drawing = this.vmode === "playing" && this.vshownAt && now - this.vdrawnAt < 1000; // not a pause
      const lag = drawing ? this.ctx.serverNow() - this.vshownAt : 0;
      this.vlagTicks = lag > VIDEO_MAX_LAG_S && lag > this.vlastLag - 0.25 ? this.vlagTicks + 1 : 0;
      this.vlastLag = lag;
      if (this.vslowTicks >= VIDEO_SLOW_TICKS || this.vlagTicks >= 3 || (this.vfeedStart && now - this.vfeedStart > VIDEO_STALL_MS)) {
        const why = this.vslowTicks >= VIDEO_SLOW_TICKS ? `${queue} frames queued` : this.vlagTicks >= 3 ? `${lag.toFixed(1)} s late`
          : `nothing drawn for ${((now - this.vfeedStart) / 1000).toFixed(1)} s`;
        console.warn("camera video: decoding falls behind, pictures instead", this.def.camera, why);
        return this._fallBack("behind");
      }
    }
    if (this.vmode === "playing" && now - this.vdrawnAt > VIDEO_IDLE_MS) this.setVideoMode("waiting");
  }

  render() {
    const now = this.ctx.serverNow();
    const age = this.capturedAt ? now - this.capturedAt : null;
    let problem = problemKey(this.data);
    if (!problem && age !== null && age > STALE_AFTER_S) problem = "stale";
    const grey = problem !== null || age === null;
    this.el.classList.toggle("stale", grey);
    this.el.dataset.state = problem || (age === null ? "waiting" : "ok");
    let text = "";
    if (problem) text = t(this.lang, `cam.${problem}`);
    else if (age === null) text = t(this.lang, "cam.no_picture");
    this.statusEl.textContent = text;
    this.statusEl.hidden = !text;
    this.statusEl.classList.toggle("alarm", problem !== null && problem !== "starting");
    this.ageEl.textContent = age === null ? "" : age < 1 ? t(this.lang, "cam.now") : t(this.lang, "cam.age", { age: formatAge(age, this.lang) });
    this.ageEl.hidden = age === null;
    this.ageEl.title = this.capturedAt ? formatDateTime(this.capturedAt) : "";
  }

  tick() {
    this._videoTick();
    this.render();
  }

  setFrame(frame) {
    const s = this.frame.style;
    if (!frame) {
      s.left = s.top = "0";
      s.width = s.height = "100%";
      return;
    }
    s.left = `${frame.left}px`;
    s.top = `${frame.top}px`;
    s.width = `${frame.width}px`;
    s.height = `${frame.height}px`;
  }

  setDef(def) {
    if (def.camera !== this.def.camera) {
      this.capturedAt = null;
      this.img.removeAttribute("src");
      this.header = null;
      this.el.classList.remove("has-picture");
      // another camera: none of the old one's video may show, and it gets its own try at video
      this._resetDecoder();
      clearTimeout(this.vretry);
      this.vframes = 0;
      this.vshownAt = 0;
      this.vhold = 0;
      this.verrors = [];
      if (this.vmode === "snapshots" && hasVideoDecoder() && this.ctx.video) this.ctx.video(this.def.camera, true);
      this.setVideoMode(hasVideoDecoder() ? "waiting" : "snapshots", hasVideoDecoder() ? "" : "no-webcodecs");
    }
    super.setDef(def);
    this.render();
  }

  destroy() {
    this.destroyed = true;
    if (this.url) URL.revokeObjectURL(this.url);
    clearTimeout(this.vretry);
    this._resetDecoder();
    // this camera's video was refused for this tile only: another tile may play it
    if (this.vmode === "snapshots" && this.ctx.video && hasVideoDecoder()) this.ctx.video(this.def.camera, true);
  }
}

// -- kpi --------------------------------------------------------------------------------

const TREND = { up: "▲", down: "▼", flat: "▬" };

class KpiTile extends TileView {
  build() {
    const row = el("div", "kpi-value");
    this.numberEl = el("span", "kpi-number");
    this.unitEl = el("span", "kpi-unit");
    this.trendEl = el("span", "kpi-trend");
    this.trendEl.setAttribute("role", "img");
    row.append(this.numberEl, this.unitEl, this.trendEl);
    this.metaEl = el("div", "kpi-meta");
    this.timeEl = el("div", "kpi-time");
    this.body.append(row, this.metaEl, this.timeEl);
  }

  /** A counter's reading stamped at a local midnight: a day's count. */
  dayCount(d) {
    if (d.kind !== "counter") return false;
    const at = localParts(d.ts);
    return !!at && at.hour === "00" && at.minute === "00" && at.second === "00";
  }

  /** A day's count for today: the count so far. */
  todaysCount(d) {
    const at = localParts(d.ts);
    const now = localParts(this.ctx.serverNow());
    return this.dayCount(d) && !!now && at.year === now.year && at.month === now.month && at.day === now.day;
  }

  render() {
    const d = this.data;
    const lang = this.lang;
    const today = !!d && this.todaysCount(d);
    // a day's counter at 0 after midnight is "nothing yet", not a count of 0 at 00:00
    const none = !d || d.value === null || d.value === undefined || (today && Number(d.value) === 0);
    this.el.dataset.empty = none ? (d && today ? "today" : "none") : "";
    if (none) {
      this.numberEl.textContent = "—";
      this.unitEl.textContent = "";
      this.trendEl.textContent = "";
      this.metaEl.textContent = t(lang, d && today ? "kpi.none_today" : "kpi.no_data");
      this.timeEl.textContent = "";
      this.el.dataset.status = "none";
      return;
    }
    this.numberEl.textContent = formatNumber(d.value, undefined, lang);
    // long figures ("1,234,567.5") get a smaller size, so they fit the tile's width whole
    this.numberEl.style.setProperty("--chars", String(Math.max(4, this.numberEl.textContent.length)));
    this.numberEl.dataset.value = String(d.value);
    this.unitEl.textContent = pick(d, "unit", lang) || d.unit || "";
    this.el.dataset.status = d.status || "none";
    const trend = d.trend && TREND[d.trend];
    this.trendEl.textContent = trend || "";
    // green when it moved the way the catalogue says is better for this KPI (up for dossiers
    // on time, down for the AQI), red the other way; the title says it in words
    const good = d.trend === "flat" || !d.trend ? "flat"
      : (d.trend === "up") === (d.better !== "lower") ? "good" : "bad";
    this.trendEl.dataset.judge = good;
    const said = trend ? [t(lang, `kpi.trend_${d.trend}`, { previous: formatNumber(d.previous, undefined, lang) })] : [];
    if (trend && good !== "flat") said.push(t(lang, `kpi.judge_${good}`, { better: t(lang, `kpi.better_${d.better === "lower" ? "lower" : "higher"}`) }));
    this.trendEl.title = said.join(" — ");
    if (trend) this.trendEl.setAttribute("aria-label", this.trendEl.title);
    else this.trendEl.removeAttribute("aria-label");
    const parts = [];
    if (d.target !== null && d.target !== undefined) {
      const sign = d.better === "lower" ? "≤" : "≥";
      const verdict = d.status === "met" ? ` · ${t(lang, "kpi.met")}` : d.status === "missed" ? ` · ${t(lang, "kpi.missed")}` : "";
      parts.push(`${t(lang, "kpi.target")} ${sign} ${formatNumber(d.target, undefined, lang)}${d.unit === "%" ? " %" : ""}${verdict}`);
    } else if (d.previous !== null && d.previous !== undefined) {
      parts.push(`${t(lang, "kpi.previous")}: ${formatNumber(d.previous, undefined, lang)}`);
    }
    this.metaEl.textContent = parts.join(" ");
    // a counter's stamp is its period's start: say how far today's count has got instead
    // and an earlier day's count is that whole day's, not something that happened at 00:00
    this.timeEl.textContent = today ? t(lang, "kpi.today_until", { time: formatTime(d.received_at || this.ctx.serverNow(), false) })
      : this.dayCount(d) ? t(lang, "kpi.whole_day", { date: formatDate(d.ts) })
        : d.ts ? formatDateTime(d.ts, false) : "";
  }
}

// -- chart ------------------------------------------------------------------------------

const BUCKET_S = { m: 60, h: 3600, d: 86400, w: 7 * 86400 };
const REFETCH_EVERY_S = 300; // safety net: readings the live stream never showed, the sliding window
const LIVE_REFETCH_GAP_S = 10; // refetches a live value asks for (a correction, a gap) at most this often
const SETTLED_S = 30; // a correction received this long before a fetch is in its answer
const MONTH_AT_LEAST_MS = 28 * 86400 * 1000;

/** A bucket's length in ms, or null for months (their length varies: those charts refetch). */
function bucketMs(bucket) {
  const m = /^(\d+)([mhdw])$/.exec(bucket || "");
  return m ? Number(m[1]) * BUCKET_S[m[2]] * 1000 : null;
}

/**
 * A tile that loads its data over REST when shown (`load()`, which sets `loadedAt` from the
 * server clock and counts `loads`): again when the layout is shown again, as a safety net
 * every `refetchEvery` seconds, and when live readings ask for it (`reloadSoon`) at most
 * every `refetchGap` seconds however many come. Charts, rankings and maps pace the same way.
 */
class FetchingTile extends TileView {
  get refetchEvery() {
    return REFETCH_EVERY_S;
  }

  get refetchGap() {
    return LIVE_REFETCH_GAP_S;
  }

  /** The layout was shown again (a new version, a reconnection): its data may have moved. */
  refresh() {
    this.load();
  }

  tick() {
    if (this.loads && this.ctx.serverNow() - this.loadedAt > this.refetchEvery) this.load();
  }

  /** A refetch a live value asked for: now, or once a little later if one ran just now. */
  reloadSoon() {
    if (this.later) return;
    const wait = (this.loadedAt + this.refetchGap - this.ctx.serverNow()) * 1000;
    if (!(wait > 0)) return this.load();
    this.later = setTimeout(() => this.load(), wait);
  }
}

/**
 * A chart loads its series once when it is shown (a new layout, its own new definition, a
 * reconnection) and then puts every live reading the hub sends into the right bucket itself,
 * with the series' own aggregate (sum for counters, mean otherwise): a reading no longer
 * makes every page query /series (dashboards/PROTOCOL.md, "chart").
 */
class ChartTile extends FetchingTile {
  build() {
    this.svg = svg("svg", { class: "chart-svg" });
    this.msg = el("div", "chart-msg");
    this.body.append(this.svg, this.msg);
    this.points = null;
    this.loadedAt = 0; // server clock, when the last fetch started
    this.origin = null; // ms: where the buckets start (the answer's aligned `start`)
    this.aggregate = "mean";
    this.newest = -Infinity; // ms: the newest reading counted (series' last_ts, then live values)
    this.inflight = 0;
    this.queue = []; // live readings that came during a fetch, applied after its answer
    this.corrected = null;
    this.later = null;
    this.fetches = 0;
    this.loads = 0; // numbers the fetches: only the newest one's answer is drawn
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.body);
    this.load();
  }

  settings() {
    const d = this.data || {};
    return {
      kpi: this.def.kpi || d.kpi,
      area: this.def.area || d.area,
      bucket: this.def.bucket || d.bucket || "1h",
      hours: Number(this.def.hours || d.hours || 24),
    };
  }

  update(data) {
    super.update(data);
    this.live(data);
  }

  live(d) {
    if (!d || d.ts === null || d.ts === undefined || d.value === null || d.value === undefined) return;
    const s = this.settings();
    // during an announced switch the same tile id may already chart something else
    if ((d.kpi || null) !== (s.kpi || null) || (d.area || null) !== (s.area || null)) return;
    const at = toDate(d.ts);
    const v = Number(d.value);
    if (!at || !Number.isFinite(v)) return;
    if (Number(d.rev) > 0) {
      // a correction may change any bucket, by an amount only the server knows
      const key = `${at.getTime()}|${d.rev}`;
      if (key === this.corrected) return;
      this.corrected = key;
      const received = toDate(d.changed_at);
      if (received && this.loadedAt && received.getTime() / 1000 < this.loadedAt - SETTLED_S) return;
      return this.reloadSoon();
    }
    const r = { ms: at.getTime(), v };
    if (this.inflight) this.queue.push(r);
    else if (this.points && this.add(r)) this.draw();
  }

  /** Puts a reading into its bucket; false when it changed nothing drawn. */
  add(r) {
    if (r.ms <= this.newest) return false; // in the series already, or seen
    const step = bucketMs(this.settings().bucket);
    const pts = this.points;
    const last = pts[pts.length - 1];
    if (!last) {
      this.reloadSoon(); // nothing to tell where buckets start, nor how big the batch was
      return false;
    }
    const lastStart = last.t.getTime();
    if (r.ms < lastStart) return false; // older than the newest counted: the safety net has it
    // months are 28 days or more: a reading that soon after the last one's start is in it
    const inLast = r.ms < lastStart + (step === null ? MONTH_AT_LEAST_MS : step);
    const start = step === null || this.origin === null ? null : this.origin + Math.floor((r.ms - this.origin) / step) * step;
    if (inLast) {
      last.v = this.aggregate === "sum" ? last.v + r.v : (last.v * last.n + r.v) / (last.n + 1);
      last.n += 1;
    } else if (start !== null && start === lastStart + step) {
      pts.push({ t: new Date(start), v: r.v, n: 1 });
      const from = this.ctx.serverNow() * 1000 - this.settings().hours * 3600 * 1000 - step;
      while (pts.length > 1 && pts[0].t.getTime() < from) pts.shift();
    } else {
      // a new month, or buckets between that came with no live value of their own (a batch
      // publishes only its newest reading): the server knows
      this.reloadSoon();
      return false;
    }
    this.newest = r.ms;
    return true;
  }

  async load() {
    const s = this.settings();
    clearTimeout(this.later);
    this.later = null;
    if (!s.kpi) return;
    const mine = ++this.loads;
    this.loadedAt = this.ctx.serverNow();
    const end = new Date(this.loadedAt * 1000);
    const start = new Date(end.getTime() - s.hours * 3600 * 1000);
    const q = new URLSearchParams({ kpi: s.kpi, bucket: s.bucket, start: start.toISOString(), end: end.toISOString() });
    if (s.area) q.set("area", s.area);
    // a replay draws the series as it was known then: later corrections are not shown yet
    if (this.ctx.pastSeries) q.set("as_of", end.toISOString());
    if (!this.points) this.showMessage(t(this.lang, "chart.loading"));
    this.inflight += 1;
    this.fetches += 1;
    this.el.dataset.fetches = String(this.fetches);
    let res = null;
    try {
      res = await this.ctx.api(`/api/v1/series?${q}`);
    } catch (err) {
      if (mine === this.loads) {
        this.failed = true;
        console.warn("chart: series failed", s, err);
      }
    } finally {
      this.inflight -= 1;
    }
    if (this.destroyed) return;
    if (res && mine === this.loads) {
      this.units = { vi: res.unit_vi || res.unit || "", en: res.unit_en || res.unit || "" };
      this.aggregate = res.aggregate === "sum" ? "sum" : "mean";
      const origin = toDate(res.start);
      this.origin = origin ? origin.getTime() : null;
      this.points = (res.points || [])
        .map((p) => ({ t: toDate(p.bucket), v: Number(p.value), n: Number(p.n) || 1, last: toDate(p.last_ts) }))
        .filter((p) => p.t && Number.isFinite(p.v));
      this.newest = Math.max(-Infinity, ...this.points.map((p) => (p.last ? p.last.getTime() : p.t.getTime())));
      this.failed = false;
    }
    if (!this.inflight) { // no answer on its way that might already hold them
      const queued = this.queue;
      this.queue = [];
      if (this.points) for (const r of queued) this.add(r);
    }
    this.draw();
  }

  showMessage(text) {
    this.msg.textContent = text;
    this.msg.hidden = !text;
  }

  render() {
    this.draw();
  }

  draw() {
    const svgEl = this.svg;
    if (!svgEl) return;
    svgEl.replaceChildren();
    const lang = this.lang;
    if (!this.points) {
      this.showMessage(this.failed ? t(lang, "chart.failed") : t(lang, "chart.loading"));
      return;
    }
    if (this.failed && !this.points.length) return this.showMessage(t(lang, "chart.failed"));
    if (!this.points.length) return this.showMessage(t(lang, "chart.empty"));
    this.showMessage("");
    const W = Math.max(40, this.body.clientWidth);
    const H = Math.max(30, this.body.clientHeight);
    svgEl.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const font = Math.max(10, Math.min(H * 0.1, W * 0.045));
    const padTop = font * 1.6;
    const padBottom = font * 1.5;
    const padX = font * 0.4;
    const pts = this.points;
    const t0 = pts[0].t.getTime();
    const t1 = pts[pts.length - 1].t.getTime();
    let lo = Math.min(...pts.map((p) => p.v));
    let hi = Math.max(...pts.map((p) => p.v));
    if (hi === lo) {
      hi += Math.abs(hi) * 0.1 || 1;
      lo -= Math.abs(lo) * 0.1 || 1;
    }
    const x = (p) => padX + (t1 === t0 ? (W - 2 * padX) / 2 : ((p.t.getTime() - t0) / (t1 - t0)) * (W - 2 * padX));
    const y = (v) => padTop + (1 - (v - lo) / (hi - lo)) * (H - padTop - padBottom);
    const last = pts[pts.length - 1];
    // the bucket now running is partial (today's dossiers so far, not a plunge to 0): its
    // stretch of the line is dashed, its dot hollow, and the axis says up to when it counts
    const nowMs = this.ctx.serverNow() * 1000;
    const bucket = this.settings().bucket;
    const step = bucketMs(bucket);
    const partial = pts.length > 1 && (step === null ? nowMs - last.t.getTime() < MONTH_AT_LEAST_MS : last.t.getTime() + step > nowMs);
    const whole = partial ? pts.slice(0, -1) : pts;
    const path = (list) => list.map((p, i) => `${i ? "L" : "M"}${x(p).toFixed(1)},${y(p.v).toFixed(1)}`).join("");
    const line = path(pts);
    const base = (H - padBottom).toFixed(1);
    const area = `${line}L${x(last).toFixed(1)},${base}L${x(pts[0]).toFixed(1)},${base}Z`;
    for (const v of [lo, (lo + hi) / 2, hi]) {
      svgEl.append(svg("line", { class: "chart-grid", x1: padX, x2: W - padX, y1: y(v), y2: y(v) }));
    }
    const stroke = Math.max(2, font / 6);
    svgEl.append(svg("path", { class: "chart-area", d: area }));
    svgEl.append(svg("path", { class: "chart-line", d: path(whole), "stroke-width": stroke }));
    if (partial) {
      svgEl.append(svg("path", { class: "chart-partial", d: path(pts.slice(-2)), "stroke-width": stroke,
        "stroke-dasharray": `${(stroke * 2.5).toFixed(1)} ${(stroke * 2).toFixed(1)}` }));
    }
    this.el.dataset.partial = String(partial);
    Object.assign(this.el.dataset, { points: String(pts.length), lastBucket: last.t.toISOString(), lastValue: String(last.v), lastN: String(last.n) });
    svgEl.append(svg("circle", { class: `chart-dot${partial ? " partial" : ""}`, cx: x(last), cy: y(last.v), r: Math.max(3, font / 3.5),
      "stroke-width": partial ? stroke : 0 }));
    const u = (this.units && this.units[lang]) || "";
    const unit = u && u.length <= 8 ? ` ${u}` : "";
    svgEl.append(svg("text", { class: "chart-last", x: W - padX, y: font * 1.15, "text-anchor": "end", "font-size": font * 1.15 },
      `${formatNumber(last.v, undefined, lang)}${unit}`));
    svgEl.append(svg("text", { class: "chart-label", x: padX, y: font * 1.05, "font-size": font * 0.8 },
      `${t(lang, "chart.max")} ${formatNumber(Math.max(...pts.map((p) => p.v)), undefined, lang)}`));
    const day = this.settings().bucket.endsWith("h") || this.settings().bucket.endsWith("m");
    const label = (d) => (day ? formatShort(d) : formatDate(d));
    svgEl.append(svg("text", { class: "chart-label", x: padX, y: H - font * 0.35, "font-size": font * 0.8 }, label(pts[0].t)));
    const until = formatTime(nowMs / 1000, false);
    const lastLabel = !partial ? label(last.t) : t(lang, step !== null && step < 86400000 ? "chart.partial" : "chart.partial_today", { time: until });
    svgEl.append(svg("text", { class: `chart-label${partial ? " chart-partial-label" : ""}`, x: W - padX, y: H - font * 0.35,
      "font-size": font * 0.8, "text-anchor": "end" }, lastLabel));
  }

  destroy() {
    this.resize.disconnect();
    clearTimeout(this.later);
    this.destroyed = true;
  }
}

// -- camera health ----------------------------------------------------------------------

/**
 * Fills `list` with as many of `items` (elements) as it shows whole, and a last "+N more"
 * item for the rest: a list never ends in an item cut mid-line. The list must have a height
 * of its own (its overflow hidden).
 */
function fitList(list, items, more) {
  list.replaceChildren(...items);
  const over = () => list.scrollHeight > list.clientHeight + 1;
  if (!items.length || !over()) return items.length;
  let shown = items.length;
  const tail = el("li", "list-more");
  list.append(tail);
  while (shown > 0 && over()) {
    shown -= 1;
    items[shown].remove();
    tail.textContent = more(items.length - shown);
  }
  return shown;
}

/** A tile whose list is fitted again when the tile changes size. */
class FittedTile extends TileView {
  build() {
    this.resize = new ResizeObserver(() => this.render());
    this.resize.observe(this.body);
  }

  destroy() {
    this.resize.disconnect();
  }
}

const HEALTH_BAD_FIRST = (c) => (!c.state || c.state === "ok" || c.state === "online" ? 1 : 0);

class CameraHealthTile extends FittedTile {
  build() {
    super.build();
    this.summary = el("div", "health-summary");
    this.problems = el("ul", "health-problems");
    this.list = el("ul", "health-grid");
    this.body.append(this.summary, this.problems, this.list);
  }

  render() {
    const d = this.data;
    const lang = this.lang;
    if (!d) {
      this.summary.textContent = "—";
      return;
    }
    this.summary.replaceChildren(
      el("span", "health-online", formatNumber(d.online, 0, lang)),
      el("span", "health-total", ` / ${formatNumber(d.total, 0, lang)}`),
      el("span", "health-label", ` ${t(lang, "health.online")}`),
    );
    this.el.dataset.ok = String(d.online === d.total);
    const rows = [];
    if (d.offline) rows.push(["offline", d.offline]);
    for (const [k, n] of Object.entries(d.problems || {})) if (n) rows.push([k, n]);
    this.problems.replaceChildren(...rows.map(([k, n]) => {
      const li = el("li", `health-problem p-${k}`);
      li.append(el("span", "name", t(lang, `cam.${k}`)), el("span", "count", formatNumber(n, 0, lang)));
      return li;
    }));
    if (!rows.length) this.problems.append(el("li", "health-ok", t(lang, "health.all_ok")));
    // every camera, compactly: a dot in its state's colour and its name, faulty ones first
    const cams = [...(d.cameras || [])].sort((a, b) => HEALTH_BAD_FIRST(a) - HEALTH_BAD_FIRST(b));
    const items = cams.map((c) => {
      const ok = HEALTH_BAD_FIRST(c) === 1;
      const state = ok ? t(lang, "health.ok") : t(lang, `cam.${c.state}`);
      const li = el("li", `health-cam ${ok ? "ok" : "bad"}`);
      li.dataset.camera = c.id;
      li.dataset.state = c.state || "ok";
      li.title = `${c.name || c.id}: ${state}`;
      li.append(el("span", "dot"), el("span", "name", c.name || c.id));
      if (!ok) li.append(el("span", "state", state));
      return li;
    });
    this.el.dataset.shown = String(fitList(this.list, items, (n) => t(lang, "list.more", { n: formatNumber(n, 0, lang) })));
  }
}

// -- alerts -----------------------------------------------------------------------------

/** An alert as a list item; with `onAck`, open unacknowledged ones get a button (an ended
 * alert needs nobody's attention any more). */
export function alertItem(a, lang, onAck) {
  const li = el("li", `alert sev-${a.severity || "info"}${a.acked_by ? " acked" : ""}${a.ended_at ? " ended" : ""}`);
  li.dataset.alert = String(a.id);
  const head = el("div", "alert-head");
  head.append(el("span", "alert-sev", t(lang, `sev.${a.severity || "info"}`)), el("span", "alert-time", formatShort(a.started_at)));
  const msg = el("div", "alert-msg", pick(a, "message", lang) || a.kind || "");
  const meta = el("div", "alert-meta");
  // the source ("tthc.on_time_rate/347") is for people debugging, not for reading on the wall
  if (a.source) li.title = a.source;
  const bits = [];
  if (a.ended_at) bits.push(t(lang, "alerts.ended"));
  if (a.acked_by) bits.push(t(lang, "alerts.acked_by", { who: a.acked_by }));
  meta.textContent = bits.filter(Boolean).join(" · ");
  li.append(head, msg, meta);
  if (onAck && !a.acked_by && !a.ended_at) {
    const b = el("button", "alert-ack", t(lang, "alerts.ack"));
    b.type = "button";
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        await onAck(a.id);
      } finally {
        b.disabled = false;
      }
    });
    li.append(b);
  }
  return li;
}

const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };

/** Open before ended, then the most severe, then the newest: what an operator reads first. */
export function alertOrder(a, b) {
  return (a.ended_at ? 1 : 0) - (b.ended_at ? 1 : 0)
    || (SEVERITY_RANK[a.severity] ?? 3) - (SEVERITY_RANK[b.severity] ?? 3)
    || String(b.started_at || "").localeCompare(String(a.started_at || ""));
}

class AlertsTile extends FittedTile {
  build() {
    super.build();
    this.count = el("div", "alert-count");
    this.list = el("ul", "alert-list");
    this.body.append(this.count, this.list);
  }

  render() {
    const alerts = [...((this.data && this.data.alerts) || [])].sort(alertOrder);
    const lang = this.lang;
    const open = alerts.filter((a) => !a.ended_at).length;
    this.count.textContent = t(lang, "alerts.open_count", { n: formatNumber(open, 0, lang) });
    this.count.hidden = !alerts.length;
    this.el.dataset.open = String(open);
    if (!alerts.length) {
      this.list.replaceChildren(el("li", "alert-none", t(lang, "alerts.none")));
      return;
    }
    const items = alerts.map((a) => alertItem(a, lang, this.ctx.ack));
    this.el.dataset.shown = String(fitList(this.list, items, (n) => t(lang, "list.more", { n: formatNumber(n, 0, lang) })));
  }
}

// -- clock, text, anything else -----------------------------------------------------------

class ClockTile extends TileView {
  build() {
    this.timeEl = el("div", "clock-time");
    this.dateEl = el("div", "clock-date");
    this.body.append(this.timeEl, this.dateEl);
  }

  render() {
    const now = this.ctx.serverNow();
    this.timeEl.textContent = formatTime(now);
    this.dateEl.textContent = `${weekday(now, this.lang)}, ${formatDate(now)}`;
    this.el.dataset.now = formatDateTime(now);
  }

  tick() {
    this.render();
  }
}

class TextTile extends TileView {
  build() {
    this.textEl = el("div", "text-body");
    this.body.append(this.textEl);
  }

  render() {
    this.textEl.textContent = pick(this.data, "text", this.lang) || pick(this.def, "text", this.lang);
  }
}

const KINDS = {
  camera: CameraTile, kpi: KpiTile, chart: ChartTile, camera_health: CameraHealthTile,
  alerts: AlertsTile, clock: ClockTile, text: TextTile,
  ranking: rankingTile(FetchingTile), map: mapTile(FetchingTile),
};

export function createTile(def, ctx) {
  // a replay of the past brings its own views for some kinds (recordings for cameras)
  const View = (ctx.views && ctx.views[def.kind]) || KINDS[def.kind] || TileView;
  return new View(def, ctx);
}

/** Whether a view made for `a` can show `b` (same kind and source; only the place changed). */
export function sameSource(a, b) {
  return ["kind", "camera", "kpi", "area", "level", "period", "bucket", "hours"].every((k) => (a[k] ?? null) === (b[k] ?? null));
}
