// The operator console: switch the wall's layout, pin cameras into tiles, see which of the
// nine screens are connected, acknowledge alerts. The mini map is the live wall, small.

import { api, explain } from "./api.js";
import { languageState, runLoggedIn } from "./chrome.js";
import { DrillPanel, wireDrill } from "./drill.js";
import { formatShort, formatTime } from "./format.js";
import { pick, t } from "./i18n.js";
import { Replayer, bannerLines } from "./replay.js";
import { alertItem, alertOrder, hasVideoDecoder } from "./tiles.js";
import { WallModel, exposeHooks, slotted } from "./wall.js";

const $ = (id) => document.getElementById(id);
const hooks = exposeHooks({ page: "console" });

let run = null;
let wall = null;
let layouts = [];
let screens = [];
let alerts = [];
let cameras = [];
let pins = {};
let pending = null; // {layout, at} of a switch announced and not yet shown
let selected = null;
let drill = null;

const langButton = $("lang");
const lang = languageState(() => {
  langButton.textContent = lang.get() === "vi" ? "EN" : "VI";
  wall.relabel();
  if (drill) drill.setLang();
  renderAll();
});
langButton.textContent = lang.get() === "vi" ? "EN" : "VI";
langButton.addEventListener("click", () => lang.set(lang.get() === "vi" ? "en" : "vi"));

const call = (path, opts = {}) => api(path, { ...opts, token: run.session().token });
const list = (data, key) => (Array.isArray(data) ? data : (data && data[key]) || []);

const ctx = {
  lang: () => lang.get(),
  serverNow: () => {
    const hub = run && run.hub();
    return hub ? hub.serverNow() : Date.now() / 1000;
  },
  api: (path) => call(path),
  ack: null, // acknowledging is done in the alerts panel, not in the small tiles
};

/** A tile's slot on the mini-wall: its share of the whole wall, in percent. */
function miniPlace(view, def, msg) {
  const { cols, rows } = msg.layout;
  const s = view.slot.style;
  s.left = `${(def.x / cols) * 100}%`;
  s.top = `${(def.y / rows) * 100}%`;
  s.width = `${(def.w / cols) * 100}%`;
  s.height = `${(def.h / rows) * 100}%`;
}

wall = new WallModel(ctx, {
  ...slotted($("mini-tiles"), { onClick: (id) => select(id) }),
  place(view, def, msg) {
    miniPlace(view, def, msg);
    view.slot.classList.toggle("selected", def.id === selected);
  },
  announced(msg, waitMs) {
    if (waitMs > 0) {
      pending = { layout: msg.layout.id, at: msg.at };
      $("switch-status").textContent = t(lang.get(), "layout.switch_at", { time: formatTime(msg.at) });
      renderLayouts();
    }
  },
  applied(record, msg) {
    document.body.dataset.layout = record.layout;
    if (pending) $("switch-status").textContent = t(lang.get(), "c.switched", { name: pick(msg.layout, "name", lang.get()) });
    pending = null;
    renderLayouts();
    renderWallCaption();
    renderPinTiles();
    renderPins();
    loadState();
  },
});
wall.sender = (msg) => run && run.hub() && run.hub().send(msg);
// a click on a KPI tile of the mini-wall (it stays selected for pinning) or the map's
// `ioc-drill`: the drill-down opens beside the console
drill = new DrillPanel(ctx);
wireDrill(drill, $("mini-tiles"), (id) => wall.views.get(id)?.def);
Object.assign(hooks, { wall, applied: wall.history, drill });

// -- the time machine ----------------------------------------------------------------------
// The mini-wall shows the wall's replay when the screens show one, or the operator's own
// preview (this console only); commands for the screens go to POST /api/v1/wall/replay.

const replayer = new Replayer({
  ctx, token: () => run.session().token,
  page: { ...slotted($("mini-past")), place: miniPlace },
  onChange: renderReplay,
});
let wallReplay = null; // the screens' replay, from the hub
let preview = null; // this console's own, or null
let replayTimer = null;
hooks.replayer = replayer;

