// Event mode (/event, partners): the crowd state per zone (GET /api/v1/crowd/state, every
// 10 s and after every alert), zones drawn on a Leaflet map coloured by level of service with
// the letter written on each zone, the zones and counters table with lighting status, the live
// alert feed (Server-Sent Events from GET /alerts/stream) with acknowledgement
// (POST /alerts/{id}/ack), and the forecast of the next hours (GET /crowd/forecast).
// The event, the forecast target, horizon and model live in the URL (?event=&target=&hours=
// &model=), so a view can be shared.
import {
  initPage, api, ApiError, t, h, formatNumber, formatDate, getLang, announce, session,
} from "/static/js/core.js";
import { boundaryMap, errorText, leaflet, tOr } from "/static/js/pages-util.js";

const NS = "event";
const REFRESH_MS = 10_000;
// an alert event triggers a state refresh, but a burst of alerts only one
const ALERT_REFRESH_DELAY_MS = 500;
const RECONNECT_MS = 2_000;  // the stream's own `retry:` value
const RECONNECT_GRACE_MS = 5_000;
const ALERT_LIMIT = 100;
const LETTERS = ["A", "B", "C", "D", "E", "F"];
// ColorBrewer RdBu (6 classes), blue = free to red = breakdown: safe for the common forms of
// colour blindness, and the letter is always written beside the colour
const LOS_COLOURS = { A: "#2166ac", B: "#67a9cf", C: "#d1e5f0", D: "#fddbc7",
                             E: "#ef8a62", F: "#b2182b" };
const UNKNOWN_COLOUR = "#bdbdbd";
const COUNTER_ROLES = new Set(["in_counter", "out_counter", "area_count", "footfall",
                               "beacon_devices"]);
const HOURS = [1, 2, 3, 4, 5, 6];
const MODELS = ["profile", "seasonal_naive"];
const ALERT_FILTERS = ["active", "open", "all"];
const SERIES = { mean: "#1f5fa8", band: "rgba(31, 95, 168, 0.18)", baseline: "#c2410c" };

const $ = (id) => document.getElementById(id);

const page = {
  config: null,
  events: [],
  zones: new Map(),      // key -> zone of GET /crowd/zones (geometry, datastreams)
  state: null,           // the last GET /crowd/state answer
  alerts: new Map(),     // id -> alert
  map: null,
  zoneLayers: new Map(), // key -> Leaflet polygon layer
  fitted: false,
  refreshTimer: null,
  alertRefresh: null,
  stream: null,
  reconnectTimer: null,
  lastEventId: null,
  chart: null,
};

// ---- small formatting helpers ------------------------------------------------------------

const timeZone = () => page.config?.timezone || undefined;
const whenText = (iso) => formatDate(iso, { time: true, timeZone: timeZone() });
const roleLabel = (role) => tOr(`${NS}.roles.${role}`, role);
const severityLabel = (severity) => tOr(`${NS}.severity.${severity}`, severity);
const statusLabel = (status) => tOr(`${NS}.status.${status}`, status);
const losLabel = (letter) => (letter ? t(`${NS}.los.${letter}`) : t(`${NS}.los.unknown`));

