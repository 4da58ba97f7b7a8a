// The citizen report form (/report): anonymous by default, mobile first.
// Categories come from Open311 (GET /open311/v2/services.json); the report goes to
// POST /api/v1/reports (JSON, or multipart when a photo is attached) with a client_key so a
// double tap or a retry after a network error never files the report twice.
import { initPage, api, ApiError, t, announce } from "/static/js/core.js";
import {
  boundaryMap, clearFieldError, errorField, errorText, focusOn, leaflet, newClientKey,
  showFieldError,
} from "/static/js/pages-util.js";

const NS = "citizen";
const MAX_PHOTO_BYTES = 5 * 1024 * 1024;  // settings.max_photo_bytes (the server checks too)

const $ = (id) => document.getElementById(id);
const form = $("report-form");
const category = $("report-category");
const description = $("report-description");
const address = $("report-address");
const photo = $("report-photo");
const email = $("report-email");
const submit = $("report-submit");
const formError = $("report-form-error");
const locationStatus = $("report-location-status");
const clearLocation = $("report-clear-location");

// which control and error line belong to an API field name
const FIELDS = {
  service_code: [category, $("report-category-error")],
  description: [description, $("report-description-error")],
  lat: [address, $("report-location-error")],
  lon: [address, $("report-location-error")],
  address: [address, $("report-location-error")],
  photo: [photo, $("report-photo-error")],
  contact_email: [email, $("report-email-error")],
};

const state = {
  services: [],
  point: null,        // {lat, lon} when a place is marked
  marker: null,
  map: null,
  clientKey: newClientKey(),  // one per report: kept across retries, renewed after success
  sending: false,
};

function clearErrors() {
  formError.hidden = true;
  formError.textContent = "";
  for (const [control, node] of Object.values(FIELDS)) clearFieldError(control, node);
}

/** Once every marked field is corrected, the summary above the form goes too. */
function hideSummaryWhenFixed() {
  if (!form.querySelector("[aria-invalid=true]")) formError.hidden = true;
}

function fieldError(name, message) {
  const [control, node] = FIELDS[name];
  showFieldError(control, node, message);
  return control;
}

function formatPoint(point) {
  // exactly the numbers that will be sent (6 decimals, about 10 cm), so what the reporter
  // reads is what the city receives
  return t(`${NS}.report.place_marked`, { lat: point.lat.toFixed(6), lon: point.lon.toFixed(6) });
}

function setPoint(lat, lon, { pan = false } = {}) {
  state.point = { lat: Number(lat.toFixed(6)), lon: Number(lon.toFixed(6)) };
  const L = leaflet();
  if (state.map && L) {
    if (state.marker) state.marker.setLatLng([lat, lon]);
    else {
      state.marker = L.marker([lat, lon], { keyboard: false, alt: t(`${NS}.report.marker_alt`) })
        .addTo(state.map);
    }
    if (pan) state.map.setView([lat, lon], Math.max(state.map.getZoom(), 15));
  }
  locationStatus.textContent = formatPoint(state.point);
  clearLocation.hidden = false;
  clearFieldError(address, $("report-location-error"));
  hideSummaryWhenFixed();
}

function removePoint() {
  state.point = null;
  if (state.marker) {
    state.marker.remove();
    state.marker = null;
  }
  locationStatus.textContent = t(`${NS}.report.no_place`);
  clearLocation.hidden = true;
  $("report-use-location").focus();
}

/** The catalogue's text for `key`, or `fallback` (the server's English) when it has none. */
function translated(key, fallback) {
  const text = t(key);
  return text && text !== key ? text : fallback;
}

function showCategoryHelp() {
  const chosen = state.services.find((s) => s.service_code === category.value);
  $("report-category-help").textContent = chosen ? chosen.description : "";
}

