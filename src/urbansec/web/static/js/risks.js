// The shared risk register (/risks): a board of the risks the user may see, grouped by level
// (GET /api/v1/risks, filters as its query), the likelihood x impact matrix
// (GET /risks/matrix), the open actions by due date, and one risk in full with its actions,
// comments and history (GET /risks/{id}, /risks/{id}/history). Users holding risks:write
// add risks, actions (owner organisation or admin) and comments.
// Filters live in the URL (?status=&level=&owner=&threat_type=&overdue=1) so a view can be shared.
import { initPage, api, ApiError, t, formatDate, announce, session } from "/static/js/core.js";
import {
  clear, clearFieldError, el, errorField, errorText, focusOn, mapLimited, showFieldError, th, tOr,
} from "/static/js/pages-util.js";

const NS = "partner";
// the API's vocabularies (api/routers/risks.py)
const LEVELS = ["critical", "high", "medium", "low"];  // board order: the worst first
const STATUSES = ["open", "mitigating", "monitoring", "closed"];
const THREATS = ["violence", "property", "public_order", "drugs", "harassment", "terrorism",
  "crowd_safety", "cyber_attack_city_services", "phishing_against_residents", "infrastructure", "other"];
const SHARING = ["organisation", "partners", "public"];
const ACTION_STATUSES = ["planned", "in_progress", "done", "cancelled"];
const OPEN_ACTIONS = new Set(["planned", "in_progress"]);
const PAGE_LIMIT = 500;          // the API's maximum; the register is small
const DETAIL_CONCURRENCY = 4;    // detail requests in flight for the actions-due list
const DETAIL_MAX = 100;          // risks whose actions are collected for that list

const $ = (id) => document.getElementById(id);
const board = $("risk-board");
const message = $("risk-message");
const filterControls = {
  status: $("risk-filter-status"),
  level: $("risk-filter-level"),
  owner: $("risk-filter-owner"),
  threat_type: $("risk-filter-threat"),
};

const state = {
  risks: [],
  owners: new Map(),   // organisation id -> name, from every risk seen
  config: null,
  returnFocus: null,
};

