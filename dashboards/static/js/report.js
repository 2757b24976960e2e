// An agency's clerk reports a month's figures by hand or uploads the spreadsheet template.
// Everything goes to POST /api/v1/agency/readings or /uploads, which hand it to the ingest
// over MQTT: the checks and the per-row results are the MQTT path's own.

import { ApiError, api, bindLoginForm, dropSession, explain, loadSession } from "./api.js";
import { languageState, loginForm } from "./chrome.js";
import { pick, t } from "./i18n.js";

const PAGE = "report";
const $ = (id) => document.getElementById(id);
const hooks = (window.__ioc = { page: PAGE, ready: false });
const langButton = $("lang");
const lang = languageState(() => {
  langButton.textContent = lang.get() === "vi" ? "EN" : "VI";
  renderFields();
  if (lastForm) renderResults($("form-results"), lastForm, false);
  if (lastUpload) renderResults($("upload-results"), lastUpload, true);
});
langButton.textContent = lang.get() === "vi" ? "EN" : "VI";
langButton.addEventListener("click", () => lang.set(lang.get() === "vi" ? "en" : "vi"));

let session = null;
let me = null;
let kpis = [];
let areas = [];
let latest = new Map(); // kpi -> the latest reading for the chosen area
let lastForm = null;
let lastUpload = null;

const overlay = $("login");
const form = loginForm(overlay, lang.get());

function showLogin(message) {
  overlay.hidden = false;
  form.querySelector(".error").textContent = message || "";
  form.username.focus();
}

/** "+0700" -> minutes east of UTC, and "+07:00" for an ISO time. */
function offset() {
  const raw = (me && me.utc_offset) || "+0700";
  const sign = raw[0] === "-" ? -1 : 1;
  return { minutes: sign * (Number(raw.slice(1, 3)) * 60 + Number(raw.slice(3, 5))), iso: `${raw.slice(0, 3)}:${raw.slice(3, 5)}` };
}

/** The province's calendar, never the device's: a date's year and month there. */
function localParts(ms) {
  const d = new Date(ms + offset().minutes * 60000);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1 };
}

const pad = (n) => String(n).padStart(2, "0");
const monthStart = (month) => `${month}-01T00:00:00${offset().iso}`;

function previousMonth() {
  const now = localParts(Date.now());
  const year = now.month === 1 ? now.year - 1 : now.year;
  const month = now.month === 1 ? 12 : now.month - 1;
  return `${year}-${pad(month)}`;
}

function formatValue(v) {
  return typeof v === "number" ? v.toLocaleString(lang.get() === "vi" ? "vi-VN" : "en-GB", { maximumFractionDigits: 2 }) : String(v ?? "");
}

async function start(s) {
  session = s;
  overlay.hidden = true;
  try {
    me = await api("/api/v1/agency/me", { token: s.token });
    const query = me.sectors.map((x) => `sector=${encodeURIComponent(x)}`).join("&");
    [kpis, areas] = await Promise.all([
      api(`/api/v1/kpis?${query}`, { token: s.token }),
      api("/api/v1/areas", { token: s.token }),
    ]);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) dropSession(PAGE);
    showLogin(err instanceof ApiError && err.status === 403 ? t(lang.get(), "err.forbidden") : explain(err, lang.get()));
    return;
  }
  $("user").textContent = `${me.agency} · ${me.sectors.join(", ")}`;
  const select = $("area");
  select.replaceChildren(...areas.map((a) => {
    const o = document.createElement("option");
    o.value = a.code;
    o.textContent = `${a.code} — ${pick(a, "name", lang.get())}`;
    return o;
  }));
  const province = areas.find((a) => a.level === "province");
  if (province) select.value = province.code;
  if (!$("month").value) $("month").value = previousMonth();
  await loadLatest();
  hooks.ready = true;
}

async function loadLatest() {
  const area = $("area").value;
  const rows = area ? await api(`/api/v1/latest?area=${encodeURIComponent(area)}`, { token: session.token }) : [];
  latest = new Map(rows.map((r) => [r.kpi, r]));
  renderFields();
}

function renderFields() {
  const body = $("fields");
  const keep = new Map([...body.querySelectorAll("input")].map((i) => [i.dataset.kpi, i.value]));
  body.replaceChildren(...kpis.map((k) => {
    const tr = document.createElement("tr");
    tr.dataset.kpi = k.id;
    const name = document.createElement("td");
    name.innerHTML = `<div class="kname"></div><div class="kid"></div>`;
    name.querySelector(".kname").textContent = pick(k, "name", lang.get());
    name.querySelector(".kid").textContent = `${k.id} · ${lang.get() === "en" && k.unit_en ? k.unit_en : k.unit}`;
    const last = document.createElement("td");
    last.className = "last";
    const got = latest.get(k.id);
    if (got) {
      const p = localParts(Date.parse(got.ts));
      last.innerHTML = `<span class="lv"></span> <span class="when"></span>`;
      last.querySelector(".lv").textContent = formatValue(got.value);
      last.querySelector(".when").textContent = `(${pad(p.month)}/${p.year})`;
    } else {
      last.textContent = t(lang.get(), "r.none");
      last.classList.add("when");
    }
    const cell = document.createElement("td");
    const input = document.createElement("input");
    input.type = "number";
    input.step = "any";
    input.dataset.kpi = k.id;
    input.setAttribute("aria-label", pick(k, "name", lang.get()));
    if (Number.isFinite(k.min)) input.min = String(k.min);
    if (Number.isFinite(k.max)) input.max = String(k.max);
    input.value = keep.get(k.id) || "";
    cell.append(input);
    tr.append(name, last, cell);
    return tr;
  }));
}

function kpiName(id) {
  const k = kpis.find((x) => x.id === id);
  return k ? pick(k, "name", lang.get()) : id || "";
}