function renderReplay() {
  const on = replayer.active;
  $("minimap").classList.toggle("replaying", on);
  $("mini-past").hidden = !on;
  document.body.dataset.replay = preview ? "preview" : wallReplay ? "wall" : "off";
  clearInterval(replayTimer);
  const status = $("replay-status");
  const draw = () => {
    if (!replayer.active) {
      status.textContent = t(lang.get(), "c.replay_live_on");
      return;
    }
    const lines = bannerLines(replayer);
    const what = t(lang.get(), preview ? "c.replay_preview_on" : "c.replay_wall_on");
    status.textContent = `${what} · ${lang.get() === "vi" ? lines.vi : lines.en}`;
  };
  draw();
  if (on) replayTimer = setInterval(draw, 500);
}

function showReplay() {
  replayer.set(preview || wallReplay);
}

function pickedInstant() {
  const v = $("replay-t").value; // the wall's time: Viet Nam has one offset all year, +07:00
  if (!v) return null;
  return `${v.length === 16 ? `${v}:00` : v}+07:00`;
}

async function command(body) {
  const status = $("replay-status");
  try {
    const out = await call("/api/v1/wall/replay", { method: "POST", body: { ...body, scope: preview ? "console" : "wall" } });
    hooks.lastReplay = { body, answer: out };
    return out;
  } catch (err) {
    status.textContent = explain(err, lang.get());
    return null;
  }
}

async function localChange(action, extra = {}) {
  // a preview changes here only; it is still audited, like every look at the past
  await command({ action, ...extra });
  const now = ctx.serverNow();
  const pos = replayer.position();
  const speed = Number($("replay-speed").value) || preview.speed;
  if (action === "live") preview = null;
  else if (action === "pause") preview = { ...preview, t: pos, at: now, paused: true };
  else if (action === "resume") preview = { ...preview, t: pos, at: now, paused: false, speed };
  else if (action === "step") preview = { ...preview, t: pos + extra.step_s, at: now, paused: true };
  showReplay();
}

$("replay-preview").addEventListener("click", async () => {
  const at = pickedInstant();
  if (!at) return;
  const speed = Number($("replay-speed").value) || 1;
  preview = { t: Date.parse(at) / 1000, at: ctx.serverNow(), speed, paused: false };
  await command({ action: "start", t: at, speed });
  showReplay();
});
$("replay-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const at = pickedInstant();
  if (!at) return;
  preview = null;
  await command({ action: "start", t: at, speed: Number($("replay-speed").value) || 1 });
});
const act = (action, extra) => (preview ? localChange(action, extra) : command({ action, ...extra }));
$("replay-pause").addEventListener("click", () => act("pause"));
$("replay-resume").addEventListener("click", () => act("resume", { speed: Number($("replay-speed").value) || 1 }));
$("replay-back").addEventListener("click", () => act("step", { step_s: -1 }));
$("replay-fwd").addEventListener("click", () => act("step", { step_s: 1 }));
$("replay-live").addEventListener("click", () => act("live"));

let replayPending = null;
function onWallReplay(msg) {
  clearTimeout(replayPending);
  const wait = (Number(msg.at) - ctx.serverNow()) * 1000;
  const apply = () => {
    wallReplay = msg.replay || null;
    if (!preview) showReplay();
    else renderReplay();
  };
  if (wait > 2) replayPending = setTimeout(apply, wait);
  else apply();
}

// -- layouts ----------------------------------------------------------------------------

function renderLayouts() {
  const current = wall.current && wall.current.layout.id;
  $("layouts").replaceChildren(...layouts.map((l) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.layout = l.id;
    b.classList.toggle("current", l.id === current);
    b.classList.toggle("pending", pending !== null && l.id === pending.layout);
    b.textContent = pick(l, "name", lang.get()) || l.id;
    const id = document.createElement("span");
    id.className = "lid";
    id.textContent = l.id;
    b.append(id);
    b.addEventListener("click", () => switchTo(l.id));
    li.append(b);
    return li;
  }));
}

