// The moderation queue (/moderation, staff): pending citizen reports, oldest first
// (GET /api/v1/reports/moderation). Approve, reject (a public reason is required) or merge
// into a likely duplicate (POST /api/v1/reports/{id}/moderation); the row leaves the queue
// without a reload and focus moves on to the next report.
import { initPage, api, ApiError, t, formatDate, announce } from "/static/js/core.js";
import {
  authorisedObjectUrl, boundaryMap, clear, clearFieldError, el, errorText, focusOn, leaflet,
  showFieldError, tOr,
} from "/static/js/pages-util.js";

const NS = "partner";
const QUEUE_LIMIT = 200;

const $ = (id) => document.getElementById(id);
const queue = $("moderation-queue");
const message = $("moderation-message");

let config = null;
let areas = null;  // the boundaries, fetched once for all the small maps

function loadAreas(kind) {
  if (!areas) areas = api(`/dashboard/areas/${encodeURIComponent(kind)}`);
  return areas;
}

function categoryName(item) {
  return tOr(`citizen.categories.${item.service_code}.name`, item.service_name || item.service_code);
}

function showMessage(text, kind, { focus = false } = {}) {
  message.textContent = text;
  message.className = `alert alert-${kind}`;
  message.hidden = false;
  if (focus) focusOn(message);
}

function updateSummary() {
  const count = queue.querySelectorAll("li[data-report-id]").length;
  $("moderation-summary").textContent = count
    ? t(`${NS}.moderation.waiting`, { count })
    : t(`${NS}.moderation.empty`);
}

function attributeText(code, value) {
  const values = Array.isArray(value) ? value : [value];
  const label = tOr(`${NS}.moderation.attributes.${code}.label`, code);
  const shown = values.map((v) => tOr(`${NS}.moderation.attributes.${code}.${v}`, String(v)));
  return `${label}: ${shown.join(", ")}`;
}

function placeSection(item, id) {
  const section = el("div", { class: "report-place" });
  const hasPoint = item.lat !== null && item.lat !== undefined && item.lon !== null && item.lon !== undefined;
  const parts = [];
  if (hasPoint) parts.push(`${Number(item.lat).toFixed(5)}, ${Number(item.lon).toFixed(5)}`);
  if (item.address) parts.push(item.address);
  section.append(el("p", {},
    el("strong", { text: t(`${NS}.moderation.place`) }), " ",
    parts.length ? parts.join(" · ") : t(`${NS}.moderation.no_place`)));
  if (hasPoint && leaflet()) {
    const mapBox = el("div", { class: "small-map", id: `moderation-map-${id}`, hidden: true,
      role: "group", "aria-label": t(`${NS}.moderation.map_label`, { id: item.public_id }) });
    const button = el("button", { type: "button", class: "button-secondary show-map",
      "aria-expanded": "false", "aria-controls": mapBox.id, text: t(`${NS}.moderation.show_map`) });
    let map = null;
    button.addEventListener("click", async () => {
      const open = mapBox.hidden;
      mapBox.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
      button.textContent = t(`${NS}.moderation.${open ? "hide_map" : "show_map"}`);
      if (open && !map) {
        map = await boundaryMap(mapBox, config, loadAreas, { keyboard: false });
        if (map) {
          map.setView([item.lat, item.lon], 14);
          leaflet().marker([item.lat, item.lon], { keyboard: false, alt: item.public_id }).addTo(map);
        }
      } else if (open && map) {
        map.invalidateSize();
      }
    });
    section.append(button, mapBox);
  }
  return section;
}

function photoSection(item) {
  if (!item.has_photo) return null;
  const box = el("div", { class: "report-photo" });
  const button = el("button", { type: "button", class: "button-secondary show-photo", text: t(`${NS}.moderation.show_photo`) });
  const status = el("p", { class: "hint", "aria-live": "polite" });
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = t("common.state.loading");
    try {
      const url = await authorisedObjectUrl(`/reports/${encodeURIComponent(item.public_id)}/photo`);
      const img = el("img", { src: url, alt: t(`${NS}.moderation.photo_alt`, { id: item.public_id }), class: "report-photo-img" });
      const link = el("a", { href: url, target: "_blank", rel: "noopener", text: t(`${NS}.moderation.photo_full`) });
      button.replaceWith(img);
      status.replaceChildren(link);
    } catch (error) {
      button.disabled = false;
      status.textContent = errorText(error, NS, { withDetail: true });
    }
  });
  box.append(button, status);
  return box;
}

function duplicatesSection(item, decide) {
  if (!item.duplicates || !item.duplicates.length) return null;
  const list = el("ul", { class: "duplicates" });
  for (const dup of item.duplicates) {
    const merge = el("button", { type: "button", class: "button-secondary merge", dataset: { mergeInto: dup.public_id } },
      t(`${NS}.moderation.merge`, { id: dup.public_id }));
    merge.addEventListener("click", () => decide("merge", { merge_into: dup.public_id }));
    list.append(el("li", {},
      el("p", {}, el("strong", { text: dup.public_id }), " · ",
        t("common.report_status." + dup.status), " · ",
        t(`${NS}.moderation.distance`, { metres: Math.round(dup.distance_m) }), " · ",
        formatDate(dup.submitted_at, { time: true })),
      el("p", { class: "report-text", text: dup.public_description || "–" }),
      merge));
  }
  return el("div", { class: "report-duplicates" },
    el("h3", { text: t(`${NS}.moderation.duplicates`, { count: item.duplicates.length }) }), list);
}

