// What every page does with the hub's messages: keep the latest state of each tile, apply a
// layout at its `at` time (server clock), and keep tile views alive across layouts and
// reconnections when they show the same thing. Pages say only where a view goes.

import { createTile, sameSource } from "./tiles.js";

export class WallModel {
  /**
   * ctx: the tiles' context (see tiles.js).
   * page: {mount(view), unmount(view), place(view, def, msg), applied?(record)}.
   */
  constructor(ctx, page) {
    // views ask for a camera's video, or pictures only, through the model: it says it again
    // after a reconnection
    this.ctx = { ...ctx, video: (camera, on) => this.videoWish(camera, on) };
    this.page = page;
    this.sender = null; // (message) => void: the page's hub.send
    this.videoOff = new Set(); // cameras some view asked pictures only for
    this.gops = new Map(); // camera -> [{header, data}] since its last keyframe
    this.videoSince = new Map(); // camera -> performance.now() of its first video frame here
    this.videoFrames = 0; // video frames received (for people debugging a wall, and tests)
    this.views = new Map(); // tile id -> view, for the layout shown now
    this.states = new Map(); // tile id -> latest {kind, seq, data}
    this.pictures = new Map(); // tile id -> latest {header, jpeg}
    this.current = null; // the layout message shown now
    this.pending = null; // the one announced for later
    this.signature = null;
    this.timer = null;
    this.history = []; // what was applied when, for people debugging a wall (and for tests)
    this._tick();
  }

  /** A new connection: sequence numbers start again. */
  welcome() {
    for (const s of this.states.values()) s.seq = -Infinity;
    this.gops.clear(); // the hub sends each stream's group of pictures again
    for (const camera of this.videoOff) this._send({ type: "video", on: false, camera });
  }

  _send(msg) {
    if (this.sender) this.sender(msg);
  }

  videoWish(camera, on) {
    if (!camera || this.videoOff.has(camera) === !on) return;
    if (on) this.videoOff.delete(camera);
    else this.videoOff.add(camera);
    this._send({ type: "video", on, camera });
  }

  /**
   * A live video frame (dashboards/PROTOCOL.md, "Live video"): to every view of its camera.
   * The current group of pictures is kept per camera, so that a view made later (a layout
   * announced ahead, shown at its `at`) starts with a picture at once.
   */
  video(header, data) {
    const camera = header.camera;
    if (!this.videoSince.has(camera)) this.videoSince.set(camera, performance.now());
    this.videoFrames += 1;
    let gop = this.gops.get(camera);
    if (header.key) {
      gop = [];
      this.gops.set(camera, gop);
    }
    if (gop) {
      if (gop.length < 300) gop.push({ header, data });
      else this.gops.delete(camera); // no keyframe for too long: wait for one
    }
    for (const view of this.views.values()) {
      if (view.def.kind === "camera" && view.def.camera === camera) view.video(header, data);
    }
  }

  layout(msg) {
    const sig = JSON.stringify([msg.layout, msg.region || null]);
    if (sig === this.signature && !this.pending) {
      if (this.current) this.current = { ...this.current, version: msg.version };
      // the same layout again (a reconnection): keep every element as it is, but what
      // happened during the gap reached no view: those that load data load it again
      for (const v of this.views.values()) v.refresh();
      return;
    }
    clearTimeout(this.timer);
    this.pending = msg;
    const wait = (Number(msg.at) - this.ctx.serverNow()) * 1000;
    if (!(wait > 2)) this.apply(msg, sig);
    else this.timer = setTimeout(() => this.apply(msg, sig), wait);
    if (this.page.announced) this.page.announced(msg, Math.max(0, wait));
  }