function decimals(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return formatNumber(value, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function clockTime(date) {
  return new Intl.DateTimeFormat(getLang(), { timeStyle: "medium", timeZone: timeZone() })
    .format(date);
}

/** The text colour that stays readable on a LoS colour (black on the light ones). */
function textOn(letter) {
  return letter === "A" || letter === "F" ? "#ffffff" : "#000000";
}

function losBadge(letter) {
  const badge = h("span", { class: `los-badge los-${letter || "unknown"}`,
                            title: losLabel(letter) },
    letter || "?", h("span", { class: "visually-hidden" }, ` ${losLabel(letter)}`));
  badge.style.background = letter ? LOS_COLOURS[letter] : UNKNOWN_COLOUR;
  badge.style.color = letter ? textOn(letter) : "#000000";
  return badge;
}

function showMessage(text) {
  const message = $("event-message");
  message.textContent = text;
  message.hidden = !text;
}

// ---- URL state -------------------------------------------------------------------------

function readUrl() {
  const params = new URLSearchParams(window.location.search);
  const hours = Number(params.get("hours"));
  const model = params.get("model");
  return {
    event: /^\d+$/.test(params.get("event") || "") ? params.get("event") : "",
    target: /^(zone:[\w.:-]{1,100}|ds:\d+)$/.test(params.get("target") || "")
      ? params.get("target") : "",
    hours: HOURS.includes(hours) ? hours : 3,
    model: MODELS.includes(model) ? model : MODELS[0],
  };
}

function writeUrl() {
  const params = new URLSearchParams(window.location.search);
  const values = {
    event: $("event-select").value, target: $("event-forecast-target").value,
    hours: $("event-forecast-hours").value === "3" ? "" : $("event-forecast-hours").value,
    model: $("event-forecast-model").value === MODELS[0] ? "" : $("event-forecast-model").value,
  };
  for (const [name, value] of Object.entries(values)) {
    if (value) params.set(name, value);
    else params.delete(name);
  }
  const query = params.toString();
  window.history.replaceState(null, "", `${window.location.pathname}${query ? `?${query}` : ""}`);
}

// ---- events and zones ------------------------------------------------------------------

function listOf(answer, key) {
  if (Array.isArray(answer)) return answer;
  return answer && Array.isArray(answer[key]) ? answer[key] : [];
}

function fillEvents(selected) {
  const select = $("event-select");
  select.replaceChildren(h("option", { value: "" }, t(`${NS}.all_zones`)),
    ...page.events.map((event) => h("option", { value: String(event.id) },
      t(`${NS}.event_option`, { name: event.name, from: whenText(event.starts_at),
                                to: whenText(event.ends_at) }))));
  select.value = page.events.some((e) => String(e.id) === selected) ? selected : "";
}

function fillForecastTargets(selected) {
  const select = $("event-forecast-target");
  const zones = [...page.zones.values()].sort((a, b) => String(a.name).localeCompare(b.name));
  const zoneGroup = h("optgroup", { label: t(`${NS}.forecast.zones`) },
    zones.map((zone) => h("option", { value: `zone:${zone.key}` }, zone.name || zone.key)));
  const counters = [];
  for (const zone of zones) {
    for (const stream of zone.datastreams || []) {
      if (COUNTER_ROLES.has(stream.role)) {
        counters.push(h("option", { value: `ds:${stream.id}` },
          t(`${NS}.forecast.counter_option`, { name: stream.name, role: roleLabel(stream.role),
                                               zone: zone.name || zone.key })));
      }
    }
  }
  const groups = [zoneGroup];
  if (counters.length) groups.push(h("optgroup", { label: t(`${NS}.forecast.counters`) }, counters));
  select.replaceChildren(...groups);
  const values = [...select.options].map((o) => o.value);
  // by default a zone with an hourly footfall counter: the forecasts are built from hourly
  // history, which live in/out counters of a new event do not have yet
  const hourly = zones.find((zone) => (zone.datastreams || []).some((s) => s.role === "footfall"));
  const fallback = hourly ? `zone:${hourly.key}` : (values[0] || "");
  select.value = values.includes(selected) ? selected : fallback;
  select.disabled = !values.length;
}

// ---- the map ---------------------------------------------------------------------------

function zoneStyle(letter) {
  return { color: "#1b1f24", weight: 2, opacity: 0.9,
           fillColor: letter ? LOS_COLOURS[letter] : UNKNOWN_COLOUR, fillOpacity: 0.7 };
}

function renderLegend() {
  const legend = $("event-legend");
  legend.replaceChildren(...LETTERS.map((letter) => h("li", {}, losBadge(letter), " ",
    losLabel(letter))), h("li", {}, losBadge(null), " ", losLabel(null)));
}

async function setUpMap() {
  const L = leaflet();
  const container = $("event-map");
  page.map = await boundaryMap(container, page.config,
    (kind) => api(`/dashboard/areas/${encodeURIComponent(kind)}`), { keyboard: true });
  if (!page.map || !L) {
    container.hidden = true;
    return;
  }
  if (!page.config?.tile_url) container.classList.add("no-tiles");
}

function drawZones(readings) {
  const L = leaflet();
  if (!page.map || !L) return;
  const shown = new Set();
  const bounds = [];
  for (const reading of readings) {
    const zone = page.zones.get(reading.key);
    if (!zone || !zone.geometry) continue;
    shown.add(reading.key);
    const letter = reading.los || null;
    let layer = page.zoneLayers.get(reading.key);
    if (!layer) {
      layer = L.geoJSON({ type: "Feature", geometry: zone.geometry,
                          properties: { key: reading.key } },
      { style: () => zoneStyle(letter) });
      layer.on("click", () => chooseForecastTarget(`zone:${reading.key}`));
      layer.addTo(page.map);
      page.zoneLayers.set(reading.key, layer);
    }
    layer.setStyle(zoneStyle(letter));
    layer.eachLayer((part) => {
      part.feature.properties.los = letter;
      // the letter on the zone itself: colour is never the only cue (the zone's name is in
      // the table; on the map it would cover the neighbouring zones)
      const text = letter || "?";
      const tooltip = part.getTooltip();
      if (!tooltip) {
        part.bindTooltip(text, { permanent: true, direction: "center", className: "los-label" });
      } else if (tooltip.getContent() !== text) {
        part.setTooltipContent(text);
      }
    });
    bounds.push(layer.getBounds());
  }
  for (const [key, layer] of page.zoneLayers) {
    if (!shown.has(key)) {
      layer.eachLayer((part) => part.unbindTooltip());
      layer.remove();
      page.zoneLayers.delete(key);
    }
  }
  if (!page.fitted && bounds.length) {
    const all = bounds.reduce((acc, b) => acc.extend(b), L.latLngBounds(bounds[0].getSouthWest(),
      bounds[0].getNorthEast()));
    page.map.fitBounds(all, { padding: [32, 32], maxZoom: 19 });
    page.fitted = true;
  }
}

// ---- the zones table -------------------------------------------------------------------

function lightsCell(lights) {
  const counts = lights || {};
  const total = ["on", "dimmed", "off", "failed"].reduce((s, k) => s + (counts[k] || 0), 0);
  if (!total) return h("td", { class: "muted" }, t(`${NS}.zones.no_lights`));
  const parts = ["on", "dimmed", "off", "failed"].filter((k) => counts[k]).map((k) => {
    const text = t(`${NS}.lights.${k}`, { count: counts[k] });
    return k === "failed"
      ? h("span", { class: "badge badge-critical light-failed" }, text)
      : h("span", { class: `light-${k}` }, text);
  });
  const cell = h("td", { class: counts.failed ? "lights lights-failed" : "lights" });
  parts.forEach((part, i) => {
    if (i) cell.append(" · ");
    cell.append(part);
  });
  return cell;
}

function minutesText(minutes) {
  if (minutes === null || minutes === undefined) return t(`${NS}.zones.no_trend`);
  if (minutes <= 0) return t(`${NS}.zones.now`);
  return t(`${NS}.zones.minutes`, { minutes: Math.round(minutes) });
}

function occupancyText(reading) {
  const occupancy = reading.occupancy === null || reading.occupancy === undefined
    ? "–" : formatNumber(Math.round(reading.occupancy));
  if (!reading.capacity) return occupancy;
  const share = typeof reading.occupancy_share === "number"
    ? ` (${formatNumber(reading.occupancy_share, { style: "percent" })})` : "";
  return `${occupancy} / ${formatNumber(Math.round(reading.capacity))}${share}`;
}

function renderZones(readings) {
  const body = $("event-zones-body");
  body.replaceChildren(...readings.map((reading) => {
    const sources = (reading.sources || []).map(roleLabel).join(", ") || t(`${NS}.zones.no_sources`);
    const warnings = (reading.warnings || []).map((w) => h("span", { class: "zone-warning" }, w));
    const minutes = reading.minutes_to_threshold;
    const urgent = typeof minutes === "number" && minutes <= 15;
    return h("tr", {
      class: [reading.lights?.failed ? "has-failed-light" : "", urgent ? "urgent" : ""]
        .filter(Boolean).join(" ") || null,
      dataset: { zone: reading.key, los: reading.los || "" },
    },
    h("th", { scope: "row" }, reading.name || reading.key),
    h("td", { class: "los-cell" }, losBadge(reading.los || null)),
    h("td", { class: "number" }, occupancyText(reading)),
    h("td", { class: "number" }, decimals(reading.density, 2)),
    h("td", { class: "number" }, decimals(reading.flow, 1)),
    h("td", { class: urgent ? "number trend-urgent" : "number" }, minutesText(minutes)),
    lightsCell(reading.lights),
    h("td", {}, sources, warnings.length ? h("br") : null,
      warnings.flatMap((w, i) => (i ? [" ", w] : [w]))),
    h("td", {}, reading.last_observation_at ? whenText(reading.last_observation_at)
      : t(`${NS}.zones.never`)));
  }));
  $("event-zones-empty").hidden = readings.length > 0;
}

function renderStatus(state) {
  const updated = $("event-updated");
  updated.textContent = t(`${NS}.updated`, { at: whenText(state.at), now: clockTime(new Date()) });
  updated.dataset.at = state.at || "";
  const stale = $("event-stale");
  if (state.stale) {
    const newest = state.zones.map((z) => z.last_observation_at).filter(Boolean).sort().pop()
      || state.at;
    stale.textContent = t(`${NS}.stale`, { at: whenText(newest) });
    stale.hidden = false;
  } else {
    stale.hidden = true;
  }
  document.body.dataset.stale = state.stale ? "true" : "false";
}

let stateRequest = 0;

/** Read and show the crowd state. Answers that arrive after a newer request's are dropped,
 * so a slow answer for the previous event can never overwrite the current one. */
async function refreshState() {
  const request = ++stateRequest;
  try {
    const state = await api("/crowd/state", { query: { event: $("event-select").value } });
    if (request !== stateRequest) return;
    page.state = { ...state, zones: listOf(state, "zones") };
    renderStatus(page.state);
    renderZones(page.state.zones);
    drawZones(page.state.zones);
    showMessage("");
  } catch (error) {
    if (request === stateRequest) showMessage(errorText(error, NS, { withDetail: true }));
  }
}

function scheduleRefresh() {
  window.clearInterval(page.refreshTimer);
  page.refreshTimer = window.setInterval(() => {
    refreshState();
  }, REFRESH_MS);
}

// ---- alerts ----------------------------------------------------------------------------

function alertVisible(alert) {
  const filter = $("event-alert-filter").value;
  if (filter === "all") return true;
  if (filter === "open") return alert.status === "open";
  return alert.status === "open" || alert.status === "acknowledged";
}

function zoneName(key) {
  return page.zones.get(key)?.name || key;
}

/** Who acknowledged: "you" for the signed-in user (the API names principals "user:<id>"). */
function acknowledgedBy(principal) {
  if (!principal) return "–";
  const me = session.user;
  return me && principal === `user:${me.id}` ? t(`${NS}.alerts.you`) : principal;
}

function alertItem(alert) {
  const severity = alert.severity || "info";
  const status = alert.status || "open";
  const facts = [];
  if (alert.zone) facts.push(t(`${NS}.alerts.zone`, { zone: zoneName(alert.zone) }));
  if (alert.value !== null && alert.value !== undefined && alert.threshold !== null
      && alert.threshold !== undefined) {
    facts.push(t(`${NS}.alerts.value`, { value: decimals(alert.value, 2),
                                         threshold: decimals(alert.threshold, 2) }));
  }
  facts.push(t(`${NS}.alerts.raised`, { at: whenText(alert.raised_at) }));
  const item = h("li", {
    class: `alert-item alert-item-${severity} alert-item-status-${status}`,
    dataset: { alertId: String(alert.id), status, severity },
  },
  h("p", { class: "alert-head" },
    h("span", { class: `badge severity-${severity}` }, severityLabel(severity)), " ",
    h("span", { class: `badge alert-status status-${status}` }, statusLabel(status)), " ",
    h("strong", {}, alert.rule_name || alert.kind || "")),
  h("p", { class: "alert-message" }, alert.message || ""),
  h("p", { class: "alert-facts hint" }, facts.join(" · ")));
  if (status === "acknowledged" && alert.acknowledged_at) {
    item.append(h("p", { class: "alert-facts hint" }, t(`${NS}.alerts.acknowledged`, {
      by: acknowledgedBy(alert.acknowledged_by), at: whenText(alert.acknowledged_at) })));
  }
  if (status === "cleared" && alert.cleared_at) {
    item.append(h("p", { class: "alert-facts hint" },
      t(`${NS}.alerts.cleared`, { at: whenText(alert.cleared_at) })));
  }
  if (status === "open" && session.has("sensors:write")) {
    const button = h("button", { type: "button", class: "button-secondary alert-ack",
                                 "aria-describedby": `alert-message-${alert.id}` },
      t(`${NS}.alerts.ack`));
    item.querySelector(".alert-message").id = `alert-message-${alert.id}`;
    button.addEventListener("click", () => acknowledge(alert, button));
    item.append(button);
  }
  return item;
}

function renderAlerts() {
  const feed = $("event-alert-feed");
  const focused = document.activeElement?.closest?.("[data-alert-id]")?.dataset.alertId;
  const shown = [...page.alerts.values()].filter(alertVisible)
    .sort((a, b) => String(b.raised_at).localeCompare(String(a.raised_at)) || b.id - a.id);
  feed.replaceChildren(...shown.map(alertItem));
  $("event-alerts-empty").hidden = shown.length > 0;
  if (focused) {
    // a re-render must not drop a keyboard user's place in the feed
    const again = feed.querySelector(`[data-alert-id="${CSS.escape(focused)}"]`);
    const target = again?.querySelector("button") || again;
    if (target) {
      if (!target.hasAttribute("tabindex") && target.tagName !== "BUTTON") {
        target.setAttribute("tabindex", "-1");
      }
      target.focus();
    }
  }
}

async function acknowledge(alert, button) {
  button.disabled = true;
  try {
    const updated = await api(`/alerts/${encodeURIComponent(alert.id)}/ack`, { method: "POST",
                                                                              body: {} });
    upsertAlert(updated && updated.id !== undefined ? updated : { ...alert, status: "acknowledged" });
    renderAlerts();
    announce(t(`${NS}.alerts.ack_done`, { message: alert.message || alert.rule_name || "" }));
    // focus stays in the feed: on the acknowledged alert itself
    const item = $("event-alert-feed").querySelector(`[data-alert-id="${CSS.escape(String(alert.id))}"]`);
    if (item) {
      item.setAttribute("tabindex", "-1");
      item.focus();
    }
  } catch (error) {
    button.disabled = false;
    showMessage(errorText(error, NS, { withDetail: true }));
  }
}

function upsertAlert(alert) {
  if (!alert || alert.id === undefined || alert.id === null) return;
  const known = page.alerts.get(alert.id);
  // an older update arriving late must not undo an acknowledgement
  if (known && known.status === "acknowledged" && alert.status === "open") {
    page.alerts.set(alert.id, { ...alert, status: known.status,
                                acknowledged_at: known.acknowledged_at,
                                acknowledged_by: known.acknowledged_by });
    return;
  }
  page.alerts.set(alert.id, alert);
}

async function loadAlerts() {
  try {
    const answer = await api("/alerts", { query: { status: "all", limit: ALERT_LIMIT } });
    page.alerts.clear();
    for (const alert of listOf(answer, "alerts")) upsertAlert(alert);
    renderAlerts();
  } catch (error) {
    showMessage(errorText(error, NS, { withDetail: true }));
  }
}

function streamStatus(status) {
  const badge = $("event-stream-status");
  badge.dataset.stream = status;
  badge.textContent = t(`${NS}.stream.${status}`);
}

function accessToken() {
  // core.js keeps the tokens for the tab in sessionStorage; EventSource cannot send an
  // Authorization header, so the stream takes the access token as a query parameter
  try {
    const tokens = JSON.parse(window.sessionStorage.getItem("urbansec.tokens") || "null");
    return tokens && tokens.access_token ? tokens.access_token : null;
  } catch {
    return null;
  }
}

function onAlertEvent(message, raised) {
  let alert;
  try {
    alert = JSON.parse(message.data);
  } catch {
    return; // not an alert: nothing to show
  }
  const isNew = raised && !page.alerts.has(alert.id);
  upsertAlert(alert);
  renderAlerts();
  if (isNew) {
    const text = t(`${NS}.alerts.new`, { severity: severityLabel(alert.severity),
                                         message: alert.message || alert.rule_name || "" });
    if (alert.severity === "critical") {
      const live = $("event-critical-live");
      live.textContent = "";
      window.setTimeout(() => { live.textContent = text; }, 50);
    } else {
      announce(text);
    }
  }
  // the state behind an alert has just changed: show it without waiting for the next tick
  window.clearTimeout(page.alertRefresh);
  page.alertRefresh = window.setTimeout(() => refreshState(), ALERT_REFRESH_DELAY_MS);
}

function connectStream() {
  window.clearTimeout(page.reconnectTimer);
  if (page.stream) page.stream.close();
  const query = new URLSearchParams();
  const token = accessToken();
  if (token) query.set("access_token", token);
  // a new EventSource sends no Last-Event-ID: the stream resumes from this parameter instead
  if (page.lastEventId) query.set("last_event_id", page.lastEventId);
  const stream = new EventSource(`/api/v1/alerts/stream?${query}`);
  page.stream = stream;
  streamStatus("connecting");
  stream.addEventListener("open", () => {
    window.clearTimeout(page.reconnectTimer);
    streamStatus("live");
  });
  const remember = (message) => {
    if (/^\d+$/.test(message.lastEventId || "")) page.lastEventId = message.lastEventId;
  };
  stream.addEventListener("alert", (message) => {
    remember(message);
    onAlertEvent(message, true);
  });
  stream.addEventListener("update", (message) => {
    remember(message);
    onAlertEvent(message, false);
  });
  stream.addEventListener("error", () => {
    if (stream.readyState === EventSource.CLOSED) {
      // the server refused the stream (an expired token?) or is gone: refresh the session
      // (api() renews the tokens on a 401) and open a new stream with the new token
      streamStatus("reconnecting");
      page.reconnectTimer = window.setTimeout(async () => {
        await api("/me").catch(() => null);
        // nothing received yet: no sequence number to resume from, so re-read the list
        if (!page.lastEventId) await loadAlerts();
        connectStream();
      }, RECONNECT_MS);
    } else {
      // EventSource reconnects by itself and the server resumes from Last-Event-ID; a server
      // without a live alert source ends each stream and is asked again after `retry`
      // (2 s): only a reconnection that takes longer is worth showing
      window.clearTimeout(page.reconnectTimer);
      page.reconnectTimer = window.setTimeout(() => {
        if (stream.readyState !== EventSource.OPEN) streamStatus("reconnecting");
      }, RECONNECT_GRACE_MS);
    }
  });
}

// ---- forecast --------------------------------------------------------------------------

function chooseForecastTarget(value) {
  const select = $("event-forecast-target");
  if (![...select.options].some((o) => o.value === value)) return;
  select.value = value;
  writeUrl();
  loadForecast();
}

function hourLabel(iso) {
  return new Intl.DateTimeFormat(getLang(), { hour: "2-digit", minute: "2-digit",
                                              timeZone: timeZone() }).format(new Date(iso));
}

function renderForecast(forecast) {
  const root = $("event-forecast-chart");
  const Chart = window.Chart;
  const times = forecast.times || [];
  const labels = times.map(hourLabel);
  const baseline = forecast.baseline?.mean || null;
  const coverage = formatNumber(forecast.coverage ?? 0.8, { style: "percent" });
  const names = {
    mean: t(`${NS}.forecast.mean`, { model: tOr(`${NS}.forecast.models.${forecast.model}`,
                                                 forecast.model || "") }),
    band: t(`${NS}.forecast.band`, { coverage }),
    baseline: t(`${NS}.forecast.baseline`),
  };
  const canvas = h("canvas", { role: "img", "aria-label": t(`${NS}.forecast.chart_label`, {
    hours: formatNumber(times.length), model: names.mean }) });
  const rows = times.map((time, i) => h("tr", {},
    h("th", { scope: "row" }, labels[i]),
    h("td", { class: "number" }, decimals(forecast.mean?.[i], 0)),
    h("td", { class: "number" }, `${decimals(forecast.lower?.[i], 0)} – ${decimals(forecast.upper?.[i], 0)}`),
    baseline ? h("td", { class: "number" }, decimals(baseline[i], 0)) : null));
  const table = h("div", { class: "table-wrap forecast-table", tabindex: "0", role: "region",
                           "aria-label": t(`${NS}.forecast.table`) },
    h("table", { id: "event-forecast-table" },
      h("caption", {}, t(`${NS}.forecast.caption`, { issued: whenText(forecast.issued_at) })),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t(`${NS}.forecast.time`)),
        h("th", { scope: "col", class: "number" }, names.mean),
        h("th", { scope: "col", class: "number" }, names.band),
        baseline ? h("th", { scope: "col", class: "number" }, names.baseline) : null)),
      h("tbody", {}, rows)));
  const details = h("details", { class: "forecast-details" },
    h("summary", {}, t(`${NS}.forecast.show_table`)), table);
  root.replaceChildren(h("div", { class: "event-chart-box" }, canvas), details);
  if (page.chart) page.chart.destroy();
  page.chart = null;
  if (!Chart) return;
  const datasets = [
    { label: names.band, data: forecast.lower || [], borderColor: "transparent",
      backgroundColor: SERIES.band, pointRadius: 0, fill: false, order: 3 },
    { label: names.band, data: forecast.upper || [], borderColor: "transparent",
      backgroundColor: SERIES.band, pointRadius: 0, fill: "-1", order: 3 },
    { label: names.mean, data: forecast.mean || [], borderColor: SERIES.mean,
      backgroundColor: SERIES.mean, borderWidth: 2, tension: 0.2, order: 1 },
  ];
  if (baseline) {
    datasets.push({ label: names.baseline, data: baseline, borderColor: SERIES.baseline,
                    backgroundColor: SERIES.baseline, borderDash: [6, 4], borderWidth: 2,
                    pointStyle: "rectRot", tension: 0.2, order: 2 });
  }
  page.chart = new Chart(canvas, {
    type: "line",
    data: { labels, datasets },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        // the band is drawn by two datasets: the legend names it once
        legend: { position: "bottom", labels: { filter: (item) => item.datasetIndex !== 0 } },
      },
      scales: {
        x: { title: { display: true, text: t(`${NS}.forecast.time`) } },
        y: { beginAtZero: true, title: { display: true, text: t(`${NS}.forecast.persons`) },
             ticks: { callback: (v) => formatNumber(v) } },
      },
    },
  });
}

