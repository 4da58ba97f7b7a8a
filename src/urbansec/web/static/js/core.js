// urbansec dashboard core: language and translations, the API client with sign-in and token
// refresh, the page header, number/date formatting and screen-reader announcements.
// Every page module starts with:
//   import { initPage, api, t } from "/static/js/core.js";
//   const { user, lang } = await initPage({ namespaces: ["dashboard"], titleKey: "dashboard.title" });

export const LANGUAGES = ["en", "el", "fi", "it"];
// each language named in itself, so a reader finds their own whatever the page's language
const LANGUAGE_NAMES = { en: "English", el: "Ελληνικά", fi: "Suomi", it: "Italiano" };
const DEFAULT_LANGUAGE = "en";
const LANG_STORAGE_KEY = "urbansec.lang";
// sessionStorage: the tokens die with the tab, and no other site can read them
const TOKEN_STORAGE_KEY = "urbansec.tokens";
const API_BASE = "/api/v1";

// --------------------------------------------------------------------------------------------
// language and translations
// --------------------------------------------------------------------------------------------

let currentLang = DEFAULT_LANGUAGE;
// lang -> namespace -> catalogue object
const catalogues = {};
const warnedKeys = new Set();

function supported(code) {
  if (!code) return null;
  const primary = String(code).toLowerCase().split(/[-_]/)[0];
  return LANGUAGES.includes(primary) ? primary : null;
}

function readStorage(storage, key) {
  try {
    return storage.getItem(key);
  } catch {
    return null; // storage disabled (privacy mode, sandboxed frame)
  }
}

function writeStorage(storage, key, value) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, value);
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}

/** The language to use: ?lang= in the URL, else the stored choice, else the browser's, else en. */
export function detectLanguage() {
  const fromUrl = supported(new URLSearchParams(window.location.search).get("lang"));
  if (fromUrl) {
    writeStorage(window.localStorage, LANG_STORAGE_KEY, fromUrl);
    return fromUrl;
  }
  const stored = supported(readStorage(window.localStorage, LANG_STORAGE_KEY));
  if (stored) return stored;
  for (const code of navigator.languages || [navigator.language]) {
    const match = supported(code);
    if (match) return match;
  }
  return DEFAULT_LANGUAGE;
}

/** The current language code (one of LANGUAGES). */
export function getLang() {
  return currentLang;
}

/** Switch language: remember it and reload the same URL (query and fragment kept). */
export function setLanguage(lang) {
  const code = supported(lang);
  if (!code) return;
  writeStorage(window.localStorage, LANG_STORAGE_KEY, code);
  const url = new URL(window.location.href);
  if (url.searchParams.has("lang") && url.searchParams.get("lang") !== code) {
    // an explicit ?lang= would win over the stored choice: change it too
    url.searchParams.set("lang", code);
    window.location.assign(url.toString());
  } else {
    window.location.reload();
  }
}

async function fetchCatalogue(lang, namespace) {
  const url = `/static/i18n/${lang}/${namespace}.json`;
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      console.warn(`urbansec: no catalogue ${url} (${response.status})`);
      return {};
    }
    return await response.json();
  } catch (error) {
    console.warn(`urbansec: catalogue ${url} could not be read`, error);
    return {};
  }
}

/** Load the catalogues of `namespaces` (plus English, the fallback) for `lang`. */
export async function loadCatalogues(namespaces, lang = currentLang) {
  const wanted = [];
  for (const code of new Set([lang, DEFAULT_LANGUAGE])) {
    catalogues[code] = catalogues[code] || {};
    for (const namespace of namespaces) {
      if (!(namespace in catalogues[code])) wanted.push([code, namespace]);
    }
  }
  const loaded = await Promise.all(wanted.map(([code, ns]) => fetchCatalogue(code, ns)));
  wanted.forEach(([code, namespace], i) => {
    catalogues[code][namespace] = loaded[i];
  });
}

function lookup(lang, key) {
  const [namespace, ...path] = key.split(".");
  let node = catalogues[lang] && catalogues[lang][namespace];
  for (const part of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = node[part];
  }
  return node;
}

/**
 * Translate `key` ("namespace.path.to.string"), filling `{name}` placeholders from `vars`.
 * A value that is an object of plural forms ({"one": "...", "other": "..."}) is chosen by
 * `vars.count`. Falls back to English, then to the key itself (with a console warning).
 */
