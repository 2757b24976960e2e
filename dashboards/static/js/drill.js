// The drill-down panel of the tablet and the console: a leader taps a KPI tile (or the map
// tile says `ioc-drill`) and sees where the figure comes from, for a period they pick:
//   (a) the value by sub-unit, ranked, with the target line, best and worst; units with no
//       figure listed as such (a bare percentage that cannot be combined says the API's reason);
//   (b) the area's series with the same period a year earlier drawn over it;
//   (c) this period against the same period last year, per unit and in total;
//   (d) by reporting agency.
// Tapping a unit drills into it: its own units (a province's communes), or for a commune
// its own figures over time, against last year and by agency; "back" returns. Every figure is the API's
// (GET /api/v1/breakdown and /series): the page computes only the differences it shows.

import { formatDate, formatNumber, localParts, toDate } from "./format.js";
import { pick, t } from "./i18n.js";
import { PERIODS, periodRange } from "./periods.js";
import { drawRankBars, splitRows } from "./rankbars.js";
import { el, svg } from "./dom.js";

/** Tile kinds a tap drills into (they name a KPI and an area). */
export const DRILLABLE = new Set(["kpi", "chart", "ranking"]);
const has = (cell) => !!cell && cell.value !== null && cell.value !== undefined;

export class DrillPanel {
  /** ctx: {lang(), serverNow(), api(path)}; the panel is appended to `host`. */
  constructor(ctx, host = document.body) {
    this.ctx = ctx;
    this.stack = []; // [{kpi, area, level, name}], the last one shown
    this.period = "month";
    this.loads = 0;
    this.names = null; // area code -> {name_vi, name_en}
    this.kpis = new Map(); // kpi id -> catalogue entry
    this.el = el("section", "drill");
    this.el.hidden = true;
    this.el.setAttribute("role", "dialog");
    this.el.setAttribute("aria-modal", "false");
    this.el.dataset.state = "closed";
    const head = el("header", "drill-head");
    this.backBtn = el("button", "drill-back");
    this.backBtn.type = "button";
    this.backBtn.addEventListener("click", () => this.back());
    this.titleEl = el("h2", "drill-title");
    this.closeBtn = el("button", "drill-close", "✕");
    this.closeBtn.type = "button";
    this.closeBtn.addEventListener("click", () => this.close());
    head.append(this.backBtn, this.titleEl, this.closeBtn);
    this.crumbs = el("nav", "drill-crumbs");
    this.periods = el("div", "drill-periods");
    this.periods.setAttribute("role", "group");
    this.periodBtns = PERIODS.map((p) => {
      const b = el("button", "drill-period");
      b.type = "button";
      b.dataset.period = p;
      b.addEventListener("click", () => {
        this.period = p;
        this.load();
      });
      return b;
    });
    this.periods.append(...this.periodBtns);
    this.totalEl = el("div", "drill-total");
    this.msg = el("div", "drill-msg");
    const section = (cls) => {
      const s = el("section", `drill-sec ${cls}`);
      s.append(el("h3"));
      return s;
    };
    this.unitsSec = section("drill-units");
    this.rankSvg = svg("svg", { class: "rank-svg" });
    this.noData = el("ul", "drill-nodata");
    this.unitsSec.append(this.rankSvg, this.noData);
    this.timeSec = section("drill-time");
    this.timeSvg = svg("svg", { class: "time-svg" });
    this.timeLegend = el("div", "time-legend");
    this.timeSec.append(this.timeSvg, this.timeLegend);
    this.compareSec = section("drill-compare");
    this.compareTable = el("table", "drill-table compare-table");
    this.compareSec.append(this.compareTable);
    this.agencySec = section("drill-agencies");
    this.agencyTable = el("table", "drill-table agency-table");
    this.agencySec.append(this.agencyTable);
    const grid = el("div", "drill-grid");
    grid.append(this.unitsSec, this.timeSec, this.compareSec, this.agencySec);
    this.el.append(head, this.crumbs, this.periods, this.totalEl, this.msg, grid);
    host.append(this.el);
    this.el.addEventListener("keydown", (ev) => ev.key === "Escape" && this.close());
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.unitsSec);
    this.res = null;
    this.series = null;
    this.agencies = null;
    this.labels();
  }

  get lang() {
    return this.ctx.lang();
  }

  get here() {
    return this.stack[this.stack.length - 1] || null;
  }

  /** Opens on a KPI and area (a tile tapped, an `ioc-drill` event): a new trail. */
  open({ kpi, area, level = null }) {
    if (!kpi || !area) return;
    this.stack = [{ kpi, area: String(area), level: level || null }];
    this.el.hidden = false;
    this.load();
    this.closeBtn.focus({ preventScroll: true });
  }

  close() {
    this.el.hidden = true;
    this.el.dataset.state = "closed";
    this.stack = [];
    this.loads += 1; // answers on their way are dropped
  }

  back() {
    if (this.stack.length > 1) {
      this.stack.pop();
      this.load();
    } else {
      this.close();
    }
  }

  drill(row) {
    const here = this.here;
    if (!here || !this.res) return;
    this.stack.push({ kpi: here.kpi, area: row.code, level: null });
    this.load();
  }

  setLang() {
    this.labels();
    this.draw();
  }

  labels() {
    const lang = this.lang;
    this.backBtn.textContent = `← ${t(lang, this.stack.length > 1 ? "drill.back" : "drill.close")}`;
    this.closeBtn.title = t(lang, "drill.close");
    this.closeBtn.setAttribute("aria-label", t(lang, "drill.close"));
    for (const b of this.periodBtns) {
      b.textContent = t(lang, `drill.period_${b.dataset.period}`);
      b.setAttribute("aria-pressed", String(b.dataset.period === this.period));
    }
    this.unitsSec.firstChild.textContent = t(lang, "drill.by_unit");
    this.timeSec.firstChild.textContent = t(lang, "drill.over_time");
    this.compareSec.firstChild.textContent = t(lang, "drill.vs_last_year");
    this.agencySec.firstChild.textContent = t(lang, "drill.by_agency");
  }

  areaName(code) {
    const a = this.names && this.names.get(code);
    return a ? pick(a, "name", this.lang) : code;
  }

  async catalogue(kpi) {
    const jobs = [];
    if (!this.names) {
      jobs.push(this.ctx.api("/api/v1/areas").then((list) => {
        // a reform reuses codes: the newest version's name
        const sorted = [...(list || [])].sort((a, b) => String(a.valid_from || "").localeCompare(String(b.valid_from || "")));
        this.names = new Map(sorted.map((a) => [a.code, a]));
      }));
    }
    if (!this.kpis.has(kpi)) jobs.push(this.ctx.api(`/api/v1/kpis/${encodeURIComponent(kpi)}`).then((k) => this.kpis.set(kpi, k)));
    await Promise.allSettled(jobs);
  }

  async load() {
    const here = this.here;
    if (!here) return;
    const mine = ++this.loads;
    const range = periodRange(this.period, this.ctx.serverNow());
    Object.assign(this.el.dataset, { state: "loading", kpi: here.kpi, area: here.area, period: this.period, depth: String(this.stack.length) });
    this.labels();
    this.msg.textContent = t(this.lang, "chart.loading");
    this.msg.hidden = false;
    const q = new URLSearchParams({ kpi: here.kpi, area: here.area, start: range.start, end: range.end, compare: "year" });
    if (here.level) q.set("level", here.level);
    const qa = new URLSearchParams({ kpi: here.kpi, area: here.area, start: range.start, end: range.end, by: "agency" });
    try {
      const [res, agencies] = await Promise.all([
        this.ctx.api(`/api/v1/breakdown?${q}`),
        this.ctx.api(`/api/v1/breakdown?${qa}`).catch((err) => ({ failed: String(err && err.message) })),
        this.catalogue(here.kpi),
      ]);
      if (mine !== this.loads) return;
      this.res = res;
      this.agencies = agencies;
      this.series = null;
      this.draw();
      this.el.dataset.level = res.level || "";
      // the trend: this period and the same one a year earlier, in the same buckets
      const prev = res.previous || {};
      const ask = (start, end) => this.ctx.api(`/api/v1/series?${new URLSearchParams({ kpi: here.kpi, area: here.area, bucket: range.bucket, start, end })}`);
      const [now, before] = await Promise.all([
        ask(res.start || range.start, res.end || range.end),
        prev.start && prev.end ? ask(prev.start, prev.end).catch(() => null) : Promise.resolve(null),
      ]);
      if (mine !== this.loads) return;
      this.series = { now, before, bucket: range.bucket, start: res.start || range.start, prevStart: prev.start };
      this.draw();
      this.el.dataset.state = "ready";
    } catch (err) {
      if (mine !== this.loads) return;
      console.warn("drill-down: failed", here, err);
      this.res = null; // nothing of another area or period stays on show
      for (const e of [this.rankSvg, this.noData, this.timeSvg, this.timeLegend, this.compareTable, this.agencyTable, this.totalEl]) e.replaceChildren();
      this.msg.textContent = `${t(this.lang, "chart.failed")}${err && err.status ? ` (${err.message})` : ""}`;
      this.msg.hidden = false;
      this.el.dataset.state = "failed";
    }
  }

  unitSuffix() {
    const r = this.res;
    if (!r) return "";
    if (r.unit === "%") return " %";
    const u = pick(r, "unit", this.lang) || r.unit || "";
    return u && u.length <= 10 ? ` ${u}` : "";
  }

  fmt(cell) {
    return has(cell) ? `${formatNumber(cell.value, undefined, this.lang)}${this.unitSuffix()}` : "—";
  }

  draw() {
    if (this.el.hidden) return;
    const lang = this.lang;
    const here = this.here;
    const res = this.res;
    if (!here) return;
    const k = this.kpis.get(here.kpi);
    this.titleEl.textContent = `${k ? pick(k, "name", lang) : here.kpi} · ${this.areaName(here.area)}`;
    this.crumbs.replaceChildren(...this.stack.map((s, i) => {
      const c = el(i === this.stack.length - 1 ? "span" : "button", "crumb", this.areaName(s.area));
      c.dataset.area = s.area;
      if (i < this.stack.length - 1) {
        c.type = "button";
        c.addEventListener("click", () => {
          this.stack.length = i + 1;
          this.load();
        });
      }
      return c;
    }));
    if (!res) return;
    this.msg.hidden = true;
    const range = res.start && res.end ? `${formatDate(res.start)} – ${formatDate(new Date(toDate(res.end).getTime() - 1))}` : "";
    const total = el("span", "total-value", this.fmt(res.total));
    total.dataset.value = has(res.total) ? String(res.total.value) : "";
    const bits = [el("span", "total-label", `${t(lang, "rank.total")}: `), total];
    if (!has(res.total) && res.total && res.total.reason) bits.push(el("span", "reason", ` (${res.total.reason})`));
    if (res.target !== null && res.target !== undefined) {
      bits.push(el("span", "total-target", ` · ${t(lang, "kpi.target")} ${res.better === "lower" ? "≤" : "≥"} ${formatNumber(res.target, undefined, lang)}${this.unitSuffix()}`));
    }
    bits.push(el("span", "total-range", ` · ${range}`));
    this.totalEl.replaceChildren(...bits);
    this.drawUnits();
    this.drawCompare();
    this.drawAgencies();
    this.drawTime();
  }

  drawUnits() {
    const res = this.res;
    const lang = this.lang;
    const { ranked, empty } = splitRows(res.rows);
    const width = this.unitsSec.clientWidth - 4;
    drawRankBars(this.rankSvg, ranked, {
      width, rowH: 30, target: res.target, better: res.better, unit: res.unit, lang,
      onPick: (row) => this.drill(row),
    });
    this.rankSvg.dataset.order = ranked.map((r) => r.code).join(",");
    const item = (r) => {
      const li = el("li", "nodata-row pick");
      li.dataset.code = r.code;
      li.append(el("span", "name", pick(r, "name", lang) || r.code),
        el("span", "why", r.reason ? ` — ${r.reason}` : ` — ${t(lang, "rank.no_data")}`));
      li.addEventListener("click", () => this.drill(r));
      return li;
    };
    // figures that exist but cannot be combined say why, in full; units that sent nothing
    // are a long list (a province's communes): folded, the count on its fold
    const items = empty.filter((r) => r.reason).map(item);
    const silent = empty.filter((r) => !r.reason);
    if (silent.length) {
      const fold = el("details", "nodata-fold");
      const list = el("ul");
      list.append(...silent.map(item));
      fold.append(el("summary", "", t(lang, "rank.no_data_n", { n: formatNumber(silent.length, 0, lang) })), list);
      const li = el("li", "nodata-more");
      li.append(fold);
      items.push(li);
    }
    if (!ranked.length && !empty.length) items.push(el("li", "nodata-none", t(lang, "rank.no_units")));
    this.noData.replaceChildren(...items);
  }

  change(now, before) {
    if (!has(now) || !has(before)) return { text: "—", value: null };
    const d = Number(now.value) - Number(before.value);
    const lang = this.lang;
    const sign = d > 0 ? "+" : d < 0 ? "−" : "±";
    let text = `${sign}${formatNumber(Math.abs(d), undefined, lang)}${this.res.unit === "%" ? ` ${t(lang, "drill.points")}` : ""}`;
    if (this.res.unit !== "%" && Number(before.value) !== 0) {
      text += ` (${sign}${formatNumber(Math.abs((d / Number(before.value)) * 100), 1, lang)} %)`;
    }
    return { text, value: d };
  }

  drawCompare() {
    const res = this.res;
    const lang = this.lang;
    const better = res.better === "lower" ? -1 : 1;
    const head = el("tr");
    for (const k of ["drill.unit", "drill.this_period", "drill.last_year", "drill.change"]) head.append(el("th", "", t(lang, k)));
    const row = (code, name, now, before, cls) => {
      const tr = el("tr", cls);
      tr.dataset.code = code;
      const c = this.change(now, before);
      const cells = [el("td", "name", name), el("td", "now", this.fmt(now)), el("td", "prev", this.fmt(before)), el("td", "change", c.text)];
      cells[1].dataset.value = has(now) ? String(now.value) : "";
      cells[2].dataset.value = has(before) ? String(before.value) : "";
      cells[3].dataset.value = c.value === null ? "" : String(c.value);
      if (c.value) cells[3].dataset.judge = c.value * better > 0 ? "good" : "bad";
      if (!has(now) && now && now.reason) cells[1].title = now.reason;
      if (!has(before) && before && before.reason) cells[2].title = before.reason;
      tr.append(...cells);
      return tr;
    };
    const prevTotal = res.previous ? res.previous.total : null;
    const rows = [row("*", t(lang, "rank.total"), res.total, prevTotal, "total")];
    // units with a figure now or then (those with neither are in the "no figures" list)
    for (const r of (res.rows || []).filter((u) => has(u) || has(u.previous))) rows.push(row(r.code, pick(r, "name", lang) || r.code, r, r.previous, ""));
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    tbody.append(...rows);
    this.compareTable.replaceChildren(thead, tbody);
  }

  drawAgencies() {
    const a = this.agencies;
    const lang = this.lang;
    if (!a || a.failed) {
      this.agencyTable.replaceChildren(el("caption", "", t(lang, "chart.failed")));
      return;
    }
    const head = el("tr");
    for (const k of ["drill.rank", "drill.agency", "drill.value", "drill.readings"]) head.append(el("th", "", t(lang, k)));
    const rows = (a.rows || []).map((r) => {
      const tr = el("tr");
      tr.dataset.code = r.code;
      const v = el("td", "value", has(r) ? this.fmt(r) : r.reason || t(lang, "rank.no_data"));
      v.dataset.value = has(r) ? String(r.value) : "";
      tr.append(el("td", "rank", r.rank ? String(r.rank) : ""), el("td", "name", pick(r, "name", lang) || r.code), v,
        el("td", "n", formatNumber(r.n ?? 0, 0, lang)));
      return tr;
    });
    if (!rows.length) rows.push(el("tr", "none"));
    if (!(a.rows || []).length) rows[0].append(Object.assign(el("td", "", t(lang, "rank.no_data")), { colSpan: 4 }));
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    tbody.append(...rows);
    this.agencyTable.replaceChildren(thead, tbody);
  }

  /** The bucket's place in its period: day of the period, or month of the year. */
  slot(bucket, start, monthly) {
    const a = localParts(bucket);
    const b = localParts(start);
    if (!a || !b) return null;
    if (monthly) return (Number(a.year) - Number(b.year)) * 12 + Number(a.month) - Number(b.month);
    return Math.round((Date.UTC(+a.year, +a.month - 1, +a.day) - Date.UTC(+b.year, +b.month - 1, +b.day)) / 86400000);
  }

  drawTime() {
    const s = this.series;
    const g = this.timeSvg;
    const lang = this.lang;
    g.replaceChildren();
    this.timeLegend.replaceChildren();
    if (!s || !s.now) return;
    const monthly = s.bucket === "1M";
    const line = (res, start) => (res && res.points ? res.points : [])
      .map((p) => ({ i: this.slot(p.bucket, start, monthly), v: p.value === null || p.value === undefined ? null : Number(p.value), p }))
      .filter((p) => p.i !== null && p.i >= 0);
    const now = line(s.now, s.start);
    const before = s.before && s.prevStart ? line(s.before, s.prevStart) : [];
    const values = [...now, ...before].map((p) => p.v).filter((v) => v !== null && Number.isFinite(v));
    const W = Math.max(200, this.timeSec.clientWidth - 4);
    const H = 200;
    g.setAttribute("viewBox", `0 0 ${W} ${H}`);
    g.setAttribute("height", String(H));
    g.dataset.now = String(now.filter((p) => p.v !== null).length);
    g.dataset.before = String(before.filter((p) => p.v !== null).length);
    if (!values.length) {
      g.append(svg("text", { class: "chart-label", x: W / 2, y: H / 2, "text-anchor": "middle", "font-size": 14 }, t(lang, "chart.empty")));
      return;
    }
    const target = this.res && this.res.target;
    let lo = Math.min(...values, target ?? Infinity);
    let hi = Math.max(...values, target ?? -Infinity);
    if (hi === lo) {
      hi += Math.abs(hi) * 0.1 || 1;
      lo -= Math.abs(lo) * 0.1 || 1;
    }
    const slots = Math.max(monthly ? 12 : 28, ...now.map((p) => p.i + 1), ...before.map((p) => p.i + 1));
    const pad = 34;
    const x = (i) => pad + (i / Math.max(1, slots - 1)) * (W - pad - 8);
    const y = (v) => 14 + (1 - (v - lo) / (hi - lo)) * (H - 40);
    for (const v of [lo, (lo + hi) / 2, hi]) {
      g.append(svg("line", { class: "chart-grid", x1: pad, x2: W - 8, y1: y(v), y2: y(v) }));
      g.append(svg("text", { class: "chart-label", x: pad - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 11 }, formatNumber(v, undefined, lang)));
    }
    if (target !== null && target !== undefined) {
      g.append(svg("line", { class: "rank-target", x1: pad, x2: W - 8, y1: y(target), y2: y(target) }));
    }
    const path = (pts) => {
      let d = "";
      let pen = false;
      for (const p of pts) {
        if (p.v === null) {
          pen = false;
          continue;
        }
        d += `${pen ? "L" : "M"}${x(p.i).toFixed(1)},${y(p.v).toFixed(1)}`;
        pen = true;
      }
      return d;
    };
    if (before.length) g.append(svg("path", { class: "time-before", d: path(before) }));
    g.append(svg("path", { class: "time-now", d: path(now) }));
    // dots too: a period with one reading (a monthly KPI) is a point, not a line
    for (const p of before) if (p.v !== null) g.append(svg("circle", { class: "time-dot-before", cx: x(p.i), cy: y(p.v), r: 3 }));
    for (const p of now) if (p.v !== null) g.append(svg("circle", { class: "time-dot", cx: x(p.i), cy: y(p.v), r: 3 }));
    const first = monthly ? "01" : "1";
    g.append(svg("text", { class: "chart-label", x: pad, y: H - 6, "font-size": 11 }, monthly ? t(lang, "drill.month_n", { n: first }) : t(lang, "drill.day_n", { n: first })));
    g.append(svg("text", { class: "chart-label", x: W - 8, y: H - 6, "text-anchor": "end", "font-size": 11 },
      monthly ? t(lang, "drill.month_n", { n: String(slots) }) : t(lang, "drill.day_n", { n: String(slots) })));
    this.timeLegend.append(el("span", "legend-now", t(lang, "drill.this_period")), el("span", "legend-before", t(lang, "drill.last_year")));
  }
}

/**
 * Opens `panel` from a tap on a drillable tile inside `root` (`defOf(tileId)` gives the
 * tile's definition) and from an `ioc-drill` event anywhere in the page: another tile (the
 * map) dispatches `new CustomEvent("ioc-drill", {bubbles: true, detail: {kpi, area, level}})`.
 */
export function wireDrill(panel, root, defOf) {
  root.addEventListener("click", (ev) => {
    const tile = ev.target.closest && ev.target.closest(".tile");
    if (!tile) return;
    const def = defOf(tile.dataset.tile);
    if (def && DRILLABLE.has(def.kind) && def.kpi && def.area) panel.open({ kpi: def.kpi, area: def.area, level: def.level || null });
  });
  document.addEventListener("ioc-drill", (ev) => {
    const d = ev.detail || {};
    if (d.kpi && d.area) panel.open({ kpi: String(d.kpi), area: String(d.area), level: d.level ? String(d.level) : null });
  });
}