async function switchTo(id) {
  const status = $("switch-status");
  try {
    // no delay_s: the server's IOC_WALL_SWITCH_DELAY_S says how far ahead all screens are told
    const out = await call("/api/v1/wall/switch", { method: "POST", body: { layout: id } });
    if (out && out.at) {
      pending = { layout: id, at: out.at };
      status.textContent = t(lang.get(), "layout.switch_at", { time: formatTime(out.at) });
    }
    hooks.lastSwitch = { layout: id, clickedAt: Date.now(), answer: out };
    renderLayouts();
  } catch (err) {
    status.textContent = `${t(lang.get(), "c.switch_failed")}: ${explain(err, lang.get())}`;
  }
}

async function loadLayouts() {
  try {
    layouts = list(await call("/api/v1/wall/layouts"), "layouts");
  } catch (err) {
    $("switch-status").textContent = explain(err, lang.get());
  }
  renderLayouts();
}

function renderWallCaption() {
  const cur = wall.current;
  $("wall-caption").textContent = cur
    ? `${pick(cur.layout, "name", lang.get())} · v${cur.version} · ${t(lang.get(), "c.tiles", { n: (cur.layout.tiles || []).length })}`
    : "";
}

// -- pins -------------------------------------------------------------------------------

function select(tileId) {
  selected = tileId;
  $("pin-tile").value = tileId;
  checkTwice();
  for (const v of wall.views.values()) v.slot.classList.toggle("selected", v.def.id === tileId);
}

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

// The pin form speaks names: a tile by its title (or its camera's name) and the screens it
// is on, a camera by its name; ids stay in the option values and tooltips.

const currentTiles = () => (wall.current && wall.current.layout.tiles) || [];

function cameraName(id) {
  const c = cameras.find((x) => x.id === id);
  return (c && c.name) || id;
}

/** The wall's screens (1-9) a tile lies on. */
function tileScreens(def) {
  const layout = wall.current && wall.current.layout;
  if (!layout) return [];
  const cw = layout.cols / 3;
  const ch = layout.rows / 3;
  const out = [];
  for (let n = 1; n <= 9; n += 1) {
    const x = ((n - 1) % 3) * cw;
    const y = Math.floor((n - 1) / 3) * ch;
    if (def.x < x + cw && x < def.x + def.w && def.y < y + ch && y < def.y + def.h) out.push(n);
  }
  return out;
}

function tileLabel(def) {
  const lg = lang.get();
  const name = pick(def, "title", lg) || (def.camera ? cameraName(def.camera) : "") || def.id;
  const on = tileScreens(def);
  return on.length ? `${name} · ${t(lg, on.length > 1 ? "c.on_screens" : "c.on_screen", { n: on.join(", ") })}` : name;
}

function tileLabelById(id) {
  const def = currentTiles().find((d) => d.id === id);
  return def ? tileLabel(def) : id;
}

function renderPinTiles() {
  const tiles = currentTiles();
  const sorted = [...tiles].sort((a, b) => (a.kind === "camera" ? 0 : 1) - (b.kind === "camera" ? 0 : 1) || a.y - b.y || a.x - b.x);
  const sel = $("pin-tile");
  const keep = sel.value || selected;
  sel.replaceChildren(...sorted.map((d) => {
    const o = option(d.id, tileLabel(d));
    o.title = d.id;
    return o;
  }));
  if (keep && tiles.some((d) => d.id === keep)) sel.value = keep;
  checkTwice();
}

function renderCameras() {
  const sel = $("pin-camera");
  const keep = sel.value;
  const lg = lang.get();
  sel.replaceChildren(option("", t(lg, "c.no_camera")), ...cameras.map((c) => {
    const bad = c.healthy === false || (c.state && c.state !== "online");
    const state = c.state ? ` — ${bad ? t(lg, `cam.${c.state === "online" ? "unhealthy" : c.state}`) : t(lg, "health.ok")}` : "";
    const o = option(c.id, `${c.name || c.id}${state}`);
    o.title = c.id;
    return o;
  }));
  if (keep) sel.value = keep;
  checkTwice();
}

function renderPins() {
  $("pins").replaceChildren(...Object.entries(pins || {}).map(([tile, cam]) => {
    const li = document.createElement("li");
    li.dataset.tile = tile;
    li.textContent = `${tileLabelById(tile)} ← ${cameraName(cam)}`;
    return li;
  }));
}

