// The `map` tile: the units below an area coloured by a KPI over a period, cameras with their
// health and open alerts as markers; a click on a unit asks for its drill-down.
//
// Geometry (`/api/v1/areas/geometry`) is loaded once per area and level; values
// (`/api/v1/breakdown`, over the tile's `period`: this month so far by default) when the tile is shown and again when the hub says a reading of the
// KPI arrived (`changed_at`), at most every REFETCH_GAP_S: live readings, not polling
// (dashboards/PROTOCOL.md, "map"). Camera positions come from the camera registry
// (`/api/v1/cameras`), their health and the alerts from the hub's tile message.
//
// A unit with a boundary is drawn as its (server-simplified) shape; one with only a position
// as a circle sized by its value; one with neither is listed beside the map as "no
// position", never placed by guesswork. Units with no value are grey and say so.
//
// Clicking (tapping) a unit dispatches `ioc-drill` ({kpi, area, level}) on the tile's
// element; the tablet and console open their drill-down on it, the wall has no listener.

import { formatNumber } from "./format.js";
import { pick, t } from "./i18n.js";
import { breakdownQuery } from "./periods.js";
import { el, svg } from "./dom.js";

const REFETCH_GAP_S = 5; // values are asked again at most this often, however many readings come
const REFETCH_EVERY_S = 600; // safety net: a period that rolled over, a correction never announced
const LABELS_UP_TO = 40; // units named on the map itself; more and only their shapes are drawn
const RAMP = [[28, 58, 94], [70, 177, 255], [214, 240, 255]]; // dark blue -> light: low -> high
const NO_DATA = "#3b4653";
const STATUS_FILL = { meets: "#2fd27a", misses: "#ff5b50" };

const geometryCache = new Map(); // "area|level" -> Promise<geometry answer>

/** `/api/v1/areas/geometry` once per area and level for the whole page (tiles share it). */
function loadGeometry(api, area, level) {
  const key = `${area}|${level}`;
  let p = geometryCache.get(key);
  if (!p) {
    p = api(`/api/v1/areas/geometry?${new URLSearchParams({ area, level })}`);
    geometryCache.set(key, p);
    p.catch(() => geometryCache.delete(key));
  }
  return p;
}

