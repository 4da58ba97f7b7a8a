// The reporter's tracking page (/track#TOKEN). The private token lives only in the URL
// fragment (never sent to the server in a URL, so never in a log); the page reads it and asks
// GET /api/v1/reports/track/{token}; "erase" is DELETE on the same path, after a confirmation.
import { initPage, api, ApiError, t, formatDate, announce } from "/static/js/core.js";
import { clear, clearFieldError, el, errorText, focusOn, showFieldError } from "/static/js/pages-util.js";

const NS = "citizen";
const TOKEN = /^[A-Za-z0-9_-]{16,200}$/;

const $ = (id) => document.getElementById(id);
const tokenInput = $("track-token");
const tokenError = $("track-token-error");
const result = $("track-result");
const message = $("track-message");

let current = null;  // {token, report}

/** The token from a pasted link (…/track#TOKEN), a bare code, or null. */
function tokenFrom(text) {
  let value = (text || "").trim();
  const hash = value.lastIndexOf("#");
  if (hash >= 0) value = value.slice(hash + 1);
  return TOKEN.test(value) ? value : null;
}

function showMessage(text, kind) {
  message.textContent = text;
  message.className = `alert alert-${kind}`;
  message.hidden = false;
  focusOn(message);
}

function statusBlock(report) {
  const box = $("track-status");
  clear(box);
  box.dataset.status = report.status;
  box.append(
    el("p", { class: "status-line" },
      el("span", { text: t(`${NS}.result.status`) }), " ",
      el("strong", { class: `badge badge-${report.status}`, text: t(`common.report_status.${report.status}`) })),
    el("p", { text: t(`${NS}.status_explain.${report.status}`) }),
  );
  if (report.merged_into) {
    box.append(el("p", { text: t(`${NS}.track.merged_into`, { id: report.merged_into }) }));
  }
}

function detail(list, label, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", { text: label }), el("dd", { text: String(value) }));
}

function details(report) {
  const list = clear($("track-details"));
  detail(list, t(`${NS}.track.reference`), report.public_id);
  const name = t(`${NS}.categories.${report.service_code}.name`);
  detail(list, t(`${NS}.track.category`), name.startsWith(`${NS}.`) ? report.service_name : name);
  detail(list, t(`${NS}.track.description`), report.description || report.public_description);
  if (report.lat !== null && report.lat !== undefined && report.lon !== null && report.lon !== undefined) {
    detail(list, t(`${NS}.track.place`), `${Number(report.lat).toFixed(5)}, ${Number(report.lon).toFixed(5)}`);
  }
  detail(list, t(`${NS}.track.address`), report.address);
  detail(list, t(`${NS}.track.submitted`), report.submitted_at && formatDate(report.submitted_at, { time: true }));
  if (report.has_photo) detail(list, t(`${NS}.track.photo`), t(`${NS}.track.photo_yes`));
  detail(list, t(`${NS}.track.contact`), report.contact_email || (report.contact_erased_at ? null : t(`${NS}.track.anonymous`)));
}

function renderHistory(report) {
  // the API keeps when the report was sent, when its status last changed and when contact
  // details were erased: that is the whole history there is to show
  const list = clear($("track-history"));
  const entries = [];
  if (report.submitted_at) entries.push([report.submitted_at, t(`${NS}.track.event_received`)]);
  if (report.status !== "pending" && report.updated_at) {
    entries.push([report.updated_at, t(`${NS}.track.event_status`, { status: t(`common.report_status.${report.status}`) })]);
  }
  if (report.contact_erased_at && report.status !== "erased") {
    entries.push([report.contact_erased_at, t(`${NS}.track.event_contact_erased`)]);
  }
  entries.sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  for (const [at, text] of entries) {
    list.append(el("li", {},
      el("time", { datetime: at, text: formatDate(at, { time: true }) }), " – ", text));
  }
}

function render(report) {
  statusBlock(report);
  details(report);
  const answer = [report.status_notes, report.agency_responsible && t(`${NS}.track.agency`, { agency: report.agency_responsible })]
    .filter(Boolean).join(" ");
  $("track-answer").textContent = answer || t(`${NS}.track.no_answer`);
  renderHistory(report);
  $("track-erase-section").hidden = report.status === "erased";
  $("track-erase-confirm").hidden = true;
  $("track-erase").hidden = false;
  result.hidden = false;
}

async function load(token, { focus = true } = {}) {
  message.hidden = true;
  clearFieldError(tokenInput, tokenError);
  try {
    const report = await api(`/reports/track/${encodeURIComponent(token)}`);
    current = { token, report };
    render(report);
    if (focus) focusOn($("track-result-title"));
    announce(t(`common.report_status.${report.status}`));
  } catch (error) {
    current = null;
    result.hidden = true;
    const text = error instanceof ApiError && (error.status === 404 || error.status === 422)
      ? t(`${NS}.track.not_found`) : errorText(error, NS);
    showMessage(text, "error");
  }
}

function submitToken(event) {
  event.preventDefault();
  const token = tokenFrom(tokenInput.value);
  if (!token) {
    showFieldError(tokenInput, tokenError, t(`${NS}.track.bad_token`));
    tokenInput.focus();
    return;
  }
  // keep the token in the fragment (bookmarkable, never sent to the server in the URL)
  window.history.replaceState(null, "", `/track${window.location.search}#${token}`);
  tokenInput.value = "";
  load(token);
}

async function erase() {
  if (!current) return;
  const yes = $("track-erase-yes");
  yes.disabled = true;
  try {
    const report = await api(`/reports/track/${encodeURIComponent(current.token)}`, { method: "DELETE" });
    current.report = report;
    render(report);
    showMessage(t(`${NS}.track.erased`), "success");
  } catch (error) {
    showMessage(errorText(error, NS), "error");
  } finally {
    yes.disabled = false;
  }
}

async function main() {
  await initPage({ namespaces: [NS], titleKey: `${NS}.track.title` });
  $("track-form").addEventListener("submit", submitToken);
  tokenInput.addEventListener("input", () => clearFieldError(tokenInput, tokenError));
  $("track-erase").addEventListener("click", () => {
    $("track-erase-confirm").hidden = false;
    $("track-erase").hidden = true;
    focusOn($("track-erase-question"));
  });
  $("track-erase-cancel").addEventListener("click", () => {
    $("track-erase-confirm").hidden = true;
    $("track-erase").hidden = false;
    $("track-erase").focus();
  });
  $("track-erase-yes").addEventListener("click", erase);
  window.addEventListener("hashchange", () => {
    const token = tokenFrom(window.location.hash);
    if (token) load(token);
  });
  const token = tokenFrom(window.location.hash);
  if (window.location.hash.length > 1 && !token) {
    showFieldError(tokenInput, tokenError, t(`${NS}.track.bad_token`));
  }
  if (token) await load(token, { focus: false });
  document.body.dataset.state = "ready";
}

main();