// the hours of history GET /crowd/forecast needs (services/crowd.py): a week plus the
// horizon and a day for the profile model, a week and an hour for the seasonal naive one
function historyNeeded(model, hours) {
  return model === "profile" ? 168 + hours + 24 : 169;
}

/** The datastreams a forecast of `target` reads: the counter itself, or the zone's entry
 * counters, else its footfall counters (as services/crowd.py chooses). */
function forecastStreams(target) {
  const [kind, id] = [target.slice(0, target.indexOf(":")), target.slice(target.indexOf(":") + 1)];
  if (kind === "ds") return [Number(id)];
  const streams = page.zones.get(id)?.datastreams || [];
  const entries = streams.filter((s) => s.role === "in_counter");
  return (entries.length ? entries : streams.filter((s) => s.role === "footfall")).map((s) => s.id);
}

async function sensorThings(path) {
  // the SensorThings API lives beside /api/v1, where core.js's api() does not reach
  const attempt = () => fetch(`/sensorthings/v1.1${path}`, {
    headers: { Accept: "application/json",
               ...(accessToken() ? { Authorization: `Bearer ${accessToken()}` } : {}) } });
  let response = await attempt();
  if (response.status === 401) {
    await api("/me").catch(() => null); // renews the access token
    response = await attempt();
  }
  if (!response.ok) throw new ApiError(response.status, "http_error", response.statusText, {});
  return response.json();
}