export function t(key, vars = {}) {
  let value = lookup(currentLang, key);
  if (value === undefined) value = lookup(DEFAULT_LANGUAGE, key);
  if (value !== null && typeof value === "object" && "other" in value) {
    const form = typeof vars.count === "number"
      ? new Intl.PluralRules(currentLang).select(vars.count) : "other";
    value = value[form] ?? value.other;
  }
  if (typeof value !== "string") {
    if (!warnedKeys.has(key)) {
      warnedKeys.add(key);
      console.warn(`urbansec: missing translation ${key}`);
    }
    return key;
  }
  return value.replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in vars) || vars[name] === null || vars[name] === undefined) return whole;
    const v = vars[name];
    return typeof v === "number" ? formatNumber(v) : String(v);
  });
}

/**
 * Translate the elements under `root`: [data-i18n="key"] gets its text,
 * [data-i18n-attr="placeholder:key;aria-label:key2"] its attributes.
 */
export function applyI18n(root = document) {
  const select = (selector) => {
    const found = [...root.querySelectorAll(selector)];
    if (root instanceof Element && root.matches(selector)) found.unshift(root);
    return found;
  };
  for (const element of select("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of select("[data-i18n-attr]")) {
    for (const pair of element.dataset.i18nAttr.split(";")) {
      const [attribute, key] = pair.split(":").map((s) => s.trim());
      if (attribute && key) element.setAttribute(attribute, t(key));
    }
  }
}

// --------------------------------------------------------------------------------------------
// formatting
// --------------------------------------------------------------------------------------------

/** A number in the current language; null/undefined (e.g. a suppressed count) as "–". */
export function formatNumber(n, options = {}) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return new Intl.NumberFormat(currentLang, options).format(n);
}

/**
 * A date ("YYYY-MM-DD", read as that calendar day) or an ISO instant in the current language.
 * `time: true` adds the time of day; `timeZone` (e.g. the city's) sets the zone shown.
 */
export function formatDate(isoString, { time = false, timeZone = undefined } = {}) {
  if (!isoString) return "–";
  const bareDay = /^(\d{4})-(\d{2})-(\d{2})$/.exec(isoString);
  const date = bareDay
    ? new Date(Number(bareDay[1]), Number(bareDay[2]) - 1, Number(bareDay[3]))
    : new Date(isoString);
  if (Number.isNaN(date.getTime())) return String(isoString);
  const options = { dateStyle: "medium" };
  if (time && !bareDay) options.timeStyle = "short";
  if (timeZone && !bareDay) options.timeZone = timeZone;
  return new Intl.DateTimeFormat(currentLang, options).format(date);
}

// --------------------------------------------------------------------------------------------
// API client and session
// --------------------------------------------------------------------------------------------

/** A non-2xx answer of the API: its status and the JSON error body's code/message/details. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function loadTokens() {
  const raw = readStorage(window.sessionStorage, TOKEN_STORAGE_KEY);
  if (!raw) return null;
  try {
    const tokens = JSON.parse(raw);
    return tokens && tokens.access_token ? tokens : null;
  } catch {
    return null;
  }
}

function storeTokens(tokens) {
  writeStorage(window.sessionStorage, TOKEN_STORAGE_KEY,
    tokens ? JSON.stringify({ access_token: tokens.access_token,
                              refresh_token: tokens.refresh_token }) : null);
}

let tokens = loadTokens();
// one refresh at a time: parallel requests that all got a 401 wait for the same refresh
let refreshing = null;

function apiUrl(path, query) {
  // "/open311/v2/..." and "/api/..." are used as given; anything else is under /api/v1
  const base = path.startsWith("/open311/") || path.startsWith("/api/") ? "" : API_BASE;
  const url = new URL(base + path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === null || value === undefined || value === "") continue;
    url.searchParams.set(name, Array.isArray(value) ? value.join(",") : String(value));
  }
  return url.pathname + url.search;
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page): described by the status alone
  }
  const error = body && body.error;
  if (error && typeof error === "object") {
    return new ApiError(response.status, error.code || "http_error",
      error.message || response.statusText, error.details || {});
  }
  return new ApiError(response.status, "http_error",
    `${response.status} ${response.statusText}`.trim(), {});
}

async function send(path, { method = "GET", query = {}, body = undefined, form = undefined,
                            signal = undefined } = {}) {
  const headers = { Accept: "application/json" };
  let payload;
  if (form !== undefined) {
    payload = form; // the browser sets the multipart boundary
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  if (tokens) headers.Authorization = `Bearer ${tokens.access_token}`;
  try {
    return await fetch(apiUrl(path, query), { method, headers, body: payload, signal });
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(0, "network", t("common.errors.network"), {});
  }
}

async function refreshTokens() {
  if (!tokens || !tokens.refresh_token) return false;
  if (!refreshing) {
    const refreshToken = tokens.refresh_token;
    refreshing = (async () => {
      try {
        const response = await fetch(`${API_BASE}/auth/refresh`, {
          method: "POST",
          headers: { Accept: "application/json", "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: refreshToken }),
        });
        if (!response.ok) return false;
        tokens = await response.json();
        storeTokens(tokens);
        return true;
      } catch {
        return false;
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

function signedOut() {
  tokens = null;
  storeTokens(null);
  currentUser = null;
}

/**
 * Call the API. `path` is relative to /api/v1 (e.g. "/dashboard/view"); `query` values that
 * are null, undefined or "" are left out (arrays are joined with commas); `body` is sent as
 * JSON, `form` (FormData) as multipart. Returns the parsed JSON (null for 204); throws
 * ApiError for a non-2xx answer. A 401 with a signed-in session refreshes the tokens once
 * and repeats the request.
 */