/** Where a tile is, for a sentence: its screens, and its title if it has one. */
function where(def) {
  const lg = lang.get();
  const on = tileScreens(def);
  const screens = t(lg, on.length > 1 ? "c.on_screens" : "c.on_screen", { n: on.join(", ") });
  const title = pick(def, "title", lg);
  return title ? `${screens} (“${title}”)` : screens;
}

/** The same camera on two tiles wastes a tile: say so before (and after) pinning. */
function checkTwice() {
  const warn = $("pin-warn");
  const cam = $("pin-camera").value;
  const tile = $("pin-tile").value;
  const others = cam ? currentTiles().filter((d) => d.kind === "camera" && d.camera === cam && d.id !== tile) : [];
  warn.hidden = !others.length;
  warn.textContent = others.length
    ? t(lang.get(), "c.twice", { camera: cameraName(cam), tiles: others.map(where).join("; ") }) : "";
}

let thumbUrl = null;
let thumbFor = null;

/** The chosen camera's newest picture, small, so an operator sees what will go up. */
async function showThumb() {
  const cam = $("pin-camera").value;
  const box = $("pin-preview");
  const img = $("pin-thumb");
  const note = $("pin-thumb-note");
  thumbFor = cam;
  box.hidden = !cam;
  if (!cam) return;
  note.textContent = "";
  let pic = null;
  try {
    pic = await api(`/api/v1/cameras/${encodeURIComponent(cam)}/snapshot`, { token: run.session().token, blob: true });
  } catch { /* no picture yet */ }
  if (thumbFor !== cam) return; // another camera was chosen meanwhile
  if (thumbUrl) URL.revokeObjectURL(thumbUrl);
  thumbUrl = pic ? URL.createObjectURL(pic) : null;
  img.hidden = !thumbUrl;
  if (thumbUrl) img.src = thumbUrl;
  else img.removeAttribute("src");
  img.alt = cameraName(cam);
  note.textContent = thumbUrl ? "" : t(lang.get(), "cam.no_picture");
}

async function loadState() {
  try {
    const state = await call("/api/v1/wall/state");
    pins = (state && state.pins) || {};
    renderPins();
  } catch { /* shown elsewhere */ }
}

async function loadCameras() {
  try {
    cameras = list(await call("/api/v1/cameras"), "cameras");
  } catch (err) {
    cameras = [];
    $("pin-msg").textContent = explain(err, lang.get());
  }
  renderCameras();
  renderPinTiles(); // names came
  renderPins();
}

async function pin(camera) {
  const tile = $("pin-tile").value;
  const note = $("pin-msg");
  note.textContent = "";
  note.classList.remove("ok");
  if (!tile) return;
  const label = tileLabelById(tile); // what the tile is called now, before it changes
  try {
    await call("/api/v1/wall/pin", { method: "POST", body: { tile, camera } });
    note.classList.add("ok");
    note.textContent = camera ? t(lang.get(), "c.pinned", { camera: cameraName(camera), tile: label })
      : t(lang.get(), "c.unpinned", { tile: label });
    await loadState();
  } catch (e) {
    note.textContent = explain(e, lang.get());
  }
}

$("pin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const cam = $("pin-camera").value;
  if (cam) pin(cam);
});
$("unpin").addEventListener("click", () => pin(null));
$("pin-tile").addEventListener("change", (ev) => {
  select(ev.target.value);
  checkTwice();
});
$("pin-camera").addEventListener("change", () => {
  checkTwice();
  showThumb();
});

// -- screens ----------------------------------------------------------------------------

