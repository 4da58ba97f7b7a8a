// The audit log (/audit, admins): GET /api/v1/audit pages through the entries, newest first,
// filtered by exact action; GET /api/v1/audit/verify recomputes the hash chain and says
// whether it is intact or where it breaks. Filters and page are kept in the URL.
import { initPage, api, t, formatDate, announce } from "/static/js/core.js";
import { clear, el, errorText, focusOn } from "/static/js/pages-util.js";

const NS = "partner";
// actions the services record (services/*.py): offered as suggestions, any text is accepted
const KNOWN_ACTIONS = ["apikey.create", "apikey.revoke", "audit.read", "auth.login", "auth.login_failed",
  "auth.logout", "auth.refresh", "import.failed", "import.incidents", "incidents.read", "organisation.create",
  "privacy.purge", "reports.approve", "reports.close", "reports.erase", "reports.list_restricted",
  "reports.merge", "reports.moderation_queue", "reports.read_photo", "reports.read_restricted",
  "reports.reject", "reports.submit", "risk.create", "risk.update", "user.create", "user.update"];
const LIMITS = [50, 100, 200, 500];

const $ = (id) => document.getElementById(id);
const tbody = document.querySelector("#audit-table tbody");
const message = $("audit-message");
const view = { action: "", limit: 100, offset: 0, nextOffset: null };

function showMessage(text, kind) {
  message.textContent = text;
  message.className = `alert alert-${kind}`;
  message.hidden = false;
  focusOn(message);
}

function readUrl() {
  const params = new URLSearchParams(window.location.search);
  view.action = (params.get("action") || "").slice(0, 100);
  const limit = Number(params.get("limit"));
  view.limit = LIMITS.includes(limit) ? limit : 100;
  const offset = Number(params.get("offset"));
  view.offset = Number.isInteger(offset) && offset >= 0 ? offset : 0;
  $("audit-filter-action").value = view.action;
  $("audit-filter-limit").value = String(view.limit);
}

function writeUrl() {
  const url = new URL(window.location.href);
  for (const [name, value] of [["action", view.action], ["limit", view.limit === 100 ? "" : view.limit],
    ["offset", view.offset || ""]]) {
    if (value === "" || value === null) url.searchParams.delete(name);
    else url.searchParams.set(name, String(value));
  }
  window.history.pushState(null, "", url.pathname + url.search);
}

function detailsText(details) {
  const entries = Object.entries(details || {});
  if (!entries.length) return "–";
  return entries.map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`).join("; ");
}

function row(entry) {
  return el("tr", { dataset: { auditId: entry.id } },
    el("td", { class: "number", text: String(entry.id) }),
    el("td", {}, el("time", { datetime: entry.at, text: formatDate(entry.at, { time: true }) })),
    el("td", { text: entry.actor + (entry.organisation_id ? ` (${t(`${NS}.risks.organisation_n`, { id: entry.organisation_id })})` : "") }),
    el("td", {}, el("code", { text: entry.action })),
    el("td", { text: entry.target_type ? `${entry.target_type} ${entry.target_id ?? ""}`.trim() : "–" }),
    el("td", { class: "audit-details", text: detailsText(entry.details) }),
    el("td", {}, el("code", { class: "hash", title: entry.hash, text: `${entry.hash.slice(0, 12)}…` })));
}

async function load({ focusSummary = false } = {}) {
  document.body.dataset.state = "loading";
  $("audit-table").setAttribute("aria-busy", "true");
  try {
    const page = await api("/audit", { query: { limit: view.limit, offset: view.offset, action: view.action } });
    clear(tbody);
    if (!page.items.length) tbody.append(el("tr", {}, el("td", { colspan: "7", text: t("common.state.empty") })));
    page.items.forEach((entry) => tbody.append(row(entry)));
    view.nextOffset = page.next_offset;
    const first = page.items.length ? view.offset + 1 : 0;
    const last = view.offset + page.items.length;
    const summary = view.action
      ? t(`${NS}.audit.summary_action`, { first, last, action: view.action })
      : t(`${NS}.audit.summary`, { first, last });
    $("audit-summary").textContent = summary;
    $("audit-page").textContent = t(`${NS}.audit.page`, { page: Math.floor(view.offset / view.limit) + 1 });
    $("audit-prev").disabled = view.offset === 0;
    $("audit-next").disabled = page.next_offset === null;
    if (focusSummary) focusOn($("audit-summary"));
    announce(summary);
  } catch (error) {
    showMessage(errorText(error, NS, { withDetail: true }), "error");
  } finally {
    $("audit-table").removeAttribute("aria-busy");
    document.body.dataset.state = "ready";
  }
}

async function verify() {
  const box = clear($("audit-verify-result"));
  box.append(el("p", { class: "hint", text: t(`${NS}.audit.verifying`) }));
  try {
    const result = await api("/audit/verify");
    clear(box);
    if (result.ok) {
      box.append(el("p", { class: "alert alert-success", id: "audit-verify-ok" },
        el("strong", { text: t(`${NS}.audit.intact`) }), " ",
        t(`${NS}.audit.intact_detail`, { count: result.entries, last: result.last_id ?? "–" }),
        result.last_hash ? [" ", el("code", { title: result.last_hash, text: `${result.last_hash.slice(0, 16)}…` })] : null));
    } else {
      const list = el("ul", { id: "audit-verify-problems" }, result.problems.map((p) => el("li", {},
        t(`${NS}.audit.problem_at`, { id: p.id }), " ", p.problem)));
      box.append(el("div", { class: "alert alert-error", id: "audit-verify-broken" },
        el("p", {}, el("strong", { text: t(`${NS}.audit.broken`) }), " ",
          t(`${NS}.audit.broken_detail`, { count: result.problems.length, first: result.problems[0] ? result.problems[0].id : "–" })),
        list));
    }
  } catch (error) {
    clear(box).append(el("p", { class: "alert alert-error", text: errorText(error, NS, { withDetail: true }) }));
  }
}

async function main() {
  await initPage({ namespaces: [NS], titleKey: `${NS}.audit.title`, requirePermission: "audit:read" });
  const datalist = $("audit-actions");
  KNOWN_ACTIONS.forEach((action) => datalist.append(el("option", { value: action })));
  readUrl();
  $("audit-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    message.hidden = true;
    view.action = $("audit-filter-action").value.trim();
    view.limit = Number($("audit-filter-limit").value);
    view.offset = 0;
    writeUrl();
    load({ focusSummary: true });
  });
  $("audit-filter-reset").addEventListener("click", () => {
    $("audit-filter-action").value = "";
    $("audit-filter-limit").value = "100";
    view.action = "";
    view.limit = 100;
    view.offset = 0;
    writeUrl();
    load({ focusSummary: true });
  });
  $("audit-prev").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - view.limit);
    writeUrl();
    load({ focusSummary: true });
  });
  $("audit-next").addEventListener("click", () => {
    if (view.nextOffset === null) return;
    view.offset = view.nextOffset;
    writeUrl();
    load({ focusSummary: true });
  });
  $("audit-verify-run").addEventListener("click", verify);
  window.addEventListener("popstate", () => {
    readUrl();
    load();
  });
  await Promise.all([verify(), load()]);
}

main();
