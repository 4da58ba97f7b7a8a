// Small DOM and form helpers shared by the citizen and partner pages (report, track, login,
// moderation, risks, imports, audit). Everything is built with textContent, never innerHTML,
// because most of what these pages show was typed by someone else (reports, comments).
import { t, api, ApiError } from "/static/js/core.js";

/**
 * Create an element. attrs: {class, text, dataset: {...}, hidden, and any attribute};
 * children: nodes or strings (strings become text nodes); null/false children are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "hidden") node.hidden = Boolean(value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** Add `id` to the control's aria-describedby (once), so the error is read with the control. */
function describeBy(control, id) {
  const ids = (control.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
  if (!ids.includes(id)) ids.push(id);
  control.setAttribute("aria-describedby", ids.join(" "));
}

/** Show `message` in `errorNode` and mark `control` invalid, linked with aria-describedby. */
export function showFieldError(control, errorNode, message) {
  errorNode.textContent = message;
  errorNode.hidden = false;
  describeBy(control, errorNode.id);
  control.setAttribute("aria-invalid", "true");
}

export function clearFieldError(control, errorNode) {
  errorNode.textContent = "";
  errorNode.hidden = true;
  control.removeAttribute("aria-invalid");
}

/** Move focus to a heading or result region (made programmatically focusable). */
export function focusOn(node) {
  if (!node) return;
  if (!node.hasAttribute("tabindex")) node.setAttribute("tabindex", "-1");
  node.focus({ preventScroll: false });
}

/**
 * The field an API error is about: `details.field` (service errors) or the last part of the
 * first problem's `loc` (request validation, e.g. ["body", "description"]).
 */
export function errorField(err) {
  if (!(err instanceof ApiError) || !err.details) return null;
  if (typeof err.details.field === "string") return err.details.field;
  const problems = Array.isArray(err.details.problems) ? err.details.problems : [];
  for (const problem of problems) {
    const loc = Array.isArray(problem.loc) ? problem.loc.filter((p) => typeof p === "string") : [];
    if (loc.length > 1) return loc[loc.length - 1];
  }
  return null;
}

/**
 * A sentence in the current language for an error: known HTTP statuses get their own text
 * (`NS.errors.<status>`), anything else the generic one; `withDetail` appends the API's own
 * message (English, precise) for staff pages.
 */
export function errorText(err, ns, { withDetail = false } = {}) {
  // core.js reports a failed fetch (offline, connection lost) as status 0, code "network"
  if (!(err instanceof ApiError) || err.status === 0) return t(`${ns}.errors.network`);
  const known = [400, 401, 403, 404, 409, 413, 422, 429];
  const text = known.includes(err.status) ? t(`${ns}.errors.${err.status}`) : t(`${ns}.errors.other`);
  if (withDetail && err.message) return `${text} (${err.message})`;
  return text;
}

/** A fresh idempotency key: a UUID where available, else 32 random hex digits. */
export function newClientKey() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Run `work(item)` for every item with at most `limit` running at once; results in order. */
export async function mapLimited(items, limit, work) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = { ok: true, value: await work(items[index]) };
      } catch (error) {
        results[index] = { ok: false, error };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** A table header cell with scope (col by default). */
export function th(text, scope = "col") {
  return el("th", { scope, text });
}

/** Leaflet, loaded by a classic <script> before the page module; null when it failed to load. */
export function leaflet() {
  return typeof window.L === "object" && window.L ? window.L : null;
}

/**
 * A small Leaflet map in `container`: boundaries of the default area kind as the base (and the
 * configured tile layer, if any), fitted to the data's bounds. Resolves to the map, or null
 * when Leaflet or the config is unavailable (the page then works without a map).
 */
export async function boundaryMap(container, config, loadAreas, options = {}) {
  const L = leaflet();
  if (!L || !container) return null;
  const map = L.map(container, { scrollWheelZoom: false, ...options });
  if (config && config.tile_url) {
    L.tileLayer(config.tile_url, { attribution: config.tile_attribution || "" }).addTo(map);
  }
  const bounds = config && Array.isArray(config.bounds) ? config.bounds : null;
  if (bounds) map.fitBounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]]);
  else map.setView([0, 0], 2);
  if (config && config.default_area_kind) {
    try {
      const areas = await loadAreas(config.default_area_kind);
      const layer = L.geoJSON(areas, {
        style: { color: "#3b4a5a", weight: 1.5, fillColor: "#7f93a8", fillOpacity: 0.08 },
        interactive: false,
      }).addTo(map);
      if (!bounds && layer.getBounds().isValid()) map.fitBounds(layer.getBounds());
    } catch (error) {
      // the boundaries are orientation only: the map still works (and says where you click)
      console.warn("area boundaries unavailable", error);
    }
  }
  return map;
}

/**
 * An object URL for a binary resource of the API that needs the signed-in user's token (a
 * report's photo): api() parses text and JSON, so an image is fetched here. The token is
 * core.js's sessionStorage entry; a 401 lets api("/me") refresh it once, then it is retried.
 */
export async function authorisedObjectUrl(path) {
  const attempt = () => {
    let tokens = null;
    try {
      tokens = JSON.parse(window.sessionStorage.getItem("urbansec.tokens") || "null");
    } catch {
      tokens = null;
    }
    const headers = tokens && tokens.access_token ? { Authorization: `Bearer ${tokens.access_token}` } : {};
    return fetch(`/api/v1${path}`, { headers });
  };
  let response = await attempt();
  if (response.status === 401) {
    await api("/me").catch(() => null);
    response = await attempt();
  }
  if (!response.ok) {
    throw new ApiError(response.status, "http_error", `${response.status} ${response.statusText}`.trim(), {});
  }
  return URL.createObjectURL(await response.blob());
}

/** The catalogue's text for `key`, or `fallback` when the catalogue has none. */
export function tOr(key, fallback, vars = {}) {
  const text = t(key, vars);
  return text && text !== key ? text : fallback;
}