function renderScreens() {
  const lg = lang.get();
  const items = [];
  const cells = [];
  for (let n = 1; n <= 9; n += 1) {
    const here = screens.filter((s) => Number(s.screen) === n);
    const li = document.createElement("li");
    li.dataset.screen = String(n);
    li.classList.toggle("connected", here.length > 0);
    const name = document.createElement("span");
    name.className = "n";
    name.textContent = `${t(lg, "screen")} ${n}`;
    const addr = document.createElement("span");
    addr.className = here.length ? "addr" : "addr missing";
    addr.textContent = here.length
      ? here.map((s) => `${s.address || s.client || ""} (${t(lg, "c.since", { time: formatShort(s.since) })})`).join(", ")
      : t(lg, "c.not_connected");
    li.append(name, addr);
    items.push(li);
    const cell = document.createElement("div");
    cell.className = `mini-screen${here.length ? " connected" : ""}`;
    cell.dataset.screen = String(n);
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = `${n} ${here.length ? "✓" : "✗"}${here.length > 1 ? ` ×${here.length}` : ""}`;
    cell.append(badge);
    cells.push(cell);
  }
  $("screens").replaceChildren(...items);
  $("mini-screens").replaceChildren(...cells);
  hooks.screens = screens;
}

async function loadScreens() {
  try {
    screens = list(await call("/api/v1/wall/screens"), "screens");
    renderScreens();
  } catch { /* the hub's message will tell */ }
}

// -- alerts -----------------------------------------------------------------------------

function renderAlerts() {
  const lg = lang.get();
  const box = $("alerts");
  if (!alerts.length) {
    const li = document.createElement("li");
    li.className = "alert-none";
    li.textContent = t(lg, "alerts.none");
    box.replaceChildren(li);
    return;
  }
  box.replaceChildren(...[...alerts].sort(alertOrder).map((a) => alertItem(a, lg, ack)));
}

async function ack(id) {
  try {
    await call(`/api/v1/alerts/${encodeURIComponent(id)}/ack`, { method: "POST" });
    const a = alerts.find((x) => String(x.id) === String(id));
    if (a && !a.acked_by) a.acked_by = run.session().username;
    renderAlerts();
    await loadAlerts();
  } catch (err) {
    const li = $("alerts").querySelector(`[data-alert="${CSS.escape(String(id))}"]`);
    if (li) li.querySelector(".alert-meta").textContent = explain(err, lang.get());
  }
}

// The list is the one the hub's alerts tile carries (open alerts first, then the newest
// ended ones, as the server's `recent` gives them): the REST look asks for the same list, so
// the two never disagree about which alerts are there (an ended one coming and going). An
// answer that a newer hub message overtook while it travelled is dropped.
let alertsFromHub = 0;

function alertsFromTheHub(list_) {
  alerts = list_;
  alertsFromHub += 1;
  renderAlerts();
}

async function loadAlerts() {
  const before = alertsFromHub;
  let got = null;
  try {
    got = list(await call("/api/v1/alerts"), "alerts");
  } catch { /* keep what the hub sent */ }
  if (got && before === alertsFromHub) alerts = got;
  renderAlerts();
}
hooks.loadAlerts = loadAlerts;

function renderAll() {
  renderLayouts();
  renderWallCaption();
  renderPinTiles();
  renderCameras();
  renderPins();
  renderScreens();
  renderAlerts();
}

renderAll();

run = runLoggedIn({
  page: "console",
  role: "console",
  roles: ["operator", "admin"],
  video: hasVideoDecoder(),
  lang,
  handlers: {
    welcome() {
      wall.welcome();
      loadScreens();
    },
    layout: (msg) => wall.layout(msg),
    replay: (msg) => onWallReplay(msg),
    tile(msg) {
      wall.tile(msg);
      // the hub has no alerts message of its own: an alerts tile on the wall carries them
      if (msg.kind === "alerts" && msg.data && Array.isArray(msg.data.alerts)) alertsFromTheHub(msg.data.alerts);
    },
    picture: (header, jpeg) => wall.picture(header, jpeg),
    video: (header, data) => wall.video(header, data),
    screens(msg) {
      screens = msg.screens || [];
      renderScreens();
    },
    alerts: (msg) => alertsFromTheHub(msg.alerts || []),
    state: (state) => {
      hooks.state = state;
    },
  },
  onSession(s) {
    $("user").textContent = `${s.username} (${s.role})`;
    $("user").title = $("user").textContent; // cut with an ellipsis on a phone
    loadLayouts();
    loadCameras();
    loadAlerts();
    loadState();
  },
});
// alerts change without anyone on the wall showing them: look again now and then
setInterval(() => run.session() && !document.hidden && loadAlerts(), 30000);
