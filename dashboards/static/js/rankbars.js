// Ranked horizontal bars (SVG, no library): one bar per unit with a value, best first as the
// API ranks them, the KPI's target as a vertical line, the best and the worst marked. Shared
// by the drill-down panel (drill.js) and the wall's `ranking` tile (tiles.js), so a leader
// reads the same picture on the tablet and on the wall.

import { formatNumber } from "./format.js";
import { pick, t } from "./i18n.js";
import { svg } from "./dom.js";

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
  const W = Math.max(120, width);
  // a tablet gives the rows' height; a wall tile its own, and the text grows with it (read
  // from metres away) but never so much that a long name leaves no room for the bar
  const font = fontPx || Math.max(11, Math.min(rowH ? rowH * 0.55 : (height / (Math.max(n, 1) + 1.2)) * 0.45, W / 28, 40));
  const head = font * 1.6; // room above the bars for the target's label
  const step = rowH || Math.max(font * 1.2, (height - head) / Math.max(n, 1));
  const barH = Math.min(step * 0.72, font * 1.5);
  const H = head + step * n + 2;
  svgEl.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svgEl.setAttribute("height", String(Math.round(H)));
  svgEl.dataset.rows = String(n);
  if (!n) return H;
  // names get the room the longest needs, up to 42 % of the width (cut with … beyond it)
  const CH = 0.6; // a character's width, in ems (bold, Vietnamese diacritics)
  const labels = rows.map((r) => `${r.rank}. ${pick(r, "name", lang) || r.code}`);
  const labelW = Math.min(W * 0.42, font * (CH * Math.max(...labels.map((l) => l.length)) + 0.5));
  const fits = Math.max(4, Math.floor(labelW / (font * CH)));
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
    const label = labels[i];
    const mid = y + step / 2;
    g.append(svg("text", { class: "rank-name", x: labelW, y: mid + font * 0.35, "text-anchor": "end", "font-size": font },
      label.length > fits ? `${label.slice(0, fits - 1)}…` : label));
    const bw = Math.max(1, x(Number(r.value)) - x(Math.max(lo, 0)));
    g.append(svg("rect", { class: "rank-bar", x: x(Math.max(lo, 0)), y: mid - barH / 2, width: bw, height: barH, rx: 2 }));
    g.append(svg("text", { class: "rank-value", x: x(Number(r.value)) + font * 0.3, y: mid + font * 0.32, "font-size": font * 0.9 },
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