function renderResults(box, out, upload) {
  box.replaceChildren();
  if (out.errors) {
    const p = document.createElement("p");
    p.className = "errors-title";
    p.textContent = t(lang.get(), "r.refused_file");
    const ul = document.createElement("ul");
    ul.className = "errors";
    for (const e of out.errors) {
      const li = document.createElement("li");
      li.textContent = e;
      ul.append(li);
    }
    box.append(p, ul);
    return;
  }
  const counts = { accepted: 0, corrected: 0, duplicate: 0, refused: 0, pending: 0 };
  for (const r of out.rows) counts[r.status] = (counts[r.status] || 0) + 1;
  const summary = document.createElement("p");
  summary.className = "summary";
  summary.textContent = t(lang.get(), "r.summary", counts) + (out.skipped ? ` · ${t(lang.get(), "r.skipped", { n: out.skipped })}` : "");
  const table = document.createElement("table");
  const head = upload ? ["r.row", "r.kpi", "r.area", "r.val", "r.status", "r.reason"] : ["r.kpi", "r.value", "r.status", "r.reason"];
  table.innerHTML = `<thead><tr>${head.map(() => "<th></th>").join("")}</tr></thead><tbody></tbody>`;
  table.querySelectorAll("th").forEach((th, i) => { th.textContent = t(lang.get(), head[i]); });
  const tbody = table.querySelector("tbody");
  for (const r of out.rows) {
    const tr = document.createElement("tr");
    tr.dataset.status = r.status;
    if (r.kpi) tr.dataset.kpi = r.kpi;
    const cells = upload ? [r.row, kpiName(r.kpi), r.area, formatValue(r.value)] : [kpiName(r.kpi), formatValue(r.value)];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c ?? "";
      tr.append(td);
    }
    const status = document.createElement("td");
    status.className = "status";
    status.textContent = t(lang.get(), `st.${r.status}`);
    const reason = document.createElement("td");
    reason.className = "reason";
    reason.textContent = r.reason || "";
    tr.append(status, reason);
    tbody.append(tr);
  }
  box.append(summary, table);
}

$("area").addEventListener("change", () => loadLatest().catch((err) => { $("form-msg").textContent = explain(err, lang.get()); }));

$("month-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const msg = $("form-msg");
  const button = ev.target.querySelector("button[type=submit]");
  const area = $("area").value;
  const ts = monthStart($("month").value);
  const items = [];
  for (const input of $("fields").querySelectorAll("input")) {
    if (input.value.trim() === "") continue;
    const item = { kpi: input.dataset.kpi, area, ts, value: Number(input.value) };
    const last = latest.get(item.kpi);
    // the same month reported again with another figure: a correction (the next revision)
    if (last && Date.parse(last.ts) === Date.parse(ts) && last.value !== item.value) item.rev = (last.revision || 0) + 1;
    items.push(item);
  }
  if (!items.length) {
    msg.textContent = t(lang.get(), "r.nothing");
    return;
  }
  button.disabled = true;
  msg.textContent = t(lang.get(), "r.sending");
  try {
    const out = await api("/api/v1/agency/readings", { token: session.token, method: "POST", body: items, timeoutMs: 60000 });
    const rows = out.results.length ? out.results.map((r) => ({ ...r, value: r.index != null && items[r.index] ? items[r.index].value : null }))
      : items.map((it) => ({ kpi: it.kpi, value: it.value, status: "pending", reason: out.detail }));
    lastForm = { rows };
    renderResults($("form-results"), lastForm, false);
    msg.textContent = "";
    for (const input of $("fields").querySelectorAll("input")) input.value = "";
    await loadLatest();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { dropSession(PAGE); showLogin(t(lang.get(), "err.session_expired")); }
    msg.textContent = explain(err, lang.get());
  } finally {
    button.disabled = false;
  }
});

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const msg = $("upload-msg");
  const file = $("file").files[0];
  if (!file) return;
  const button = ev.target.querySelector("button[type=submit]");
  button.disabled = true;
  msg.textContent = t(lang.get(), "r.sending");
  try {
    const res = await fetch(`/api/v1/agency/uploads?filename=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file, cache: "no-store",
      headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/octet-stream", Accept: "application/json" },
    });
    const data = await res.json().catch(() => ({}));
    if (res.status === 422 || res.status === 413) {
      const d = data.detail;
      lastUpload = { errors: Array.isArray(d) ? d.map((e) => e.msg) : [String(d)] };
    } else if (!res.ok) {
      throw new ApiError(res.status, data.detail);
    } else {
      lastUpload = { rows: data.results, skipped: (data.skipped_rows || []).length };
    }
    renderResults($("upload-results"), lastUpload, true);
    msg.textContent = "";
    await loadLatest();
  } catch (err) {
    msg.textContent = explain(err, lang.get());
  } finally {
    button.disabled = false;
  }
});

async function download(kind) {
  const res = await fetch(`/api/v1/agency/template.${kind}?period=${encodeURIComponent($("month").value || previousMonth())}`,
    { headers: { Authorization: `Bearer ${session.token}` }, cache: "no-store" });
  if (!res.ok) {
    $("upload-msg").textContent = explain(new ApiError(res.status, null), lang.get());
    return;
  }
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = `ioc-${me.agency}-template.${kind}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
$("template-xlsx").addEventListener("click", () => download("xlsx"));
$("template-csv").addEventListener("click", () => download("csv"));

bindLoginForm(form, { page: PAGE, roles: ["agency"], lang: () => lang.get(), onSession: start });
$("logout").addEventListener("click", () => {
  dropSession(PAGE);
  session = null;
  hooks.ready = false;
  showLogin("");
});
const existing = loadSession(PAGE);
if (existing) start(existing);
else showLogin("");
