// A wall screen: draws the tiles of its region of the current layout, 1920x1080, scaled
// to whatever the browser window is (a kiosk's is exactly that size).

import { api, hubAddress } from "./api.js";
import { HubClient } from "./hub.js";
import { t } from "./i18n.js";
import { Replayer, bannerLines } from "./replay.js";
import { hasVideoDecoder } from "./tiles.js";
import { WallModel, exposeHooks, screenRegion, slotted } from "./wall.js";

const W = 1920;
const H = 1080;
const GAP = 6;

const stage = document.getElementById("stage");
const banner = document.getElementById("banner");
const pastEl = document.getElementById("past");
const replayBanner = document.getElementById("replay-banner");
const fatalEl = document.getElementById("fatal");
const screen = Number(new URLSearchParams(location.search).get("screen"));
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const hooks = exposeHooks({ page: "screen", screen });

function fit() {
  const scale = Math.min(window.innerWidth / W, window.innerHeight / H) || 1;
  stage.style.transform = scale === 1 ? "" : `scale(${scale})`;
}
window.addEventListener("resize", fit);
fit();
// a kiosk browser starts full screen; anywhere else a double click (or F) asks for it
const fullScreen = () => document.fullscreenElement || document.documentElement.requestFullscreen().catch(() => {});
document.addEventListener("dblclick", fullScreen);
document.addEventListener("keydown", (ev) => ev.key === "f" && fullScreen());

function showFatal(key, detail) {
  fatalEl.querySelector(".vi").textContent = t("vi", key);
  fatalEl.querySelector(".en").textContent = t("en", key);
  fatalEl.querySelector(".detail").textContent = detail ? `(${detail})` : "";
  fatalEl.hidden = false;
  hooks.error = { key, detail };
  document.body.dataset.error = key;
}

function hideFatal() {
  fatalEl.hidden = true;
  hooks.error = null;
  delete document.body.dataset.error;
}

/** Slot = the visible part of the tile on this screen; a camera picture continues past it. */
function place(view, def, msg) {
  const region = msg.region || screenRegion(msg.layout, screen);
  const cw = W / region.w;
  const ch = H / region.h;
  const x = (def.x - region.x) * cw;
  const y = (def.y - region.y) * ch;
  const w = def.w * cw;
  const h = def.h * ch;
  const left = Math.max(0, x);
  const top = Math.max(0, y);
  const right = Math.min(W, x + w);
  const bottom = Math.min(H, y + h);
  // a gap only along the tile's own edges, not where the screen's edge cuts it
  const pl = left === x ? GAP : 0;
  const pt = top === y ? GAP : 0;
  const pr = right === x + w ? GAP : 0;
  const pb = bottom === y + h ? GAP : 0;
  const s = view.slot.style;
  s.left = `${left}px`;
  s.top = `${top}px`;
  s.width = `${right - left}px`;
  s.height = `${bottom - top}px`;
  s.padding = `${pt}px ${pr}px ${pb}px ${pl}px`;
  const partial = left !== x || top !== y || right !== x + w || bottom !== y + h;
  view.slot.classList.toggle("partial", partial);
  view.setFrame(partial ? {
    left: x + GAP - left - pl, top: y + GAP - top - pt,  // from the slot's content box
    outerLeft: x + GAP - left, outerTop: y + GAP - top,  // from its padding edge
    width: w - 2 * GAP, height: h - 2 * GAP,
  } : null);
}