/** Hours between the first and the newest stored observation of the streams (0: none). */
async function historyHours(ids) {
  const ends = await Promise.all(ids.flatMap((id) => ["asc", "desc"].map((order) => sensorThings(
    `/Datastreams(${id})/Observations?$top=1&$select=phenomenonTime&$orderby=phenomenonTime%20${order}`)
    .then((answer) => answer.value?.[0]?.phenomenonTime || null))));
  const times = ends.filter(Boolean).map((text) => Date.parse(String(text).split("/")[0]));
  if (times.length < 2) return 0;
  return (Math.max(...times) - Math.min(...times)) / 3_600_000;
}

let forecastRequest = 0;

async function loadForecast() {
  const target = $("event-forecast-target").value;
  const note = $("event-forecast-note");
  const root = $("event-forecast-chart");
  if (!target) {
    note.textContent = t(`${NS}.forecast.no_target`);
    root.replaceChildren();
    return;
  }
  const request = ++forecastRequest;
  const [kind, id] = [target.slice(0, target.indexOf(":")), target.slice(target.indexOf(":") + 1)];
  const query = { hours: $("event-forecast-hours").value, model: $("event-forecast-model").value };
  if (kind === "zone") query.zone = id;
  else query.datastream = id;
  root.setAttribute("aria-busy", "true");
  note.textContent = t("common.state.loading");
  try {
    // a counter without enough history has no forecast: said here, without asking for one
    // (the API would answer 422, and the browser would log it as an error)
    const streams = forecastStreams(target);
    const needed = historyNeeded(query.model, Number(query.hours));
    const stored = streams.length ? await historyHours(streams) : 0;
    if (request !== forecastRequest) return;
    if (stored < needed) {
      if (page.chart) page.chart.destroy();
      page.chart = null;
      root.replaceChildren();
      note.textContent = t(`${NS}.forecast.short_history`, { needed, stored: Math.floor(stored) });
      document.body.dataset.forecast = "none";
      return;
    }
    const forecast = await api("/crowd/forecast", { query });
    if (request !== forecastRequest) return;
    note.textContent = t(`${NS}.forecast.note`, { issued: whenText(forecast.issued_at) });
    renderForecast(forecast);
    document.body.dataset.forecast = "ready";
  } catch (error) {
    if (request !== forecastRequest) return;
    if (page.chart) page.chart.destroy();
    page.chart = null;
    root.replaceChildren();
    // a zone without hourly history has no forecast: said plainly, not as a failure
    note.textContent = error instanceof ApiError && [404, 409, 422].includes(error.status)
      ? t(`${NS}.forecast.unavailable`, { reason: error.message })
      : errorText(error, NS, { withDetail: true });
    document.body.dataset.forecast = "none";
  } finally {
    if (request === forecastRequest) root.removeAttribute("aria-busy");
  }
}