export async function api(path, options = {}) {
  let response = await send(path, options);
  if (response.status === 401 && tokens && !path.startsWith("/auth/")) {
    if (await refreshTokens()) {
      response = await send(path, options);
    }
    if (response.status === 401) signedOut();
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) return response.json();
  const text = await response.text();
  return text === "" ? null : text;
}

let currentUser = null;

export const session = {
  /** {id, email, name, role, organisation, permissions} of the signed-in user, or null. */
  get user() {
    return currentUser;
  },
  get signedIn() {
    return currentUser !== null;
  },
  /** Sign in; keeps the tokens for this tab and returns the user. Throws ApiError (401). */
  async login(email, password) {
    const answer = await api("/auth/token", { method: "POST", body: { email, password } });
    tokens = answer;
    storeTokens(tokens);
    await this.refreshUser();
    return currentUser;
  },
  /** Sign out: revoke the tokens on the server (best effort) and forget them here. */
  async logout() {
    if (tokens) {
      try {
        await api("/auth/logout", { method: "POST",
                                    body: { refresh_token: tokens.refresh_token || null } });
      } catch {
        // an expired session is signed out all the same
      }
    }
    signedOut();
  },
  /** Ask the server who we are (GET /me); null when not signed in or the session ended. */
  async refreshUser() {
    if (!tokens) {
      currentUser = null;
      return null;
    }
    try {
      const me = await api("/me");
      currentUser = me && me.kind === "user" ? me : null;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) signedOut();
      currentUser = null;
    }
    return currentUser;
  },
  /** True when signed in with one of `roles` (an array, or one role). */
  can(roles) {
    if (!currentUser) return false;
    const list = Array.isArray(roles) ? roles : [roles];
    return list.includes(currentUser.role);
  },
  /** True when the signed-in user holds `permission` (e.g. "reports:moderate"). */
  has(permission) {
    return Boolean(currentUser && (currentUser.permissions || []).includes(permission));
  },
};

// --------------------------------------------------------------------------------------------
// small DOM helpers
// --------------------------------------------------------------------------------------------

/**
 * Create an element: h("a", { href: "/", class: "x", dataset: { id: 3 } }, "text", child);
 * the attribute `text` sets the text content.
 * Text children become text nodes, so data from the API can never inject markup.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") Object.assign(element.dataset, value);
    else if (name === "text") element.textContent = value;
    else if (name === "class") element.className = value;
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

let liveRegion = null;

/** Say `text` to screen-reader users (polite live region), e.g. "map updated: 1,234 incidents". */
export function announce(text) {
  if (!liveRegion) {
    liveRegion = document.getElementById("live-region");
    if (!liveRegion) {
      liveRegion = h("div", { id: "live-region", class: "visually-hidden", role: "status",
                              "aria-live": "polite", "aria-atomic": "true" });
      document.body.append(liveRegion);
    }
  }
  // emptied first and filled on the next frame, so the same message twice is read twice
  liveRegion.textContent = "";
  window.setTimeout(() => {
    liveRegion.textContent = text;
  }, 50);
}

// --------------------------------------------------------------------------------------------
// header and page start
// --------------------------------------------------------------------------------------------

