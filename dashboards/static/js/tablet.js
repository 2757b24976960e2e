// Leaders' tablets: every tile of the current layout, stacked in a responsive grid, in
// Vietnamese or English. A lost link shows a small banner and reconnects; the page and
// its tiles stay as they are (never a reload).

import { api } from "./api.js";
import { DrillPanel, wireDrill } from "./drill.js";
import { languageState, runLoggedIn } from "./chrome.js";
import { pick } from "./i18n.js";
import { hasVideoDecoder } from "./tiles.js";
import { WallModel, exposeHooks, slotted } from "./wall.js";

const grid = document.getElementById("tiles");
const layoutName = document.getElementById("layout-name");
const langButton = document.getElementById("lang");
const hooks = exposeHooks({ page: "tablet" });

let run = null;
let wall = null;
let drill = null;
const lang = languageState(() => {
  langButton.textContent = lang.get() === "vi" ? "EN" : "VI";
  if (wall) wall.relabel();
  if (drill) drill.setLang();
  showLayoutName();
});
langButton.textContent = lang.get() === "vi" ? "EN" : "VI";
langButton.addEventListener("click", () => lang.set(lang.get() === "vi" ? "en" : "vi"));

function showLayoutName() {
  layoutName.textContent = wall && wall.current ? pick(wall.current.layout, "name", lang.get()) : "";
  layoutName.title = layoutName.textContent; // the whole name, where a phone cuts it
}

const ctx = {
  lang: () => lang.get(),
  serverNow: () => {
    const hub = run && run.hub();
    return hub ? hub.serverNow() : Date.now() / 1000;
  },
  api: (path) => api(path, { token: run.session().token }),
  ack: null,
};

wall = new WallModel(ctx, {
  ...slotted(grid),
  place(view, def) {
    // reading order: top to bottom, left to right, as on the wall
    view.slot.style.order = String(def.y * 1000 + def.x);
    const media = def.kind === "camera";
    view.slot.classList.toggle("media", media);
    view.slot.classList.toggle("wide", media ? def.w >= 4 : def.kind === "chart" || def.kind === "ranking" || def.w >= 4);
    view.slot.classList.toggle("tall", ["chart", "alerts", "camera_health", "ranking"].includes(def.kind));
  },
  applied(record) {
    document.body.dataset.layout = record.layout;
    showLayoutName();
  },
});
wall.sender = (msg) => run && run.hub() && run.hub().send(msg);
// a tap on a KPI tile (or the map's `ioc-drill`): where the figure comes from
drill = new DrillPanel(ctx);
wireDrill(drill, grid, (id) => wall.views.get(id)?.def);
Object.assign(hooks, { wall, applied: wall.history, drill });

run = runLoggedIn({
  page: "tablet",
  role: "tablet",
  roles: ["leader", "operator", "admin"],
  // light mode (`?video=off`, for a tablet on a thin link): the pictures, once or twice a second
  video: hasVideoDecoder() && new URLSearchParams(location.search).get("video") !== "off",
  lang,
  handlers: {
    welcome: () => wall.welcome(),
    layout: (msg) => wall.layout(msg),
    tile: (msg) => wall.tile(msg),
    picture: (header, jpeg) => wall.picture(header, jpeg),
    video: (header, data) => wall.video(header, data),
    state: (state) => {
      hooks.state = state;
    },
  },
});