function rampColour(f) {
  const x = Math.max(0, Math.min(1, f)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const k = x - i;
  const c = RAMP[i].map((v, j) => Math.round(v + (RAMP[i + 1][j] - v) * k));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** Longitude/latitude -> pixels: equirectangular about the middle latitude, fitted and centred. */
function projection(bbox, W, H, pad) {
  const [w, s, e, n] = bbox;
  const kx = Math.cos(((s + n) / 2) * Math.PI / 180);
  const spanX = Math.max((e - w) * kx, 1e-6);
  const spanY = Math.max(n - s, 1e-6);
  const scale = Math.min((W - 2 * pad) / spanX, (H - 2 * pad) / spanY);
  const ox = (W - spanX * scale) / 2;
  const oy = (H - spanY * scale) / 2;
  return (lon, lat) => [ox + (lon - w) * kx * scale, oy + (n - lat) * scale];
}

function pathOf(geometry, proj) {
  const polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates || [];
  let d = "";
  for (const poly of polys) {
    for (const ring of poly) {
      for (let i = 0; i < ring.length - 1; i++) {
        const [x, y] = proj(ring[i][0], ring[i][1]);
        d += `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
      }
      d += "Z";
    }
  }
  return d;
}

/** The map view's class, built on the tiles' base view (tiles.js passes it in). */
export function mapTile(FetchingTile) {
  return class MapTile extends FetchingTile {
    build() {
      this.wrap = el("div", "map-wrap");
      this.svg = svg("svg", { class: "map-svg" });
      this.side = el("div", "map-side");
      this.periodEl = el("div", "map-period");
      this.legend = el("ul", "map-legend");
      this.unplaced = el("div", "map-unplaced");
      this.side.append(this.periodEl, this.legend, this.unplaced);
      this.msg = el("div", "chart-msg");
      this.wrap.append(this.svg, this.side);
      this.body.append(this.wrap, this.msg);
      this.values = null; // the /breakdown answer drawn
      this.geometry = null;
      this.cameras = null; // registry: id -> {lat, lon, name}
      this.loads = 0;
      this.loadedAt = 0;
      this.seenChange = undefined;
      this.later = null;
      this.failed = false;
      this.svg.addEventListener("click", (ev) => this.drill(ev));
      this.svg.addEventListener("keydown", (ev) => (ev.key === "Enter" || ev.key === " ") && this.drill(ev));
      this.resize = new ResizeObserver(() => this.draw());
      this.resize.observe(this.body);
      this.load();
    }

    settings() {
      const d = this.data || {};
      return { kpi: this.def.kpi || d.kpi, area: this.def.area || d.area, level: this.def.level || d.level || null,
        period: this.def.period || d.period || "month" };
    }

    update(data) {
      const changed = data && data.changed_at;
      const first = this.seenChange === undefined;
      super.update(data);
      if (!first && changed && changed !== this.seenChange) this.reloadSoon();
      this.seenChange = changed || null;
    }

    get refetchEvery() {
      return REFETCH_EVERY_S;
    }

    get refetchGap() {
      return REFETCH_GAP_S;
    }

    async load() {
      clearTimeout(this.later);
      this.later = null;
      const s = this.settings();
      if (!s.kpi || !s.area) return;
      const mine = ++this.loads;
      this.loadedAt = this.ctx.serverNow();
      const q = breakdownQuery(s, this.loadedAt, this.ctx.pastSeries);
      try {
        const values = await this.ctx.api(`/api/v1/breakdown?${q}`);
        const [geometry, cameras] = await Promise.all([
          loadGeometry(this.ctx.api, s.area, values.level),
          this.cameras ? null : this.ctx.api("/api/v1/cameras").catch(() => []),
        ]);
        if (mine !== this.loads || this.destroyed) return;
        if (cameras) {
          this.cameras = new Map(cameras.filter((c) => Number.isFinite(c.lat) && Number.isFinite(c.lon))
            .map((c) => [c.id, { lat: c.lat, lon: c.lon, name: c.name || c.id }]));
        }
        this.values = values;
        this.geometry = geometry;
        this.failed = false;
      } catch (err) {
        if (mine !== this.loads) return;
        this.failed = true;
        console.warn("map: loading failed", s, err);
      }
      this.el.dataset.fetches = String(this.loads);
      this.draw();
    }

    render() {
      this.draw();
    }

    showMessage(text) {
      this.msg.textContent = text;
      this.msg.hidden = !text;
    }

    /** The rows to draw, each with its unit's geometry, fill and label. */
    rows() {
      const v = this.values;
      const units = new Map((this.geometry.units || []).map((u) => [u.code, u]));
      const withValue = v.rows.filter((r) => Number.isFinite(r.value));
      const lo = Math.min(...withValue.map((r) => r.value));
      const hi = Math.max(...withValue.map((r) => r.value));
      const byStatus = v.target !== null && v.target !== undefined;
      return v.rows.map((r) => {
        const u = units.get(r.code) || { code: r.code, name_vi: r.name_vi, name_en: r.name_en };
        const has = Number.isFinite(r.value);
        const fill = !has ? NO_DATA : byStatus ? STATUS_FILL[r.status] || NO_DATA : rampColour(hi > lo ? (r.value - lo) / (hi - lo) : 0.5);
        return { row: r, unit: u, has, fill };
      });
    }

    draw() {
      const lang = this.lang;
      const svgEl = this.svg;
      if (!svgEl) return;
      if (!this.values || !this.geometry) {
        svgEl.replaceChildren();
        this.shapes = null;
        return this.showMessage(this.failed ? t(lang, "chart.failed") : t(lang, "chart.loading"));
      }
      const W = Math.max(40, svgEl.clientWidth || this.body.clientWidth);
      const H = Math.max(30, svgEl.clientHeight || this.body.clientHeight);
      const rows = this.rows();
      const v = this.values;
      const byStatus = v.target !== null && v.target !== undefined;
      const font = Math.max(10, Math.min(H * 0.035, W * 0.03));
      const bbox = this.framed(this.geometry.bbox);
      // a unit with a figure but no shape or position of its own is drawn at the nearest unit
      // above it that has one (a commune at its former district's seat), marked approximate
      const near = (x) => !x.unit.boundary && !Number.isFinite(x.unit.lat) && x.has && x.unit.near ? x.unit.near : null;
      const spot = (x) => (Number.isFinite(x.unit.lat) ? x.unit : near(x));
      // approximate ones first, so a unit drawn at its own position lies on top and takes taps
      const placed = rows.filter((x) => x.unit.boundary || spot(x)).sort((a, b) => Number(!near(a)) - Number(!near(b)));
      const unplaced = rows.filter((x) => !(x.unit.boundary || spot(x)));
      svgEl.setAttribute("viewBox", `0 0 ${W} ${H}`);
      const shapes = svg("g", { class: "map-units" });
      const labels = svg("g", { class: "map-labels" });
      const markers = svg("g", { class: "map-markers" });
      if (!bbox || !placed.length) {
        svgEl.replaceChildren();
        this.shapes = null;
        this.showMessage(t(lang, rows.length ? "map.no_geometry" : "map.empty"));
      } else {
        this.showMessage("");
        const proj = projection(bbox, W, H, font * 2);
        this.proj = proj;
        const maxAbs = Math.max(1e-9, ...rows.filter((x) => x.has).map((x) => Math.abs(x.row.value)));
        const rMax = Math.min(W, H) * 0.09;
        const rMin = Math.max(4, font * 0.5);
        const name = (x) => pick(x.unit, "name", lang) || pick(x.row, "name", lang) || x.row.code;
        // new values for the same shapes (a live reading's refetch): only what they say changes
        const key = `${W}|${H}|${lang}|${placed.map((x) => x.row.code).join()}`;
        const same = this.shapes && this.shapesOf === this.geometry && this.shapesKey === key;
        if (!same) this.shapes = new Map();
        for (const x of placed) {
          const r = x.row;
          const said = x.has ? `${formatNumber(r.value, undefined, lang)}${v.unit ? ` ${pick({ u_vi: v.unit, u_en: v.unit_en || v.unit }, "u", lang)}` : ""}`
            : t(lang, "kpi.no_data");
          const approx = near(x);
          const attrs = { class: `map-unit${x.has ? "" : " no-data"}${approx ? " approx" : ""}`, fill: x.fill, "data-code": r.code,
            "data-value": x.has ? r.value : "", "data-status": r.status || "", "data-fill": x.fill, tabindex: 0 };
          const at = spot(x) ? proj(spot(x).lon, spot(x).lat) : null;
          if (!x.unit.boundary) attrs.r = (x.has ? rMin + (rMax - rMin) * Math.sqrt(Math.abs(r.value) / maxAbs) : rMin).toFixed(1);
          const title = `${name(x)}: ${said}${r.reason ? ` (${r.reason})` : ""}${approx
            ? ` · ${t(lang, "map.near", { unit: pick(approx, "name", lang) || approx.code })}` : ""}`;
          let shape = same ? this.shapes.get(r.code) : null;
          if (shape) {
            for (const [k, val] of Object.entries(attrs)) shape.setAttribute(k, String(val));
            shape.firstChild.textContent = title;
          } else {
            shape = x.unit.boundary ? svg("path", { ...attrs, d: pathOf(x.unit.boundary, proj), "data-drawn": "boundary" })
              : svg("circle", { ...attrs, cx: at[0].toFixed(1), cy: at[1].toFixed(1), "data-drawn": "circle" });
            shape.append(svg("title", {}, title));
            this.shapes.set(r.code, shape);
          }
          if (!same) shapes.append(shape);
          if (at && placed.length <= LABELS_UP_TO) {
            labels.append(svg("text", { class: `map-label${x.has ? "" : " no-data"}`, x: at[0].toFixed(1), y: at[1].toFixed(1),
              "font-size": font, "text-anchor": "middle", "dominant-baseline": "middle" }, x.has ? `${name(x)} ${said}` : `${name(x)} · ${said}`));
          }
        }
        this.drawMarkers(markers, proj, font, rows);
        if (same) {
          svgEl.replaceChild(labels, svgEl.querySelector(".map-labels"));
          svgEl.replaceChild(markers, svgEl.querySelector(".map-markers"));
        } else {
          svgEl.replaceChildren(shapes, labels, markers);
        }
        Object.assign(this, { shapesOf: this.geometry, shapesKey: key });
      }
      this.drawLegend(byStatus, rows, font);
      this.unplaced.replaceChildren();
      if (unplaced.length) {
        this.unplaced.append(el("div", "map-unplaced-title", t(lang, "map.no_position", { n: formatNumber(unplaced.length, 0, lang) })));
        const list = el("ul", "map-unplaced-list");
        for (const x of unplaced) {
          const li = el("li", "map-unplaced-unit", `${pick(x.unit, "name", lang) || x.row.code}: ${x.has ? formatNumber(x.row.value, undefined, lang) : t(lang, "kpi.no_data")}`);
          li.dataset.code = x.row.code;
          list.append(li);
        }
        this.unplaced.append(list);
      }
      Object.assign(this.el.dataset, {
        units: String(placed.length), unplaced: String(unplaced.length), mode: byStatus ? "status" : "value",
        level: v.level || "", drawnAt: String(performance.now()),
      });
      this.el.dispatchEvent(new CustomEvent("ioc-map-drawn"));
    }

    /** The units' extent, widened to the cameras near it (a camera at the edge of the
     * province is still shown; one of another town is not, rather than shrinking the map). */
    framed(bbox) {
      if (!bbox || !this.cameras) return bbox;
      let [w, s, e, n] = bbox;
      const mx = Math.max(e - w, 0.01) * 0.3;
      const my = Math.max(n - s, 0.01) * 0.3;
      for (const c of this.cameras.values()) {
        if (c.lon < bbox[0] - mx || c.lon > bbox[2] + mx || c.lat < bbox[1] - my || c.lat > bbox[3] + my) continue;
        w = Math.min(w, c.lon);
        e = Math.max(e, c.lon);
        s = Math.min(s, c.lat);
        n = Math.max(n, c.lat);
      }
      return [w, s, e, n];
    }

    drawMarkers(g, proj, font, rows) {
      const d = this.data || {};
      const health = new Map((d.cameras || []).map((c) => [c.id, c.state]));
      const size = Math.max(5, font * 0.55);
      const cams = this.cameras || new Map();
      const [W, H] = [Number(this.svg.viewBox.baseVal.width), Number(this.svg.viewBox.baseVal.height)];
      const inside = ([x, y]) => x >= 0 && y >= 0 && x <= W && y <= H;
      let shown = 0;
      for (const [id, c] of cams) {
        const state = health.get(id) || "unknown";
        const ok = state === "ok" || state === "online";
        const [x, y] = proj(c.lon, c.lat);
        if (!inside([x, y])) continue; // another town's camera: not on this map
        shown += 1;
        const m = svg("rect", { class: `map-camera ${ok ? "ok" : "bad"}`, x: (x - size / 2).toFixed(1), y: (y - size / 2).toFixed(1),
          width: size.toFixed(1), height: size.toFixed(1), rx: (size / 4).toFixed(1), "data-camera": id, "data-state": state });
        m.append(svg("title", {}, `${c.name}: ${ok ? t(this.lang, "health.ok") : t(this.lang, `cam.${state}`)}`));
        g.append(m);
      }
      const units = new Map(rows.map((x) => [x.row.code, x.unit]));
      for (const a of d.alerts || []) {
        const cam = a.camera && cams.get(a.camera);
        const unit = a.area && units.get(a.area);
        const pos = cam ? [cam.lon, cam.lat] : unit && Number.isFinite(unit.lat) ? [unit.lon, unit.lat] : null;
        if (!pos || !inside(proj(pos[0], pos[1]))) continue;
        const [x, y] = proj(pos[0], pos[1]);
        const s = size * 1.3;
        const m = svg("path", { class: `map-alert sev-${a.severity || "info"}`, "data-alert": String(a.id),
          // above the camera's square or the unit's middle, not over it
          d: `M${x.toFixed(1)},${(y - size - s * 1.6).toFixed(1)}l${s.toFixed(1)},${(s * 1.6).toFixed(1)}h${(-2 * s).toFixed(1)}Z` });
        m.append(svg("title", {}, pick(a, "message", this.lang) || ""));
        g.append(m);
      }
      this.el.dataset.cameras = String(shown);
    }

    drawLegend(byStatus, rows, font) {
      const lang = this.lang;
      const v = this.values;
      const items = [];
      const swatch = (fill, text, cls) => {
        const li = el("li", `map-key ${cls}`);
        const sw = el("span", "map-swatch");
        sw.style.background = fill;
        li.append(sw, el("span", "map-key-text", text));
        return li;
      };
      const unit = pick({ u_vi: v.unit || "", u_en: v.unit_en || v.unit || "" }, "u", lang);
      if (byStatus) {
        const sign = v.better === "lower" ? "≤" : "≥";
        const target = `${sign} ${formatNumber(v.target, undefined, lang)}${unit ? ` ${unit}` : ""}`;
        items.push(swatch(STATUS_FILL.meets, `${t(lang, "map.meets")} (${target})`, "meets"));
        items.push(swatch(STATUS_FILL.misses, t(lang, "map.misses"), "misses"));
      } else {
        const vals = rows.filter((x) => x.has).map((x) => x.row.value);
        if (vals.length) {
          const li = el("li", "map-key ramp");
          const bar = el("span", "map-ramp");
          bar.style.background = `linear-gradient(90deg, ${rampColour(0)}, ${rampColour(0.5)}, ${rampColour(1)})`;
          li.append(el("span", "map-key-text", formatNumber(Math.min(...vals), undefined, lang)), bar,
            el("span", "map-key-text", `${formatNumber(Math.max(...vals), undefined, lang)}${unit ? ` ${unit}` : ""}`));
          items.push(li);
        }
      }
      if (rows.some((x) => !x.has)) items.push(swatch(NO_DATA, t(lang, "kpi.no_data"), "no-data"));
      const markers = el("li", "map-key markers");
      markers.append(el("span", "map-swatch camera"), el("span", "map-key-text", t(lang, "map.camera")),
        el("span", "map-swatch alert"), el("span", "map-key-text", t(lang, "map.alert")));
      items.push(markers);
      this.legend.style.fontSize = `${font}px`;
      this.periodEl.style.fontSize = `${font}px`;
      this.periodEl.textContent = t(lang, `drill.period_${this.settings().period}`);
      this.legend.replaceChildren(...items);
    }

    drill(ev) {
      const target = ev.target.closest && ev.target.closest(".map-unit");
      if (!target) return;
      const s = this.settings();
      this.el.dispatchEvent(new CustomEvent("ioc-drill", {
        bubbles: true, detail: { kpi: s.kpi, area: target.dataset.code, level: (this.values && this.values.level) || s.level },
      }));
    }

    destroy() {
      this.resize.disconnect();
      clearTimeout(this.later);
      this.destroyed = true;
    }
  };
}