async function loadCategories() {
  const body = await api("/open311/v2/services.json");
  if (!Array.isArray(body)) throw new Error("services.json did not answer a list");
  state.services = body;
  const groups = new Map();
  for (const service of body) {
    const group = service.group || "";
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push(service);
  }
  for (const [group, services] of groups) {
    const parent = group ? document.createElement("optgroup") : category;
    if (group) {
      parent.label = translated(`${NS}.groups.${group.replace(/\s+/g, "_")}`, group);
      category.append(parent);
    }
    for (const service of services) {
      const option = document.createElement("option");
      option.value = service.service_code;
      // the catalogue names are English; the translated name is in citizen.json by code
      option.textContent = translated(`${NS}.categories.${service.service_code}.name`,
        service.service_name);
      parent.append(option);
    }
  }
  // the translated description replaces the English one where the catalogue has it
  for (const service of state.services) {
    service.description = translated(`${NS}.categories.${service.service_code}.description`,
      service.description);
  }
}

async function setUpMap(config) {
  const container = $("report-map");
  const map = await boundaryMap(container, config, (kind) => api(`/dashboard/areas/${encodeURIComponent(kind)}`));
  if (!map) {
    container.hidden = true;
    $("report-map-keys").hidden = true;
    return;
  }
  state.map = map;
  map.on("click", (event) => setPoint(event.latlng.lat, event.latlng.lng));
  // keyboard users: the map container is focusable (Leaflet pans with the arrows); Enter or
  // Space marks the centre, so nobody needs a pointer to place the mark
  container.addEventListener("keydown", (event) => {
    if (event.target !== container) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      const centre = map.getCenter();
      setPoint(centre.lat, centre.lng);
    }
  });
}

function useMyLocation() {
  const button = $("report-use-location");
  if (!("geolocation" in navigator)) {
    fieldError("lat", t(`${NS}.report.location_unavailable`));
    return;
  }
  button.disabled = true;
  locationStatus.textContent = t(`${NS}.report.locating`);
  navigator.geolocation.getCurrentPosition((position) => {
    button.disabled = false;
    setPoint(position.coords.latitude, position.coords.longitude, { pan: true });
  }, (error) => {
    button.disabled = false;
    locationStatus.textContent = state.point ? formatPoint(state.point) : t(`${NS}.report.no_place`);
    const key = error && error.code === 1 ? "location_denied" : "location_unavailable";
    fieldError("lat", t(`${NS}.report.${key}`));
  }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
}

/** Check in the browser what the server would refuse anyway; returns the first bad control. */
function validate() {
  let first = null;
  const note = (control) => { first = first || control; };
  if (!category.value) note(fieldError("service_code", t(`${NS}.report.need_category`)));
  if (!description.value.trim()) note(fieldError("description", t(`${NS}.report.need_description`)));
  if (!state.point && !address.value.trim()) note(fieldError("address", t(`${NS}.report.need_place`)));
  const file = photo.files && photo.files[0];
  if (file && file.size > MAX_PHOTO_BYTES) note(fieldError("photo", t(`${NS}.report.photo_too_large`)));
  if (file && !["image/jpeg", "image/png", "image/webp"].includes(file.type)) {
    note(fieldError("photo", t(`${NS}.report.photo_type`)));
  }
  if (email.value.trim() && !email.checkValidity()) note(fieldError("contact_email", t(`${NS}.report.bad_email`)));
  return first;
}

function submission() {
  const fields = {
    service_code: category.value,
    description: description.value.trim(),
    client_key: state.clientKey,
  };
  if (state.point) {
    fields.lat = state.point.lat;
    fields.lon = state.point.lon;
  }
  if (address.value.trim()) fields.address = address.value.trim();
  if (email.value.trim()) fields.contact_email = email.value.trim();
  const file = photo.files && photo.files[0];
  if (!file) return { body: fields };
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) data.append(name, String(value));
  data.append("photo", file, file.name);
  return { form: data };
}

function showResult(receipt) {
  const link = $("report-tracking-link");
  const href = `/track#${receipt.tracking_token}`;
  link.href = href;
  link.textContent = new URL(href, window.location.origin).href;
  $("report-result-status").textContent = t(`common.report_status.${receipt.status}`);
  $("report-result-explain").textContent = t(`${NS}.status_explain.${receipt.status}`);
  $("report-copy-status").textContent = "";
  form.hidden = true;
  $("report-result").hidden = false;
  focusOn($("report-result-title"));
  announce(t(`${NS}.result.title`));
}