function row(item, index) {
  const id = `r${index}`;
  const li = el("li", { class: "moderation-item card", dataset: { reportId: item.public_id } });
  const heading = el("h2", { id: `moderation-title-${id}`, tabindex: "-1" },
    `${categoryName(item)} · `, el("span", { class: "mono", text: item.public_id }));
  const reasonId = `moderation-reason-${id}`;
  const reasonError = el("p", { id: `${reasonId}-error`, class: "field-error", hidden: true });
  const reason = el("textarea", { id: reasonId, class: "reject-reason", rows: "2", maxlength: "2000",
    "aria-describedby": `${reasonId}-help` });
  const actionError = el("p", { class: "alert alert-error form-error", role: "alert", hidden: true });

  async function decide(action, extra = {}) {
    clearFieldError(reason, reasonError);
    actionError.hidden = true;
    const note = reason.value.trim();
    if (action === "reject" && !note) {
      showFieldError(reason, reasonError, t(`${NS}.moderation.need_reason`));
      reason.focus();
      return;
    }
    const buttons = li.querySelectorAll("button.approve, button.reject, button.merge");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const body = { action, ...extra };
      if (note) body.reason = note;
      const result = await api(`/reports/${encodeURIComponent(item.public_id)}/moderation`, { method: "POST", body });
      const next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      updateSummary();
      const done = t(`${NS}.moderation.done_${action}`, { id: item.public_id, status: t(`common.report_status.${result.status}`) });
      showMessage(done, "success");
      announce(done);
      focusOn(next ? next.querySelector("h2") : $("moderation-heading"));
    } catch (error) {
      buttons.forEach((b) => { b.disabled = false; });
      if (error instanceof ApiError && error.details && error.details.field === "reason") {
        showFieldError(reason, reasonError, t(`${NS}.moderation.need_reason`));
        reason.focus();
        return;
      }
      actionError.textContent = error instanceof ApiError && error.status === 409
        ? t(`${NS}.moderation.conflict`, { id: item.public_id })
        : errorText(error, NS, { withDetail: true });
      actionError.hidden = false;
      focusOn(actionError);
    }
  }

  const approve = el("button", { type: "button", class: "approve" },
    t(`${NS}.moderation.approve`), el("span", { class: "visually-hidden", text: ` ${item.public_id}` }));
  const reject = el("button", { type: "button", class: "button-danger reject" },
    t(`${NS}.moderation.reject`), el("span", { class: "visually-hidden", text: ` ${item.public_id}` }));
  approve.addEventListener("click", () => decide("approve"));
  reject.addEventListener("click", () => decide("reject"));

  const attributes = Object.entries(item.attributes || {});
  li.append(el("article", { "aria-labelledby": heading.id },
    heading,
    el("p", { class: "meta" },
      t(`${NS}.moderation.submitted`, { date: formatDate(item.submitted_at, { time: true }) }),
      item.channel ? ` · ${t(`${NS}.moderation.channel`, { channel: item.channel })}` : "",
      item.occurred_at ? ` · ${t(`${NS}.moderation.occurred`, { date: formatDate(item.occurred_at, { time: true }) })}` : ""),
    el("h3", { text: t(`${NS}.moderation.public_text`) }),
    el("p", { class: "report-text", text: item.public_description || "–" }),
    item.description && item.description !== item.public_description
      ? el("details", {}, el("summary", { text: t(`${NS}.moderation.original_text`) }),
        el("p", { class: "report-text", text: item.description }))
      : null,
    attributes.length ? el("ul", { class: "attributes" }, attributes.map(([code, value]) => el("li", { text: attributeText(code, value) }))) : null,
    placeSection(item, id),
    photoSection(item),
    duplicatesSection(item, decide),
    el("div", { class: "moderation-actions" },
      el("label", { for: reasonId, text: t(`${NS}.moderation.reason`) }),
      reason,
      el("p", { id: `${reasonId}-help`, class: "hint", text: t(`${NS}.moderation.reason_help`) }),
      reasonError,
      el("div", { class: "button-row" }, approve, reject),
      actionError)));
  return li;
}

async function load() {
  document.body.dataset.state = "loading";
  queue.setAttribute("aria-busy", "true");
  try {
    const items = await api("/reports/moderation", { query: { limit: QUEUE_LIMIT } });
    clear(queue);
    items.forEach((item, index) => queue.append(row(item, index)));
    updateSummary();
    if (items.length === QUEUE_LIMIT) {
      $("moderation-summary").textContent += ` ${t(`${NS}.moderation.first_only`, { count: QUEUE_LIMIT })}`;
    }
  } catch (error) {
    showMessage(errorText(error, NS, { withDetail: true }), "error", { focus: true });
  } finally {
    queue.removeAttribute("aria-busy");
    document.body.dataset.state = "ready";
  }
}

async function main() {
  await initPage({ namespaces: [NS, "citizen"], titleKey: `${NS}.moderation.title`,
                   requirePermission: "reports:moderate" });
  try {
    config = await api("/dashboard/config");
  } catch (error) {
    console.warn("dashboard config unavailable", error);
  }
  $("moderation-refresh").addEventListener("click", async () => {
    message.hidden = true;
    await load();
    announce($("moderation-summary").textContent);
  });
  await load();
}

main();