// ---- start -----------------------------------------------------------------------------

function fillSelect(select, values, label, selected) {
  select.replaceChildren(...values.map((v) => h("option", { value: String(v) }, label(v))));
  select.value = String(selected);
}

async function start() {
  await initPage({ namespaces: [NS], titleKey: `${NS}.title`, requirePermission: "sensors:read" });
  const wanted = readUrl();
  renderLegend();
  fillSelect($("event-alert-filter"), ALERT_FILTERS, (f) => t(`${NS}.alerts.filter.${f}`), "active");
  fillSelect($("event-forecast-hours"), HOURS, (n) => t(`${NS}.forecast.hours_n`, { count: n }),
    wanted.hours);
  fillSelect($("event-forecast-model"), MODELS, (m) => t(`${NS}.forecast.models.${m}`),
    wanted.model);
  streamStatus("connecting");

  const [config, events, zones] = await Promise.all([
    api("/dashboard/config").catch((error) => {
      console.warn("urbansec: /dashboard/config failed; the map has no boundaries", error);
      return null;
    }),
    api("/crowd/events").catch((error) => {
      showMessage(errorText(error, NS, { withDetail: true }));
      return [];
    }),
    api("/crowd/zones").catch((error) => {
      showMessage(errorText(error, NS, { withDetail: true }));
      return [];
    }),
  ]);
  page.config = config;
  page.events = listOf(events, "events");
  for (const zone of listOf(zones, "zones")) page.zones.set(zone.key, zone);
  fillEvents(wanted.event);
  fillForecastTargets(wanted.target);
  writeUrl();

  $("event-select").addEventListener("change", async () => {
    writeUrl();
    page.fitted = false;
    await refreshState();
    announce(t(`${NS}.shown`, { count: page.state?.zones.length ?? 0 }));
  });
  $("event-refresh").addEventListener("click", async () => {
    await refreshState();
    announce(t(`${NS}.refreshed`));
  });
  $("event-alert-filter").addEventListener("change", renderAlerts);
  for (const id of ["event-forecast-target", "event-forecast-hours", "event-forecast-model"]) {
    $(id).addEventListener("change", () => {
      writeUrl();
      loadForecast();
    });
  }

  await setUpMap();
  await Promise.all([refreshState(), loadAlerts()]);
  connectStream();
  scheduleRefresh();
  document.body.dataset.state = "ready";
  await loadForecast();
}

start();
