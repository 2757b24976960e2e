// What the console and the tablet share around the tiles: the language, the login overlay,
// the "reconnecting" banner, and a hub connection that survives network loss.

import { bindLoginForm, dropSession, hubAddress, loadSession } from "./api.js";
import { HubClient } from "./hub.js";
import { t } from "./i18n.js";

/** The page's language, Vietnamese unless the person chose English on this device. */
export function languageState(onChange) {
  let lang = localStorage.getItem("ioc.lang") === "en" ? "en" : "vi";
  const state = {
    get: () => lang,
    set(next) {
      lang = next === "en" ? "en" : "vi";
      localStorage.setItem("ioc.lang", lang);
      document.documentElement.lang = lang;
      translate(document, lang);
      onChange(lang);
    },
  };
  document.documentElement.lang = lang;
  translate(document, lang);
  return state;
}

/** Elements with data-i18n="key" get t(key); data-i18n-placeholder for inputs. */
export function translate(root, lang) {
  for (const e of root.querySelectorAll("[data-i18n]")) e.textContent = t(lang, e.dataset.i18n);
  for (const e of root.querySelectorAll("[data-i18n-placeholder]")) e.placeholder = t(lang, e.dataset.i18nPlaceholder);
}

const LOGIN_FORM = `
  <h1 data-i18n="login.title"></h1>
  <p class="lead"></p>
  <label><span data-i18n="login.user"></span>
    <input name="username" autocomplete="username" autocapitalize="none" required></label>
  <label><span data-i18n="login.password"></span>
    <input name="password" type="password" autocomplete="current-password" required></label>
  <button class="primary" type="submit" data-i18n="login.submit"></button>
  <div class="error" role="alert"></div>`;

/** The login form inside <section id="login" data-lead="...">, in the page's language. */
export function loginForm(overlay, lang) {
  const form = document.createElement("form");
  form.autocomplete = "on";
  form.innerHTML = LOGIN_FORM;
  form.querySelector(".lead").textContent = overlay.dataset.lead || "";
  translate(form, lang);
  overlay.replaceChildren(form);
  return form;
}

/**
 * Runs a page that needs a person's login: shows the login overlay until there is a session,
 * then connects to the hub with `role`. Tiles already on the page stay when the session ends.
 * handlers: the hub's `on` handlers (welcome, layout, tile, ...); returns {hub(), session()}.
 * video: whether to ask the hub for live video (false: pictures only).
 */
export function runLoggedIn({ page, role, roles, lang, handlers, onSession, video = true }) {
  const overlay = document.getElementById("login");
  const form = loginForm(overlay, lang.get());
  const banner = document.getElementById("banner");
  let hub = null;
  let session = null;

  function showLogin(message) {
    overlay.hidden = false;
    form.querySelector(".error").textContent = message || "";
    form.username.focus();
  }

  function setBanner(state) {
    document.body.dataset.hub = state;
    const key = state === "offline" ? "conn.offline" : state === "reconnecting" ? "conn.reconnecting" : null;
    banner.hidden = !key;
    banner.classList.toggle("failed", state === "failed");
    if (key) banner.textContent = t(lang.get(), key);
  }

  function connect(s) {
    session = s;
    overlay.hidden = true;
    if (hub) hub.stop();
    hub = new HubClient({
      url: () => hubAddress(s.token),
      hello: { token: s.token, role, video },
      on: {
        ...handlers,
        state(state, detail) {
          setBanner(state);
          if (handlers.state) handlers.state(state, detail);
        },
        fatal(code) {
          dropSession(page);
          showLogin(t(lang.get(), code === 4401 ? "err.session_expired" : code === 4403 ? "err.forbidden" : "err.bad_request"));
        },
      },
    });
    window.__ioc.hub = hub;
    hub.start();
    if (onSession) onSession(s);
  }

  bindLoginForm(form, { page, roles, lang: () => lang.get(), onSession: connect });
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", () => {
      dropSession(page);
      if (hub) hub.stop();
      showLogin("");
    });
  }
  const existing = loadSession(page);
  if (existing) queueMicrotask(() => connect(existing)); // after the caller has its handle
  else showLogin("");
  return { hub: () => hub, session: () => session };
}