  apply(msg, sig) {
    const appliedAt = performance.timeOrigin + performance.now();
    this.pending = null;
    const next = new Map();
    for (const def of msg.layout.tiles || []) {
      let view = this.views.get(def.id);
      if (view && !sameSource(view.def, def)) {
        this.page.unmount(view);
        view.destroy();
        view = null;
      }
      if (view) {
        view.setDef(def);
        view.refresh(); // a new layout: the one time a kept chart loads its series again
      } else {
        view = createTile(def, this.ctx);
        this.page.mount(view);
        const st = this.states.get(def.id);
        if (st && st.kind === def.kind) view.update(st.data);
        const pic = this.pictures.get(def.id);
        if (pic && def.kind === "camera" && (!pic.header.camera || pic.header.camera === def.camera)) view.picture(pic.header, pic.jpeg);
        if (def.kind === "camera") for (const f of this.gops.get(def.camera) || []) view.video(f.header, f.data);
      }
      next.set(def.id, view);
    }
    for (const [id, view] of this.views) {
      if (!next.has(id)) {
        this.page.unmount(view);
        view.destroy();
      }
    }
    this.views = next;
    this.current = msg;
    this.signature = sig;
    for (const def of msg.layout.tiles || []) this.page.place(this.views.get(def.id), def, msg);
    for (const id of this.pictures.keys()) if (!next.has(id)) this.pictures.delete(id);
    const cameras = new Set((msg.layout.tiles || []).map((d) => d.camera).filter(Boolean));
    for (const camera of this.gops.keys()) if (!cameras.has(camera)) this.gops.delete(camera);
    const serverAppliedAt = this.ctx.serverNow();
    const record = {
      layout: msg.layout.id, version: msg.version, at: msg.at, appliedAt, serverAppliedAt,
      late: serverAppliedAt - msg.at, doneAt: performance.timeOrigin + performance.now(),
    };
    this.history.push(record);
    if (this.history.length > 50) this.history.shift();
    if (this.page.applied) this.page.applied(record, msg);
  }

  tile(msg) {
    const prev = this.states.get(msg.tile);
    if (prev && Number(msg.seq) <= prev.seq && prev.kind === msg.kind) return;
    this.states.set(msg.tile, { kind: msg.kind, seq: Number(msg.seq) || 0, data: msg.data });
    const view = this.views.get(msg.tile);
    if (view && view.def.kind === msg.kind) view.update(msg.data);
  }

  picture(header, jpeg) {
    const id = header.tile;
    this.pictures.set(id, { header, jpeg });
    const view = this.views.get(id);
    // during an announced switch a tile id may still show another camera: not its picture
    if (view && !(header.camera && view.def.camera && header.camera !== view.def.camera)) view.picture(header, jpeg);
  }

  /** Show nothing (a replay ends): every view goes, the next layout message starts afresh. */
  clear() {
    clearTimeout(this.timer);
    for (const view of this.views.values()) {
      this.page.unmount(view);
      view.destroy();
    }
    this.views = new Map();
    this.states.clear();
    this.pictures.clear();
    this.current = this.pending = this.signature = null;
  }

  relabel() {
    for (const v of this.views.values()) v.setLang();
  }

  // once a second, on the second of the server's clock (the clocks tick together)
  _tick() {
    for (const v of this.views.values()) {
      try {
        v.tick();
      } catch (err) {
        console.error("tile tick", err);
      }
    }
    const ms = this.ctx.serverNow() * 1000;
    setTimeout(() => this._tick(), 1000 - (ms % 1000) + 5);
  }
}

/**
 * Mounting for pages that put each view in a <div class="slot"> of `container` (before
 * `before`); the page's place() then sizes or orders the slot.
 */
export function slotted(container, { before = null, onClick = null } = {}) {
  return {
    mount(view) {
      const slot = document.createElement("div");
      slot.className = "slot";
      slot.dataset.tile = view.def.id;
      slot.append(view.el);
      if (onClick) slot.addEventListener("click", () => onClick(view.def.id));
      view.slot = slot;
      container.insertBefore(slot, before);
    },
    unmount(view) {
      view.slot.remove();
    },
  };
}

/** The cells screen n (1-9) covers, if a layout message came without its region. */
export function screenRegion(layout, screen) {
  const cw = layout.cols / 3;
  const ch = layout.rows / 3;
  return { x: ((screen - 1) % 3) * cw, y: Math.floor((screen - 1) / 3) * ch, w: cw, h: ch };
}

/** Debug and test hooks every page exposes as window.__ioc. */
export function exposeHooks(extra) {
  const hooks = {
    boot: `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
    loadedAt: Date.now(),
    ...extra,
  };
  window.__ioc = hooks;
  return hooks;
}