// nav links: shown to everyone, or to a signed-in user holding the permission the page needs
// (the permission table is services/access.py; GET /me lists the user's permissions)
const NAV = [
  { href: "/", key: "common.nav.map" },
  { href: "/report", key: "common.nav.report" },
  { href: "/track", key: "common.nav.track" },
  { href: "/moderation", key: "common.nav.moderation", permission: "reports:moderate" },
  { href: "/risks", key: "common.nav.risks", permission: "risks:read" },
  { href: "/event", key: "common.nav.event", permission: "sensors:read" },
  { href: "/nighttime", key: "common.nav.nighttime", permission: "sensors:read" },
  { href: "/imports", key: "common.nav.imports", permission: "imports:read" },
  { href: "/audit", key: "common.nav.audit", permission: "audit:read" },
];

function currentPath() {
  const path = window.location.pathname.replace(/\/+$/, "");
  return path === "" ? "/" : path;
}

/** /login?next=... for the current page (query kept; the fragment never, it may be a token). */
function loginUrl() {
  const next = window.location.pathname + window.location.search;
  return `/login?next=${encodeURIComponent(next)}`;
}

function renderHeader() {
  const header = document.getElementById("app-header");
  if (!header) return;
  const here = currentPath();
  const links = NAV.filter((item) => !item.permission || session.has(item.permission))
    .map((item) => h("li", {}, h("a", {
      href: item.href,
      "aria-current": item.href === here ? "page" : null,
    }, t(item.key))));

  const languageSelect = h("select", { id: "lang-select", name: "lang" },
    LANGUAGES.map((code) => h("option", { value: code, lang: code, selected: code === currentLang },
      LANGUAGE_NAMES[code])));
  languageSelect.addEventListener("change", () => setLanguage(languageSelect.value));

  const account = [];
  if (session.user) {
    account.push(h("span", { class: "header-user" },
      h("span", { class: "visually-hidden" }, t("common.account.signed_in_as")), " ",
      session.user.name || session.user.email,
      h("span", { class: "badge badge-role" }, t(`common.roles.${session.user.role}`))));
    const signOut = h("button", { type: "button", class: "button button-secondary",
                                  id: "sign-out" }, t("common.account.sign_out"));
    signOut.addEventListener("click", async () => {
      signOut.disabled = true;
      await session.logout();
      window.location.assign("/");
    });
    account.push(signOut);
  } else if (here !== "/login") {
    account.push(h("a", { class: "button button-secondary", href: loginUrl(), id: "sign-in" },
      t("common.account.sign_in")));
  }

  header.classList.add("app-header");
  header.replaceChildren(h("div", { class: "header-inner" },
    h("a", { class: "brand", href: "/" },
      h("img", { src: "/static/favicon.svg", alt: "", width: 28, height: 28 }),
      h("span", {}, t("common.app_name"))),
    h("nav", { class: "main-nav", "aria-label": t("common.nav.label") }, h("ul", {}, links)),
    h("div", { class: "header-tools" },
      h("label", { for: "lang-select", class: "visually-hidden" }, t("common.language")),
      languageSelect,
      ...account)));
}

/**
 * Start a page: language, catalogues (common + `namespaces`), who is signed in, the header,
 * translations of the document. With `requireRole` (array of roles) or `requirePermission`
 * a user without it is sent to /login?next=... (and this promise never resolves, as the page
 * is left). Resolves to { user, lang }.
 */
export async function initPage({ namespaces = [], titleKey = null, requireRole = null,
                                 requirePermission = null } = {}) {
  currentLang = detectLanguage();
  document.documentElement.lang = currentLang;
  await Promise.all([
    loadCatalogues(["common", ...namespaces.filter((ns) => ns !== "common")]),
    session.refreshUser(),
  ]);

  const allowed = (!requireRole || session.can(requireRole))
    && (!requirePermission || session.has(requirePermission));
  if (!allowed) {
    const reason = session.user ? "&reason=forbidden" : "";
    window.location.replace(loginUrl() + reason);
    return new Promise(() => {});
  }

  renderHeader();
  applyI18n(document);
  if (titleKey) document.title = `${t(titleKey)} · ${t("common.app_name")}`;
  const main = document.getElementById("main");
  if (main && !main.hasAttribute("tabindex")) main.setAttribute("tabindex", "-1");
  return { user: session.user, lang: currentLang };
}
