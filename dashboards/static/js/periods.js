// The periods a leader compares (this month so far, last month, this year so far), bounded
// in the province's local time whatever the device's zone: Viet Nam keeps +07:00 all year,
// so a local midnight is written with that offset and the API reads it exactly.

import { localParts } from "./format.js";

export const PERIODS = ["month", "last_month", "year"];
const OFFSET = "+07:00";

const pad = (n) => String(n).padStart(2, "0");
const monthStart = (y, m) => (m < 1 ? `${y - 1}-12-01T00:00:00${OFFSET}` : `${y}-${pad(m)}-01T00:00:00${OFFSET}`);

/**
 * {start, end, bucket} of `period` at `nowS` (epoch s, the server's clock): ISO strings with
 * the province's offset; `bucket` is what its trend is drawn in (days for a month, months
 * for a year).
 */
export function periodRange(period, nowS) {
  const p = localParts(nowS);
  const y = Number(p.year);
  const m = Number(p.month);
  const now = new Date(nowS * 1000).toISOString();
  if (period === "last_month") return { start: monthStart(y, m - 1), end: monthStart(y, m), bucket: "1d" };
  if (period === "year") return { start: `${y}-01-01T00:00:00${OFFSET}`, end: now, bucket: "1M" };
  return { start: monthStart(y, m), end: now, bucket: "1d" };
}

/**
 * The /api/v1/breakdown query of a tile's settings ({kpi, area, level?, period}) at `nowS`;
 * in a replay (`past`) the figures as they were known then (later corrections not yet).
 */
export function breakdownQuery(s, nowS, past = false) {
  const range = periodRange(s.period, nowS);
  const q = new URLSearchParams({ kpi: s.kpi, area: s.area, start: range.start, end: range.end });
  if (s.level) q.set("level", s.level);
  if (past) q.set("as_of", new Date(nowS * 1000).toISOString());
  return q;
}
