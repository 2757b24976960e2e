// Ranked horizontal bars (SVG, no library): one bar per unit with a value, best first as the
// API ranks them, the KPI's target as a vertical line, the best and the worst marked. Shared
// by the drill-down panel (drill.js) and the wall's `ranking` tile (tiles.js), so a leader
// reads the same picture on the tablet and on the wall.

import { formatNumber } from "./format.js";
import { pick, t } from "./i18n.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Rows the API gave a value (ranked), in its order; the others are listed apart, never drawn
 * as a zero. */
export function splitRows(rows) {
  const ranked = [];
  const empty = [];
  for (const r of rows || []) (r.value === null || r.value === undefined ? empty : ranked).push(r);
  return { ranked, empty };
}

/**
 * Draws `rows` (ranked, best first) into `svgEl`, `width` px wide; each row `rowH` px high
 * (the drill-down) or the whole chart fitted into `height` (a wall tile). Returns the height
 * drawn. `onPick(row)` makes rows tappable (drill further).
 */
export function drawRankBars(svgEl, rows, { width, rowH = null, height = null, target = null, better = null,
  unit = "", lang = "vi", onPick = null, font: fontPx = null } = {}) {
  svgEl.replaceChildren();
  const n = rows.length;
  const font = fontPx || Math.max(11, Math.min(18, rowH ? rowH * 0.55 : (height / Math.max(n, 1)) * 0.55));
  const head = font * 1.6; // room above the bars for the target's label
  const step = rowH || Math.max(font * 1.2, (height - head) / Math.max(n, 1));
  const H = head + step * n + 2;
  const W = Math.max(120, width);
  svgEl.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svgEl.setAttribute("height", String(Math.round(H)));
  svgEl.dataset.rows = String(n);
  if (!n) return H;
  const labelW = Math.min(W * 0.38, font * 12);
  const valueW = font * 4.2;
  const x0 = labelW + font * 0.4;
  const span = Math.max(10, W - x0 - valueW);
  const values = rows.map((r) => Number(r.value));
  const lo = Math.min(0, ...values);
  const hi = Math.max(...values, target ?? -Infinity, lo + 1e-9);
  const x = (v) => x0 + ((v - lo) / (hi - lo)) * span;
  const last = rows.reduce((m, r) => Math.max(m, Number(r.rank) || 0), 0);
  const suffix = unit === "%" ? " %" : "";
  rows.forEach((r, i) => {
    const y = head + i * step;
    const best = Number(r.rank) === 1;
    const worst = n > 1 && Number(r.rank) === last;
    const g = svg("g", { class: `rank-row${best ? " best" : ""}${worst ? " worst" : ""}${r.status ? ` ${r.status}` : ""}` });
    Object.assign(g.dataset, { code: r.code, rank: String(r.rank ?? ""), value: String(r.value) });
    const name = pick(r, "name", lang) || r.code;
    const mark = best ? ` ★` : worst ? ` ▼` : "";
    g.append(svg("title", {}, `${r.rank}. ${name}: ${formatNumber(r.value, undefined, lang)}${suffix}${best ? ` (${t(lang, "rank.best")})` : worst ? ` (${t(lang, "rank.worst")})` : ""}`));
    g.append(svg("text", { class: "rank-name", x: labelW, y: y + step * 0.68, "text-anchor": "end", "font-size": font },
      `${r.rank}. ${name.length > 22 ? `${name.slice(0, 21)}…` : name}`));
    const bw = Math.max(1, x(Number(r.value)) - x(Math.max(lo, 0)));
    g.append(svg("rect", { class: "rank-bar", x: x(Math.max(lo, 0)), y: y + step * 0.14, width: bw, height: step * 0.72, rx: 2 }));
    g.append(svg("text", { class: "rank-value", x: x(Number(r.value)) + font * 0.3, y: y + step * 0.68, "font-size": font * 0.9 },
      `${formatNumber(r.value, undefined, lang)}${suffix}${mark}`));
    if (onPick) {
      g.classList.add("pick");
      g.setAttribute("role", "button");
      g.setAttribute("tabindex", "0");
      g.addEventListener("click", () => onPick(r));
      g.addEventListener("keydown", (ev) => ev.key === "Enter" && onPick(r));
    }
    svgEl.append(g);
  });
  if (target !== null && target !== undefined) {
    const tx = x(Number(target));
    const line = svg("line", { class: "rank-target", x1: tx, x2: tx, y1: head - font * 0.3, y2: H });
    line.dataset.target = String(target);
    svgEl.append(line);
    const sign = better === "lower" ? "≤" : "≥";
    svgEl.append(svg("text", { class: "rank-target-label", x: tx, y: font * 1.05, "text-anchor": tx > W * 0.7 ? "end" : "middle",
      "font-size": font * 0.85 }, `${t(lang, "kpi.target")} ${sign} ${formatNumber(target, undefined, lang)}${suffix}`));
  }
  return H;
}
