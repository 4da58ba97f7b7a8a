// Import batches (/imports, staff): GET /api/v1/imports lists them with their counts; a click
// opens GET /api/v1/imports/{id}, which lists (up to 100 of) the rejected rows with their line
// numbers and reasons, so a data steward can fix the source file.
import { initPage, api, t, formatDate, formatNumber, announce } from "/static/js/core.js";
import { clear, el, errorText, focusOn, tOr } from "/static/js/pages-util.js";

const NS = "partner";
const LIST_LIMIT = 200;
const COUNTS = ["rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected", "rows_unlocated"];

const $ = (id) => document.getElementById(id);
const tbody = document.querySelector("#import-list tbody");
const message = $("import-message");
let opener = null;

function showMessage(text, kind) {
  message.textContent = text;
  message.className = `alert alert-${kind}`;
  message.hidden = false;
  focusOn(message);
}

const statusText = (status) => tOr(`${NS}.imports.status_${status}`, status);
const statusBadge = (status) => el("span", { class: `badge badge-import-${status}`, text: statusText(status) });

function row(batch) {
  const open = el("button", { type: "button", class: "link-button import-open", dataset: { batchId: batch.id } },
    batch.file_name || `#${batch.id}`);
  open.addEventListener("click", () => openBatch(batch.id, open));
  const tr = el("tr", { dataset: { batchId: batch.id }, class: batch.rows_rejected ? "has-rejected" : null },
    el("th", { scope: "row" }, open),
    el("td", { text: `${batch.kind} · ${batch.preset}` }),
    el("td", { text: batch.source_key || "–" }),
    el("td", {}, statusBadge(batch.status)));
  for (const name of COUNTS) tr.append(el("td", { class: "number", text: formatNumber(batch[name]) }));
  tr.append(el("td", { text: formatDate(batch.finished_at || batch.started_at, { time: true }) }));
  return tr;
}

async function load() {
  document.body.dataset.state = "loading";
  try {
    const batches = await api("/imports", { query: { limit: LIST_LIMIT } });
    clear(tbody);
    if (!batches.length) {
      tbody.append(el("tr", {}, el("td", { colspan: "11", text: t(`${NS}.imports.none`) })));
    }
    batches.forEach((batch) => tbody.append(row(batch)));
    $("import-summary").textContent = t(`${NS}.imports.summary`, { count: batches.length });
  } catch (error) {
    showMessage(errorText(error, NS, { withDetail: true }), "error");
  } finally {
    document.body.dataset.state = "ready";
  }
}

function fact(list, label, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", { text: label }), el("dd", { text: String(value) }));
}

async function openBatch(id, button) {
  opener = button;
  try {
    const batch = await api(`/imports/${id}`);
    $("import-detail-title").textContent = t(`${NS}.imports.detail_title`, { file: batch.file_name || `#${batch.id}`, id: batch.id });
    const facts = clear($("import-detail-facts"));
    fact(facts, t(`${NS}.imports.status`), statusText(batch.status));
    fact(facts, t(`${NS}.imports.kind`), `${batch.kind} · ${batch.preset}`);
    fact(facts, t(`${NS}.imports.source`), batch.source_key);
    fact(facts, t(`${NS}.imports.started`), batch.started_at && formatDate(batch.started_at, { time: true }));
    fact(facts, t(`${NS}.imports.finished`), batch.finished_at && formatDate(batch.finished_at, { time: true }));
    for (const name of COUNTS) fact(facts, t(`${NS}.imports.${name.replace("rows_", "")}`), formatNumber(batch[name]));
    fact(facts, t(`${NS}.imports.message`), batch.message);
    fact(facts, "SHA-256", batch.sha256);

    const rows = batch.rejected_rows || [];
    const body = clear(document.querySelector("#import-rejected tbody"));
    for (const rejected of rows) {
      body.append(el("tr", {},
        el("td", { class: "number", text: rejected.line === null ? "–" : formatNumber(rejected.line) }),
        el("td", { text: rejected.reason || "–" }),
        el("td", {}, el("code", { class: "raw-row", text: rejected.raw }))));
    }
    $("import-rejected").hidden = rows.length === 0;
    const total = batch.rows_rejected || 0;
    $("import-rejected-note").textContent = rows.length === 0
      ? t(`${NS}.imports.no_rejected`)
      : rows.length < total
        ? t(`${NS}.imports.rejected_partial`, { shown: rows.length, total })
        : t(`${NS}.imports.rejected_all`, { count: rows.length });
    $("import-detail").hidden = false;
    focusOn($("import-detail-title"));
    announce($("import-detail-title").textContent);
  } catch (error) {
    showMessage(errorText(error, NS, { withDetail: true }), "error");
  }
}

async function main() {
  await initPage({ namespaces: [NS], titleKey: `${NS}.imports.title`, requirePermission: "imports:read" });
  $("import-refresh").addEventListener("click", async () => {
    message.hidden = true;
    await load();
    announce($("import-summary").textContent);
  });
  $("import-detail-close").addEventListener("click", () => {
    $("import-detail").hidden = true;
    focusOn(opener && document.body.contains(opener) ? opener : $("imports-heading"));
  });
  await load();
}

main();