async function send(event) {
  event.preventDefault();
  if (state.sending) return;  // a second tap while the first is on its way does nothing
  clearErrors();
  const bad = validate();
  if (bad) {
    formError.textContent = t(`${NS}.report.fix_errors`);
    formError.hidden = false;
    bad.focus();
    return;
  }
  state.sending = true;
  submit.disabled = true;
  submit.setAttribute("aria-busy", "true");
  const label = submit.textContent;
  submit.textContent = t(`${NS}.report.sending`);
  try {
    const receipt = await api("/reports", { method: "POST", ...submission() });
    state.clientKey = newClientKey();
    showResult(receipt);
  } catch (error) {
    // the same client_key is kept: sending again returns this report if it was stored
    const field = errorField(error);
    let message = errorText(error, NS);
    if (error instanceof ApiError && error.status === 413) {
      message = t(`${NS}.report.photo_too_large`);
      fieldError("photo", message).focus();
    } else if (field && FIELDS[field]) {
      const control = fieldError(field, error.status === 400 || error.status === 422
        ? t(`${NS}.report.invalid_${field}`) : message);
      control.focus();
    } else if (error instanceof ApiError && error.status === 400 && /photo/i.test(error.message)) {
      fieldError("photo", t(`${NS}.report.photo_type`)).focus();
    }
    formError.textContent = message;
    formError.hidden = false;
    if (!(field && FIELDS[field])) focusOn(formError);
  } finally {
    state.sending = false;
    submit.disabled = false;
    submit.removeAttribute("aria-busy");
    submit.textContent = label;
  }
}

async function copyLink() {
  const link = $("report-tracking-link").href;
  try {
    await navigator.clipboard.writeText(link);
    $("report-copy-status").textContent = t(`${NS}.result.copied`);
  } catch {
    // no clipboard permission: select the link text so it can be copied by hand
    const range = document.createRange();
    range.selectNodeContents($("report-tracking-link"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    $("report-copy-status").textContent = t(`${NS}.result.copy_by_hand`);
  }
}

function another() {
  form.reset();
  removePoint();
  clearErrors();
  showCategoryHelp();
  $("report-result").hidden = true;
  form.hidden = false;
  // the tracking token must not linger in the page once the reporter moves on
  $("report-tracking-link").href = "/track";
  $("report-tracking-link").textContent = "";
  focusOn($("report-heading"));
}

function privacyTexts(config) {
  const cell = config && Number.isFinite(config.public_cell_m) ? Math.round(config.public_cell_m) : null;
  $("report-privacy-public").textContent = cell
    ? t(`${NS}.privacy.public_cell`, { metres: cell })
    : t(`${NS}.privacy.public`);
  // the retention period is shown only when the server tells it; never a guessed number
  const days = config && Number.isInteger(config.contact_retention_days) ? config.contact_retention_days : null;
  const retention = $("report-privacy-retention");
  if (days) {
    retention.removeAttribute("data-i18n");
    retention.textContent = t(`${NS}.privacy.retention_days`, { days });
  }
}

async function main() {
  await initPage({ namespaces: [NS], titleKey: `${NS}.report.title` });
  form.addEventListener("submit", send);
  category.addEventListener("change", () => {
    showCategoryHelp();
    clearFieldError(category, $("report-category-error"));
  });
  description.addEventListener("input", () => clearFieldError(description, $("report-description-error")));
  address.addEventListener("input", () => clearFieldError(address, $("report-location-error")));
  photo.addEventListener("change", () => clearFieldError(photo, $("report-photo-error")));
  email.addEventListener("input", () => clearFieldError(email, $("report-email-error")));
  for (const control of [category, description, address, photo, email]) {
    control.addEventListener(control === photo || control === category ? "change" : "input", hideSummaryWhenFixed);
  }
  $("report-use-location").addEventListener("click", useMyLocation);
  clearLocation.addEventListener("click", removePoint);
  $("report-copy-link").addEventListener("click", copyLink);
  $("report-another").addEventListener("click", another);

  let config = null;
  try {
    config = await api("/dashboard/config");
  } catch (error) {
    console.warn("dashboard config unavailable", error);
  }
  privacyTexts(config);
  try {
    await loadCategories();
  } catch (error) {
    console.warn("report categories unavailable", error);
    formError.textContent = t(`${NS}.report.categories_failed`);
    formError.hidden = false;
  }
  await setUpMap(config);
  document.body.dataset.state = "ready";
}

main();