function start() {
  let hub = null;
  const ctx = {
    lang: () => "vi",
    serverNow: () => (hub ? hub.serverNow() : Date.now() / 1000),
    api: (path) => api(path, { token }),
    ack: null,
  };
  const wall = new WallModel(ctx, {
    ...slotted(stage, { before: banner }),
    place,
    applied(record) {
      document.body.dataset.layout = record.layout;
      document.body.dataset.version = String(record.version);
    },
  });
  hub = new HubClient({
    url: () => hubAddress(token),
    hello: { token, role: "screen", screen, video: hasVideoDecoder() },
    fatalRetryMs: 60000, // a kiosk has no keyboard: keep trying, an admin may fix the account
    on: {
      state(state) {
        hooks.state = state;
        document.body.dataset.hub = state;
        const lost = state === "reconnecting" || state === "offline";
        banner.hidden = !lost;
        banner.textContent = `${t("vi", "screen")} ${screen} · ${t("vi", state === "offline" ? "conn.offline" : "conn.reconnecting")}`;
      },
      welcome() {
        hideFatal();
        wall.welcome();
      },
      layout: (msg) => wall.layout(msg),
      tile: (msg) => wall.tile(msg),
      replay: (msg) => onReplay(msg),
      picture: (header, jpeg) => wall.picture(header, jpeg),
      video: (header, data) => wall.video(header, data),
      fatal(code, reason) {
        showFatal(code === 4403 ? "err.forbidden" : code === 4400 ? "err.bad_request" : "err.bad_token", reason);
      },
    },
  });
  wall.sender = (msg) => hub.send(msg);
  // the time machine: the wall's past over the live tiles, while the operators replay it
  const replayer = new Replayer({
    ctx, screen, token: () => token,
    page: { ...slotted(pastEl), place },
    onChange: showReplay,
  });
  let replayTimer = null;
  let revealed = false; // the replay is on show (it may be made ready, out of sight, before its `at`)
  function showReplay() {
    const on = replayer.active && revealed;
    stage.classList.toggle("replaying", on);
    pastEl.hidden = !on;
    replayBanner.hidden = !on;
    document.body.dataset.replay = on ? "on" : "off";
    clearInterval(replayTimer);
    if (!on) return;
    const draw = () => {
      const lines = bannerLines(replayer);
      replayBanner.querySelector(".vi").textContent = lines.vi;
      replayBanner.querySelector(".en").textContent = lines.en;
      document.body.dataset.replayAt = String(Math.floor(replayer.position()));
    };
    draw();
    replayTimer = setInterval(draw, 250);
  }
  let replayPending = null;
  // like a layout switch: the change is announced ahead and made at `at` on every screen.
  // While no replay is on show, the past is made ready at once, out of sight (its segments
  // fetched, its videos at the instant's picture), and shown at `at`: the screens switch with
  // every recording already there. A later change before `at` (a seek, a pause, back to live)
  // replaces what is being made ready; a change to a replay on show waits for `at`, as it is.
  function onReplay(msg) {
    clearTimeout(replayPending);
    const wait = (Number(msg.at) - hub.serverNow()) * 1000;
    const ahead = wait > 2 && !revealed;
    const apply = () => {
      if (!ahead) replayer.set(msg.replay || null, msg.past || null);
      revealed = replayer.active;
      showReplay();
      hooks.replayChanged = hub.serverNow(); // when this screen changed (tests compare the nine)
      hooks.replayShownWith = pastCameras(); // what its camera tiles showed at that instant (tests)
    };
    if (ahead) replayer.set(msg.replay || null, msg.past || null);
    if (wait > 2) replayPending = setTimeout(apply, wait);
    else apply();
  }
  const pastCameras = () => [...pastEl.querySelectorAll(".tile-camera")].map((tile) => {
    const v = tile.querySelector("video.rec-active");
    return { ready: v ? v.readyState : 0, time: v ? v.currentTime : null, offset: Number(tile.dataset.offset),
      stream: tile.dataset.stream || null, segment: tile.dataset.segment || null };
  });
  Object.assign(hooks, { hub, wall, applied: wall.history, replayer });
  hub.start();
  // keep the screen awake where the browser allows it
  if (navigator.wakeLock) navigator.wakeLock.request("screen").catch(() => {});
}

if (!(Number.isInteger(screen) && screen >= 1 && screen <= 9)) showFatal("err.no_screen");
else if (!token) showFatal("err.no_token");
else start();