const areaKindLabel = (kind) => tOr(`${NS}.area_kinds.${kind}`, String(kind).replace(/_/g, " "));
const levelLabel = (level) => t(`common.risk_level.${level}`);
const statusLabel = (status) => t(`common.risk_status.${status}`);
const threatLabel = (threat) => tOr(`${NS}.threat.${threat}`, threat);
const badge = (kind, text) => el("span", { class: `badge badge-${kind}`, text });
const today = () => {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}-${String(now.getDate()).padStart(2, "0")}`;
};

function ownerName(id) {
  return state.owners.get(id) || t(`${NS}.risks.organisation_n`, { id });
}

function showMessage(text, kind, { focus = false } = {}) {
  message.textContent = text;
  message.className = `alert alert-${kind}`;
  message.hidden = false;
  if (focus) focusOn(message);
}

function fillSelect(select, values, label, { any = true } = {}) {
  clear(select);
  if (any) select.append(el("option", { value: "", text: t(`${NS}.risks.any`) }));
  for (const value of values) select.append(el("option", { value, text: label(value) }));
}

// ---- filters and the URL ---------------------------------------------------------------

function filtersFromUrl() {
  const params = new URLSearchParams(window.location.search);
  for (const [name, select] of Object.entries(filterControls)) {
    const value = params.get(name) || "";
    if (name === "owner" && value && ![...select.options].some((o) => o.value === value)) {
      select.append(el("option", { value, text: ownerName(Number(value)) }));
    }
    select.value = value;
  }
  $("risk-filter-overdue").checked = params.get("overdue") === "1";
}

function currentFilters() {
  const query = {};
  for (const [name, select] of Object.entries(filterControls)) if (select.value) query[name] = select.value;
  if ($("risk-filter-overdue").checked) query.overdue = "true";
  return query;
}

function writeUrl(push) {
  const url = new URL(window.location.href);
  for (const name of [...Object.keys(filterControls), "overdue"]) url.searchParams.delete(name);
  for (const [name, value] of Object.entries(currentFilters())) {
    url.searchParams.set(name, name === "overdue" ? "1" : value);
  }
  window.history[push ? "pushState" : "replaceState"](null, "", url.pathname + url.search + url.hash);
}

function refreshOwnerOptions() {
  const select = filterControls.owner;
  const chosen = select.value;
  const owners = [...state.owners.entries()].sort((a, b) => a[1].localeCompare(b[1]));
  fillSelect(select, owners.map(([id]) => String(id)), (id) => ownerName(Number(id)));
  if (chosen && ![...select.options].some((o) => o.value === chosen)) {
    select.append(el("option", { value: chosen, text: ownerName(Number(chosen)) }));
  }
  select.value = chosen;
}

// ---- board ------------------------------------------------------------------------------

function riskCard(risk) {
  const open = el("button", { type: "button", class: "link-button risk-open", dataset: { riskId: risk.id } }, risk.title);
  open.addEventListener("click", () => openRisk(risk.id, open));
  const facts = el("p", { class: "risk-facts" },
    badge(risk.status, statusLabel(risk.status)), " ", threatLabel(risk.threat_type));
  const card = el("li", { class: "risk-card", dataset: { riskId: risk.id, level: risk.level } },
    el("h4", {}, open), facts);
  if (risk.view === "full") {
    card.append(el("p", { class: "risk-meta" },
      t(`${NS}.risks.score_line`, { likelihood: risk.likelihood, impact: risk.impact, score: risk.score })),
    el("p", { class: "risk-meta" }, t(`${NS}.risks.owned_by`, { owner: risk.owner_organisation })));
    if (risk.review_date) {
      const review = el("p", { class: risk.review_overdue ? "risk-meta overdue" : "risk-meta" },
        t(`${NS}.risks.review_on`, { date: formatDate(risk.review_date) }));
      if (risk.review_overdue) review.append(" ", badge("high", t(`${NS}.risks.review_overdue`)));
      card.append(review);
    }
  }
  return card;
}

function renderBoard(risks) {
  clear(board);
  for (const level of LEVELS) {
    const inLevel = risks.filter((r) => r.level === level);
    const headingId = `risk-level-${level}`;
    const column = el("section", { class: `risk-column risk-column-${level}`, dataset: { level }, "aria-labelledby": headingId },
      el("h3", { id: headingId }, badge(level, levelLabel(level)), " ",
        el("span", { class: "count", text: t(`${NS}.risks.count`, { count: inLevel.length }) })));
    if (inLevel.length) column.append(el("ul", { class: "risk-list" }, inLevel.map(riskCard)));
    else column.append(el("p", { class: "hint", text: t(`${NS}.risks.none_at_level`) }));
    board.append(column);
  }
  board.removeAttribute("aria-busy");
}

function renderMatrix(matrix) {
  const table = clear($("risk-matrix"));
  table.append(el("caption", { class: "visually-hidden", text: t(`${NS}.risks.matrix_caption`, { total: matrix.total }) }));
  // short visible headers (the numbers) with the full name for screen readers, so the
  // 5 x 5 grid fits a phone and the side column
  const scaleHeader = (nameKey, n, scope) => el("th", { scope },
    el("span", { class: "visually-hidden", text: `${t(nameKey)} ` }), String(n));
  const head = el("tr", {}, el("td", { class: "matrix-corner", text: t(`${NS}.risks.matrix_corner`) }));
  for (let impact = 1; impact <= 5; impact += 1) head.append(scaleHeader(`${NS}.risks.impact`, impact, "col"));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  const byKey = new Map(matrix.cells.map((c) => [`${c.likelihood}:${c.impact}`, c]));
  for (let likelihood = 5; likelihood >= 1; likelihood -= 1) {
    const tr = el("tr", {}, scaleHeader(`${NS}.risks.likelihood`, likelihood, "row"));
    for (let impact = 1; impact <= 5; impact += 1) {
      const cell = byKey.get(`${likelihood}:${impact}`) || { count: 0, level: "low", score: likelihood * impact };
      // the level is written in the cell, so the colour is never the only cue
      tr.append(el("td", { class: `matrix-cell matrix-${cell.level}${cell.count ? "" : " matrix-empty"}` },
        el("span", { class: "matrix-count", text: String(cell.count) }),
        el("span", { class: "matrix-level", text: levelLabel(cell.level) })));
    }
    body.append(tr);
  }
  table.append(body);
  $("risk-matrix-totals").textContent =
    LEVELS.map((level) => `${levelLabel(level)}: ${matrix.levels[level] ?? 0}`).join(" · ");
}

async function renderActionsDue(risks) {
  const box = clear($("risk-actions-due"));
  const full = risks.filter((r) => r.view === "full" && r.status !== "closed").slice(0, DETAIL_MAX);
  if (!full.length) {
    box.append(el("p", { class: "hint", text: t(`${NS}.risks.no_actions`) }));
    return;
  }
  box.append(el("p", { class: "hint", text: t("common.state.loading") }));
  const details = await mapLimited(full, DETAIL_CONCURRENCY, (risk) => api(`/risks/${risk.id}`));
  const actions = [];
  details.forEach((result, i) => {
    if (!result.ok || !result.value.actions) return;
    for (const action of result.value.actions) {
      if (OPEN_ACTIONS.has(action.status)) actions.push({ action, risk: full[i] });
    }
  });
  // due first (earliest first), undated last
  actions.sort((a, b) => (a.action.due_date || "9999").localeCompare(b.action.due_date || "9999"));
  clear(box);
  if (!actions.length) {
    box.append(el("p", { class: "hint", text: t(`${NS}.risks.no_actions`) }));
    return;
  }
  const now = today();
  const table = el("table", { id: "risk-actions-table" },
    el("caption", { class: "visually-hidden", text: t(`${NS}.risks.actions_due`) }),
    el("thead", {}, el("tr", {}, th(t(`${NS}.risks.due`)), th(t(`${NS}.risks.action`)),
      th(t(`${NS}.risks.risk`)), th(t(`${NS}.risks.owner`)), th(t(`${NS}.risks.status`)))));
  const body = el("tbody");
  for (const { action, risk } of actions) {
    const overdue = Boolean(action.due_date && action.due_date < now);
    const open = el("button", { type: "button", class: "link-button", text: risk.title });
    open.addEventListener("click", () => openRisk(risk.id, open));
    body.append(el("tr", { class: overdue ? "overdue" : null },
      el("td", {}, action.due_date ? formatDate(action.due_date) : t(`${NS}.risks.no_due_date`),
        overdue ? [" ", badge("high", t(`${NS}.risks.overdue`))] : null),
      el("td", { text: action.title }),
      el("td", {}, open),
      el("td", { text: ownerName(action.owner_organisation_id) }),
      el("td", {}, badge(action.status, tOr(`${NS}.action_status.${action.status}`, action.status)))));
  }
  table.append(body);
  box.append(el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-labelledby": "risk-actions-title" }, table));
}

async function loadBoard({ announceResult = false } = {}) {
  document.body.dataset.state = "loading";
  board.setAttribute("aria-busy", "true");
  const query = currentFilters();
  const matrixQuery = { ...query };
  delete matrixQuery.level;    // the matrix shows every level (it has no level filter)
  delete matrixQuery.overdue;
  try {
    const [page, matrix] = await Promise.all([
      api("/risks", { query: { ...query, limit: PAGE_LIMIT } }),
      api("/risks/matrix", { query: matrixQuery }),
    ]);
    state.risks = page.items;
    for (const risk of page.items) {
      if (risk.view === "full") state.owners.set(risk.owner_organisation_id, risk.owner_organisation);
    }
    refreshOwnerOptions();
    renderBoard(page.items);
    renderMatrix(matrix);
    const summary = page.total > page.items.length
      ? t(`${NS}.risks.summary_partial`, { count: page.items.length, total: page.total })
      : t(`${NS}.risks.summary`, { count: page.total });
    $("risk-summary").textContent = summary;
    if (announceResult) announce(summary);
    await renderActionsDue(page.items);
  } catch (error) {
    board.removeAttribute("aria-busy");
    showMessage(errorText(error, NS, { withDetail: true }), "error", { focus: true });
  } finally {
    document.body.dataset.state = "ready";
  }
}

// ---- one risk ------------------------------------------------------------------------------

function showBoard(visible) {
  for (const node of [$("risk-filters"), document.querySelector(".toolbar"), document.querySelector(".risks-layout")]) {
    node.hidden = !visible;
  }
  $("risk-detail").hidden = visible;
  if (visible) $("risk-new").hidden = true;
}

function detailItem(list, label, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", { text: label }), el("dd", {}, value));
}

function areaText(area) {
  if (!area) return t(`${NS}.risks.city_wide`);
  if (area.kind && area.code) return `${areaKindLabel(area.kind)} ${area.code}`;
  if (area.bbox) return t(`${NS}.risks.drawn_area_bbox`, { bbox: area.bbox.join(", ") });
  return t(`${NS}.risks.drawn_area`);
}

function evidenceList(evidence) {
  if (!evidence || !evidence.length) return null;
  return el("ul", {}, evidence.map((item) => {
    const label = tOr(`${NS}.evidence.${item.type}`, item.type);
    // url evidence is a link the partner typed: opened in a new tab, without a referrer
    const ref = item.type === "url" && /^https?:\/\//i.test(item.ref)
      ? el("a", { href: item.ref, rel: "noopener noreferrer", target: "_blank", text: item.ref })
      : el("span", { class: "mono", text: item.ref });
    return el("li", {}, `${label}: `, ref, item.note ? ` – ${item.note}` : "");
  }));
}

function actionsTable(actions) {
  if (!actions.length) return el("p", { class: "hint", text: t(`${NS}.risks.no_actions_yet`) });
  const now = today();
  const body = el("tbody");
  for (const action of actions) {
    const overdue = Boolean(action.due_date && OPEN_ACTIONS.has(action.status) && action.due_date < now);
    body.append(el("tr", { class: overdue ? "overdue" : null, dataset: { actionId: action.id } },
      el("td", { text: action.title }),
      el("td", { text: ownerName(action.owner_organisation_id) }),
      el("td", {}, action.due_date ? formatDate(action.due_date) : "–",
        overdue ? [" ", badge("high", t(`${NS}.risks.overdue`))] : null),
      el("td", {}, badge(action.status, tOr(`${NS}.action_status.${action.status}`, action.status)))));
  }
  return el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-labelledby": "risk-detail-actions-title" }, el("table", { id: "risk-actions" },
    el("caption", { class: "visually-hidden", text: t(`${NS}.risks.actions`) }),
    el("thead", {}, el("tr", {}, th(t(`${NS}.risks.action`)), th(t(`${NS}.risks.owner`)),
      th(t(`${NS}.risks.due`)), th(t(`${NS}.risks.status`)))),
    body));
}

function commentsList(comments) {
  if (!comments.length) return el("p", { class: "hint", text: t(`${NS}.risks.no_comments`) });
  return el("ol", { id: "risk-comments", class: "comments" }, comments.map((c) => el("li", {},
    el("p", { class: "meta" }, el("strong", { text: c.author || "–" }), " · ",
      el("time", { datetime: c.created_at, text: formatDate(c.created_at, { time: true }) })),
    el("p", { class: "comment-body", text: c.body }))));
}

function valueText(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A history value in words: names for organisations and vocabularies, dates formatted. */
function historyValue(field, value) {
  if (value === null || value === undefined || value === "") return "–";
  if (Array.isArray(value)) return value.length ? value.map((v) => (typeof v === "object" ? v.ref || JSON.stringify(v) : v)).join(", ") : "–";
  switch (field) {
    case "owner_organisation_id": return ownerName(Number(value));
    case "threat_type": return threatLabel(value);
    case "level": return levelLabel(value);
    case "sharing": return tOr(`${NS}.sharing.${value}`, String(value));
    case "status": return STATUSES.includes(value) ? statusLabel(value) : tOr(`${NS}.action_status.${value}`, String(value));
    case "review_date":
    case "due_date": return formatDate(String(value));
    case "area": return typeof value === "object" ? areaText(value.type ? null : value) : String(value);
    default: return valueText(value);
  }
}

function historyList(entries) {
  if (!entries) return el("p", { class: "hint", text: t(`${NS}.risks.history_unavailable`) });
  if (!entries.length) return el("p", { class: "hint", text: t("common.state.empty") });
  return el("ol", { id: "risk-history", class: "timeline" }, entries.map((entry) => {
    // a creation lists the values set; a change shows before -> after
    const created = entry.event === "created" || entry.event.endsWith("_added");
    const changes = Object.entries(entry.fields || {})
      .filter(([, change]) => !(created && change && typeof change === "object" && (change.after === null || change.after === "" || (Array.isArray(change.after) && !change.after.length))))
      .map(([field, change]) => el("li", {},
        `${tOr(`${NS}.risk_fields.${field}`, field)}: `,
        change && typeof change === "object" && "before" in change
          ? (created ? historyValue(field, change.after) : `${historyValue(field, change.before)} → ${historyValue(field, change.after)}`)
          : historyValue(field, change)));
    return el("li", {},
      el("time", { datetime: entry.at, text: formatDate(entry.at, { time: true }) }), " – ",
      tOr(`${NS}.history_event.${entry.event}`, entry.event), " – ", entry.actor || "–",
      changes.length ? el("ul", { class: "changes" }, changes) : null);
  }));
}

function formError(form) {
  return form.querySelector(".form-error");
}

/** A small form (one required text field plus extras) that posts and then reloads the risk. */
function subForm({ id, titleKey, fields, submitKey, onSubmit }) {
  const form = el("form", { id, class: "sub-form", novalidate: true },
    el("h4", { text: t(titleKey) }),
    el("p", { class: "alert alert-error form-error", role: "alert", hidden: true }),
    ...fields,
    el("button", { type: "submit", text: t(submitKey) }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = formError(form);
    error.hidden = true;
    form.querySelectorAll("[aria-invalid]").forEach((c) => c.removeAttribute("aria-invalid"));
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await onSubmit(form);
    } catch (problem) {
      error.textContent = problem instanceof ApiError ? errorText(problem, NS, { withDetail: true }) : String(problem.message || problem);
      error.hidden = false;
      const required = form.querySelector("[required]");
      if (required && !required.value.trim()) {
        required.setAttribute("aria-invalid", "true");
        required.setAttribute("aria-describedby", error.id || "");
      }
      focusOn(error);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function field(id, labelKey, control, hintKey = null) {
  control.id = id;
  if (hintKey) control.setAttribute("aria-describedby", `${id}-hint`);
  return el("div", { class: "field" }, el("label", { for: id, text: t(labelKey) }), control,
    hintKey ? el("p", { id: `${id}-hint`, class: "hint", text: t(hintKey) }) : null);
}

function mayChange(risk) {
  const user = session.user;
  return Boolean(user && session.has("risks:write")
    && (user.role === "admin" || user.organisation_id === risk.owner_organisation_id));
}

function actionForm(risk) {
  const title = el("input", { type: "text", maxlength: "200", required: true });
  const due = el("input", { type: "date" });
  const status = el("select");
  fillSelect(status, ACTION_STATUSES, (s) => tOr(`${NS}.action_status.${s}`, s), { any: false });
  const form = subForm({
    id: "risk-action-form", titleKey: `${NS}.risks.add_action`, submitKey: `${NS}.risks.save_action`,
    fields: [field("risk-action-title", `${NS}.risks.action`, title),
      el("div", { class: "filters-grid" },
        field("risk-action-due", `${NS}.risks.due`, due),
        field("risk-action-status", `${NS}.risks.status`, status))],
    onSubmit: async () => {
      if (!title.value.trim()) throw new Error(t(`${NS}.risks.need_action_title`));
      const body = { title: title.value.trim(), status: status.value };
      if (due.value) body.due_date = due.value;
      await api(`/risks/${risk.id}/actions`, { method: "POST", body });
      await openRisk(risk.id, null, { focusId: "risk-action-title", note: t(`${NS}.risks.action_added`) });
      loadBoard();
    },
  });
  formError(form).id = "risk-action-error";
  return form;
}

function commentForm(risk) {
  const body = el("textarea", { rows: "3", maxlength: "4000", required: true });
  const form = subForm({
    id: "risk-comment-form", titleKey: `${NS}.risks.add_comment`, submitKey: `${NS}.risks.save_comment`,
    fields: [field("risk-comment-body", `${NS}.risks.comment`, body)],
    onSubmit: async () => {
      if (!body.value.trim()) throw new Error(t(`${NS}.risks.need_comment`));
      await api(`/risks/${risk.id}/comments`, { method: "POST", body: { body: body.value.trim() } });
      await openRisk(risk.id, null, { focusId: "risk-comment-body", note: t(`${NS}.risks.comment_added`) });
    },
  });
  formError(form).id = "risk-comment-error";
  return form;
}

function renderDetail(risk, history, note) {
  $("risk-detail-title").textContent = risk.title;
  const body = clear($("risk-detail-body"));
  if (note) body.append(el("p", { class: "alert alert-success", role: "status", text: note }));
  body.append(el("p", { class: "risk-facts" },
    badge(risk.level, levelLabel(risk.level)), " ", badge(risk.status, statusLabel(risk.status)), " ",
    threatLabel(risk.threat_type)));
  const list = el("dl", { class: "details-list" });
  if (risk.view !== "full") {
    detailItem(list, t(`${NS}.risks.area`), areaText(risk.area));
    body.append(list, el("p", { class: "hint", text: t(`${NS}.risks.summary_only`) }));
    return;
  }
  detailItem(list, t(`${NS}.risks.field_description`), risk.description || null);
  detailItem(list, t(`${NS}.risks.score`),
    t(`${NS}.risks.score_line`, { likelihood: risk.likelihood, impact: risk.impact, score: risk.score }));
  detailItem(list, t(`${NS}.risks.owner`), risk.owner_organisation);
  detailItem(list, t(`${NS}.risks.sharing`), tOr(`${NS}.sharing.${risk.sharing}`, risk.sharing));
  // in full, the area is {kind, code} or the drawn GeoJSON polygon itself
  detailItem(list, t(`${NS}.risks.area`), risk.area && risk.area.type ? t(`${NS}.risks.drawn_area`) : areaText(risk.area));
  if (risk.review_date) {
    detailItem(list, t(`${NS}.risks.review_date`), el("span", {}, formatDate(risk.review_date),
      risk.review_overdue ? [" ", badge("high", t(`${NS}.risks.review_overdue`))] : null));
  }
  detailItem(list, t(`${NS}.risks.evidence`), evidenceList(risk.evidence));
  detailItem(list, t(`${NS}.risks.updated`), formatDate(risk.updated_at, { time: true }));
  body.append(list,
    el("h3", { id: "risk-detail-actions-title", text: t(`${NS}.risks.actions`) }), actionsTable(risk.actions || []));
  if (mayChange(risk)) body.append(actionForm(risk));
  body.append(el("h3", { text: t(`${NS}.risks.comments`) }), commentsList(risk.comments || []));
  if (session.has("risks:write")) body.append(commentForm(risk));
  body.append(el("h3", { text: t(`${NS}.risks.history`) }), historyList(history));
}

async function openRisk(id, opener, { focusId = null, note = null } = {}) {
  if (opener) state.returnFocus = opener;
  try {
    const risk = await api(`/risks/${id}`);
    let entries = null;
    if (risk.view === "full") {
      try {
        entries = await api(`/risks/${id}/history`);
      } catch (error) {
        console.warn("risk history unavailable", error);
      }
    }
    renderDetail(risk, entries, note);
    showBoard(false);
    const url = new URL(window.location.href);
    url.hash = `risk-${id}`;
    replaceUrl(url);
    focusOn(focusId ? $(focusId) : $("risk-detail-title"));
  } catch (error) {
    showMessage(errorText(error, NS, { withDetail: true }), "error", { focus: true });
  }
}

function replaceUrl(url) {
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
}

function closeRisk() {
  showBoard(true);
  const url = new URL(window.location.href);
  url.hash = "";
  replaceUrl(url);
  const target = state.returnFocus && document.body.contains(state.returnFocus) ? state.returnFocus : null;
  focusOn(target || $("risk-board-title"));
}

// ---- new risk ------------------------------------------------------------------------------

const NEW_FIELDS = {
  title: ["risk-new-title-input", "risk-new-title-error"],
  description: ["risk-new-description", "risk-new-description-error"],
  review_date: ["risk-new-review", "risk-new-review-error"],
  area: ["risk-new-area-code", "risk-new-area-error"],
  kind: ["risk-new-area-code", "risk-new-area-error"],
  code: ["risk-new-area-code", "risk-new-area-error"],
};

function setUpNewRiskForm() {
  fillSelect($("risk-new-threat"), THREATS, threatLabel, { any: false });
  const scale = [1, 2, 3, 4, 5];
  fillSelect($("risk-new-likelihood"), scale, (n) => t(`${NS}.risks.scale.${n}`), { any: false });
  fillSelect($("risk-new-impact"), scale, (n) => t(`${NS}.risks.scale.${n}`), { any: false });
  $("risk-new-likelihood").value = "3";
  $("risk-new-impact").value = "3";
  fillSelect($("risk-new-status"), STATUSES, statusLabel, { any: false });
  fillSelect($("risk-new-sharing"), SHARING, (s) => tOr(`${NS}.sharing.${s}`, s), { any: false });
  $("risk-new-sharing").value = "partners";
  const kinds = state.config && Array.isArray(state.config.area_kinds) ? state.config.area_kinds.map((k) => k.kind) : [];
  fillSelect($("risk-new-area-kind"), kinds, areaKindLabel, { any: false });
  $("risk-new-area-kind").prepend(el("option", { value: "", text: t(`${NS}.risks.city_wide`) }));
  $("risk-new-area-kind").value = "";
  $("risk-new-area-kind").addEventListener("change", fillAreaCodes);
  fillAreaCodes();
  const score = () => {
    const l = Number($("risk-new-likelihood").value);
    const i = Number($("risk-new-impact").value);
    const value = l * i;
    const level = value <= 4 ? "low" : value <= 9 ? "medium" : value <= 16 ? "high" : "critical";
    $("risk-new-score").textContent = t(`${NS}.risks.score_preview`, { score: value, level: levelLabel(level) });
  };
  $("risk-new-likelihood").addEventListener("change", score);
  $("risk-new-impact").addEventListener("change", score);
  score();

  const toggle = $("risk-new-toggle");
  toggle.hidden = !session.has("risks:write");
  toggle.addEventListener("click", () => {
    const open = $("risk-new").hidden;
    $("risk-new").hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) focusOn($("risk-new-title"));
  });
  $("risk-new-cancel").addEventListener("click", () => {
    $("risk-new").hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    toggle.focus();
  });
  $("risk-new-form").addEventListener("submit", createRisk);
}

/** The areas of the chosen kind (from the dashboard's boundaries) as the code choices. */
async function fillAreaCodes() {
  const kind = $("risk-new-area-kind").value;
  const select = $("risk-new-area-code");
  clear(select);
  select.disabled = !kind;
  if (!kind) {
    select.append(el("option", { value: "", text: t(`${NS}.risks.city_wide`) }));
    return;
  }
  select.append(el("option", { value: "", text: t("common.state.loading") }));
  try {
    const areas = await api(`/dashboard/areas/${encodeURIComponent(kind)}`);
    const choices = areas.features.map((f) => f.properties)
      .sort((a, b) => String(a.code).localeCompare(String(b.code), undefined, { numeric: true }));
    if ($("risk-new-area-kind").value !== kind) return;  // the choice changed meanwhile
    clear(select);
    select.append(el("option", { value: "", text: t(`${NS}.risks.choose_area`) }));
    for (const area of choices) {
      const label = area.name && area.name !== area.code ? `${area.code} – ${area.name}` : String(area.code);
      select.append(el("option", { value: area.code, text: label }));
    }
  } catch (error) {
    clear(select).append(el("option", { value: "", text: errorText(error, NS) }));
  }
}

function clearNewErrors() {
  $("risk-new-error").hidden = true;
  for (const [controlId, errorId] of Object.values(NEW_FIELDS)) clearFieldError($(controlId), $(errorId));
}

async function createRisk(event) {
  event.preventDefault();
  clearNewErrors();
  const title = $("risk-new-title-input");
  if (!title.value.trim()) {
    showFieldError(title, $("risk-new-title-error"), t(`${NS}.risks.need_title`));
    title.focus();
    return;
  }
  const kind = $("risk-new-area-kind").value;
  const code = $("risk-new-area-code").value;
  if (Boolean(kind) !== Boolean(code)) {
    showFieldError($("risk-new-area-code"), $("risk-new-area-error"), t(`${NS}.risks.need_area_both`));
    $("risk-new-area-code").focus();
    return;
  }
  const body = {
    title: title.value.trim(),
    description: $("risk-new-description").value.trim(),
    threat_type: $("risk-new-threat").value,
    likelihood: Number($("risk-new-likelihood").value),
    impact: Number($("risk-new-impact").value),
    status: $("risk-new-status").value,
    sharing: $("risk-new-sharing").value,
  };
  if ($("risk-new-review").value) body.review_date = $("risk-new-review").value;
  if (kind && code) body.area = { kind, code };
  const submit = $("risk-new-submit");
  submit.disabled = true;
  try {
    const risk = await api("/risks", { method: "POST", body });
    $("risk-new-form").reset();
    fillAreaCodes();
    $("risk-new").hidden = true;
    $("risk-new-toggle").setAttribute("aria-expanded", "false");
    await loadBoard();
    await openRisk(risk.id, board.querySelector(`button.risk-open[data-risk-id="${risk.id}"]`),
      { note: t(`${NS}.risks.risk_added`) });
  } catch (error) {
    // an unknown area is reported with details.area_kind/area_code, other fields with .field
    const name = error instanceof ApiError && error.details && error.details.area_code ? "area" : errorField(error);
    const where = name && NEW_FIELDS[name];
    const text = errorText(error, NS, { withDetail: true });
    if (where) {
      showFieldError($(where[0]), $(where[1]), text);
      $(where[0]).focus();
    } else {
      $("risk-new-error").textContent = text;
      $("risk-new-error").hidden = false;
      focusOn($("risk-new-error"));
    }
  } finally {
    submit.disabled = false;
  }
}

// ---- start ---------------------------------------------------------------------------------

async function main() {
  await initPage({ namespaces: [NS], titleKey: `${NS}.risks.title`, requirePermission: "risks:read" });
  try {
    state.config = await api("/dashboard/config");
  } catch (error) {
    console.warn("dashboard config unavailable", error);
  }
  fillSelect(filterControls.status, STATUSES, statusLabel);
  fillSelect(filterControls.level, LEVELS, levelLabel);
  fillSelect(filterControls.threat_type, THREATS, threatLabel);
  fillSelect(filterControls.owner, [], String);
  filtersFromUrl();
  setUpNewRiskForm();

  $("risk-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    message.hidden = true;
    writeUrl(true);
    loadBoard({ announceResult: true });
  });
  $("risk-filter-reset").addEventListener("click", () => {
    for (const select of Object.values(filterControls)) select.value = "";
    $("risk-filter-overdue").checked = false;
    writeUrl(true);
    loadBoard({ announceResult: true });
  });
  window.addEventListener("popstate", () => {
    filtersFromUrl();
    loadBoard();
  });
  $("risk-detail-close").addEventListener("click", closeRisk);

  await loadBoard();
  const fromHash = /^#risk-(\d+)$/.exec(window.location.hash);
  if (fromHash) await openRisk(Number(fromHash[1]), null);
}

main();
