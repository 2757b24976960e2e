// REST calls to the API (same origin) and the logged-in session of the console and tablets.
// The JWT lives in sessionStorage: it survives a reload of the tab, not the tab's closing.

import { t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

/** fetch() with the bearer token; JSON in and out; ApiError on a non-2xx answer. */
export async function api(path, { token, method = "GET", body, form, timeoutMs = 10000, blob = false } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (form) {
    payload = new URLSearchParams(form);
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, signal: ctl.signal, cache: "no-store" });
  } catch (exc) {
    throw new ApiError(0, String(exc && exc.message ? exc.message : exc));
  } finally {
    clearTimeout(timer);
  }
  if (blob && res.ok) return res.blob(); // a picture
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data && data.detail !== undefined ? data.detail : data);
    err.retryAfter = Number(res.headers.get("Retry-After")) || null;
    throw err;
  }
  return data;
}

/** The message a person should read for a failed call. */
export function explain(err, lang) {
  if (!(err instanceof ApiError)) return String(err);
  if (err.status === 0) return t(lang, "err.network");
  if (err.status === 401) return t(lang, "err.bad_token");
  if (err.status === 403) return t(lang, "err.forbidden");
  // 422 answers carry a list of {loc, msg, type}; the others a sentence (ioc/serve/api/errors.py)
  const detail = typeof err.detail === "string" ? err.detail
    : Array.isArray(err.detail) ? err.detail.map((e) => (e && e.msg) || "").filter(Boolean).join("; ") : "";
  return detail ? `${t(lang, "err.server")} (${err.status}): ${detail}` : `${t(lang, "err.server")} (${err.status})`;
}

/**
 * Where the hub listens, from GET /api/v1/wall/hub: its `url` when a proxy publishes one,
 * else its `port` and `path` on the host this page came from.
 */
export async function hubAddress(token) {
  const info = await api("/api/v1/wall/hub", { token });
  if (info && info.enabled === false) throw new ApiError(503, "the wall hub is off");
  if (info && info.url) return info.url;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const port = (info && info.port) || 8081;
  const path = (info && info.path) || "/ws";
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  return `${scheme}//${host}:${port}${path}`;
}

const KEY = "ioc.session";

export function loadSession(page) {
  try {
    const s = JSON.parse(sessionStorage.getItem(`${KEY}.${page}`) || "null");
    if (s && s.token && (!s.expires || s.expires > Date.now() / 1000)) return s;
  } catch { /* a damaged entry is no session */ }
  return null;
}

export function saveSession(page, s) {
  sessionStorage.setItem(`${KEY}.${page}`, JSON.stringify(s));
}

export function dropSession(page) {
  sessionStorage.removeItem(`${KEY}.${page}`);
}

/** POST /api/v1/auth/token (OAuth2 password form). Returns the session or throws a message. */
export async function login(username, password, allowedRoles, lang) {
  let out;
  try {
    out = await api("/api/v1/auth/token", { method: "POST", form: { username, password } });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) throw new Error(t(lang, "err.wrong_password"));
    if (err instanceof ApiError && err.status === 429) throw new Error(t(lang, "err.throttled", { s: err.retryAfter || 60 }));
    throw new Error(explain(err, lang));
  }
  if (allowedRoles && !allowedRoles.includes(out.role)) throw new Error(`${t(lang, "err.forbidden")} (${out.role})`);
  return { token: out.access_token, role: out.role, username, expires: Date.now() / 1000 + (out.expires_in || 0) };
}

/**
 * Wires a <form> with #username, #password and an .error element to login(); calls
 * onSession(session) when it succeeds.
 */
export function bindLoginForm(form, { page, roles, lang, onSession }) {
  const errorEl = form.querySelector(".error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    errorEl.textContent = "";
    try {
      const s = await login(form.username.value.trim(), form.password.value, roles, lang());
      saveSession(page, s);
      form.password.value = "";
      onSession(s);
    } catch (err) {
      errorEl.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
}
