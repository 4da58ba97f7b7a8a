// The night-time view (/nighttime): for an area and period, footfall (people counters) beside
// incidents per hour of day, the incidents per 1,000 passers-by with their 95% intervals, and
// night against day (GET /api/v1/nighttime). The state lives in the URL
// (?area=KIND:CODE&from=YYYY-MM-DD&to=YYYY-MM-DD&night=HH:MM-HH:MM&category=CODE), so a view
// can be shared.
import { initPage, api, t, h, formatNumber, formatDate, announce } from "/static/js/core.js";
import { errorText, focusOn, tOr } from "/static/js/pages-util.js";
import { areaLabel } from "/static/js/filters.js";

const NS = "event";
const DEFAULT_NIGHT = "22:00-06:00";
const DEFAULT_DAYS = 28;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const TIME = /^([01]\d|2[0-3]):([0-5]\d)$/;
const AREA = /^[A-Za-z0-9_.-]{1,50}:[^,]{1,60}$/;
const CODE = /^[A-Za-z0-9._-]{1,20}$/;
const COLOURS = { footfall: "#7f93a8", footfallNight: "#0e2a47", incidents: "#c2410c",
                  rate: "#1f5fa8", band: "rgba(31, 95, 168, 0.18)" };

const $ = (id) => document.getElementById(id);
const page = { config: null, areas: new Map(), charts: [] };

/** Rates per passer-by are small numbers (0.0123): three significant digits, not decimals. */
function significant(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return formatNumber(value, { maximumSignificantDigits: 3 });
}

function whole(value) {
  return value === null || value === undefined ? "–" : formatNumber(Math.round(value));
}

function withInterval(value, low, high) {
  if (value === null || value === undefined) return t(`${NS}.night.no_rate`);
  return t(`${NS}.night.with_ci`, { value: significant(value), low: significant(low),
                                   high: significant(high) });
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function addDays(day, days) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + days);
  return isoDay(date);
}

// ---- URL state -------------------------------------------------------------------------

function readUrl() {
  const params = new URLSearchParams(window.location.search);
  const night = params.get("night") || "";
  const [start, end] = night.split("-");
  return {
    area: AREA.test(params.get("area") || "") ? params.get("area") : "",
    from: DATE.test(params.get("from") || "") ? params.get("from") : "",
    to: DATE.test(params.get("to") || "") ? params.get("to") : "",
    night: TIME.test(start || "") && TIME.test(end || "") ? night : DEFAULT_NIGHT,
    category: CODE.test(params.get("category") || "") ? params.get("category") : "",
  };
}

function formState() {
  const kind = $("night-area-kind").value;
  const code = $("night-area").value;
  return {
    area: kind && code ? `${kind}:${code}` : "",
    from: $("night-from").value, to: $("night-to").value,
    night: `${$("night-start").value}-${$("night-end").value}`,
    category: $("night-category").value,
  };
}

function writeUrl(state, push) {
  const params = new URLSearchParams(window.location.search);
  for (const [name, value] of Object.entries(state)) {
    if (value && !(name === "night" && value === DEFAULT_NIGHT)) params.set(name, value);
    else params.delete(name);
  }
  const query = params.toString();
  const url = `${window.location.pathname}${query ? `?${query}` : ""}`;
  window.history[push ? "pushState" : "replaceState"](null, "", url);
}

// ---- the form --------------------------------------------------------------------------

async function loadAreas(kind) {
  const select = $("night-area");
  if (!kind) {
    select.replaceChildren(h("option", { value: "" }, t(`${NS}.night.choose_kind`)));
    select.disabled = true;
    return;
  }
  if (!page.areas.has(kind)) {
    page.areas.set(kind, api(`/dashboard/areas/${encodeURIComponent(kind)}`).catch((error) => {
      console.warn(`urbansec: no outlines for the area kind ${kind}`, error);
      return { features: [] };
    }));
  }
  const areas = await page.areas.get(kind);
  const features = [...(areas.features || [])].sort((a, b) => areaLabel(a.properties)
    .localeCompare(areaLabel(b.properties), undefined, { numeric: true }));
  select.replaceChildren(h("option", { value: "" }, t(`${NS}.night.choose_area`)),
    ...features.map((f) => h("option", { value: String(f.properties.code) },
      areaLabel(f.properties))));
  select.disabled = false;
}

function fillKinds(selected) {
  // only kinds with imported outlines: the view needs the area's polygon (kinds known only
  // from the incidents' area codes have none; the config says so with `boundaries: false`)
  const kinds = (page.config?.area_kinds || []).filter((k) => k.boundaries !== false)
    .map((k) => k.kind);
  if (selected && !kinds.includes(selected)) kinds.push(selected);
  $("night-area-kind").replaceChildren(h("option", { value: "" }, t(`${NS}.night.choose_kind`)),
    ...kinds.map((kind) => h("option", { value: kind },
      tOr(`partner.area_kinds.${kind}`, kind.replace(/_/g, " ")))));
  $("night-area-kind").value = selected || "";
}

function fillCategories(taxonomy, selected) {
  const categories = taxonomy?.categories || [];
  const options = [h("option", { value: "" }, t(`${NS}.night.all_categories`))];
  const sections = categories.filter((c) => !c.parent);
  for (const section of sections) {
    options.push(h("option", { value: section.code }, section.name || section.code));
    for (const child of categories.filter((c) => c.parent === section.code)) {
      options.push(h("option", { value: child.code }, `— ${child.name || child.code}`));
    }
  }
  const select = $("night-category");
  select.replaceChildren(...options);
  if (selected && ![...select.options].some((o) => o.value === selected)) {
    select.append(h("option", { value: selected }, selected));
  }
  select.value = selected || "";
}

async function showState(state) {
  const [kind, code] = state.area ? [state.area.slice(0, state.area.indexOf(":")),
                                    state.area.slice(state.area.indexOf(":") + 1)] : ["", ""];
  const chosenKind = kind || page.config?.default_area_kind || "";
  fillKinds(chosenKind);
  await loadAreas(chosenKind);
  const area = $("night-area");
  if (code && ![...area.options].some((o) => o.value === code)) {
    area.append(h("option", { value: code }, code));
  }
  area.value = code;
  $("night-from").value = state.from;
  $("night-to").value = state.to;
  const [start, end] = state.night.split("-");
  $("night-start").value = start;
  $("night-end").value = end;
  $("night-category").value = state.category;
}

function defaultPeriod() {
  const last = page.config?.period?.last || isoDay(new Date());
  const to = addDays(last, 1);
  return { from: addDays(to, -DEFAULT_DAYS), to };
}

function formProblem(state) {
  if (!state.area) return t(`${NS}.night.need_area`);
  if (!DATE.test(state.from) || !DATE.test(state.to)) return t(`${NS}.night.need_period`);
  if (state.from >= state.to) return t(`${NS}.night.bad_period`);
  const [start, end] = state.night.split("-");
  if (!TIME.test(start || "") || !TIME.test(end || "")) return t(`${NS}.night.need_window`);
  if (start === end) return t(`${NS}.night.bad_window`);
  // the view counts whole local hours (GET /nighttime refuses 22:30)
  if (!start.endsWith(":00") || !end.endsWith(":00")) return t(`${NS}.night.whole_hours`);
  return null;
}

// ---- results ---------------------------------------------------------------------------

function destroyCharts() {
  for (const chart of page.charts) chart.destroy();
  page.charts = [];
}

function isNight(hour, windowText) {
  const [start, end] = windowText.split("-").map((s) => {
    const [hh, mm] = s.split(":").map(Number);
    return hh + mm / 60;
  });
  // an hour of day belongs to the night when its start lies in the window
  return start < end ? hour >= start && hour < end : hour >= start || hour < end;
}

/** The rate in large type, its interval below it. */
function figure(value, low, high) {
  if (value === null || value === undefined) {
    return [h("p", { class: "night-figure" }, t(`${NS}.night.no_rate`))];
  }
  return [h("p", { class: "night-figure" }, significant(value)),
    h("p", { class: "night-interval" }, t(`${NS}.night.interval`, { low: significant(low),
                                                                    high: significant(high) }))];
}

function summaryCard(id, title, part) {
  return h("section", { class: "card", id, "aria-labelledby": `${id}-title` },
    h("h3", { class: "card-title", id: `${id}-title` }, title),
    figure(part?.rate_per_1000, part?.ci_low, part?.ci_high),
    h("p", { class: "hint" }, t(`${NS}.night.per_1000`)),
    h("p", {}, t(`${NS}.night.counts`, {
      count: typeof part?.incidents === "number" ? part.incidents : "–",
      footfall: whole(part?.footfall) })));
}

function renderSummary(data) {
  const ratio = data.rate_ratio_night_vs_day;
  const cards = [
    summaryCard("night-part-night", t(`${NS}.night.night_part`, { window: data.night_window }),
      data.night),
    summaryCard("night-part-day", t(`${NS}.night.day_part`), data.day),
    h("section", { class: "card", id: "night-ratio", "aria-labelledby": "night-ratio-title" },
      h("h3", { class: "card-title", id: "night-ratio-title" }, t(`${NS}.night.ratio`)),
      figure(ratio?.value, ratio?.ci_low, ratio?.ci_high),
      h("p", { class: "hint" }, t(`${NS}.night.ratio_hint`))),
  ];
  const residential = data.residential;
  if (residential && typeof residential === "object") {
    cards.push(h("section", { class: "card", id: "night-residential",
                              "aria-labelledby": "night-residential-title" },
      h("h3", { class: "card-title", id: "night-residential-title" }, t(`${NS}.night.residential`)),
      figure(residential.rate_per_1000, residential.ci_low, residential.ci_high),
      h("p", { class: "hint" }, t(`${NS}.night.residential_hint`, {
        population: whole(residential.population) }))));
  }
  $("night-summary").replaceChildren(...cards);
}

function chartCanvas(root, label) {
  const canvas = h("canvas", { role: "img", "aria-label": label });
  root.replaceChildren(h("div", { class: "event-chart-box" }, canvas));
  return canvas;
}

function renderCharts(data, hours) {
  destroyCharts();
  const Chart = window.Chart;
  const labels = hours.map((row) => String(row.hour).padStart(2, "0"));
  const night = hours.map((row) => isNight(row.hour, data.night_window));
  const hoursCanvas = chartCanvas($("night-chart-hours"), t(`${NS}.night.chart_hours_label`, {
    footfall: whole(hours.reduce((s, r) => s + (r.footfall || 0), 0)),
    incidents: whole(hours.reduce((s, r) => s + (r.incidents || 0), 0)) }));
  const rateCanvas = chartCanvas($("night-chart-rate"), t(`${NS}.night.chart_rate_label`));
  $("night-chart-hours").append(h("p", { class: "hint" }, t(`${NS}.night.dark_bars`)));
  if (!Chart) return;
  const x = { title: { display: true, text: t(`${NS}.night.hour`) } };
  page.charts.push(new Chart(hoursCanvas, {
    data: {
      labels,
      datasets: [
        { type: "bar", label: t(`${NS}.night.footfall`), yAxisID: "y",
          data: hours.map((r) => r.footfall),
          backgroundColor: night.map((n) => (n ? COLOURS.footfallNight : COLOURS.footfall)),
          order: 2 },
        { type: "line", label: t(`${NS}.night.incidents`), yAxisID: "y1",
          data: hours.map((r) => r.incidents), borderColor: COLOURS.incidents,
          backgroundColor: COLOURS.incidents, borderWidth: 2, pointStyle: "rectRot",
          pointRadius: 4, order: 1 },
      ],
    },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom" } },
      scales: {
        x,
        y: { position: "left", beginAtZero: true,
             title: { display: true, text: t(`${NS}.night.footfall`) },
             ticks: { callback: (v) => formatNumber(v) } },
        y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
              title: { display: true, text: t(`${NS}.night.incidents`) },
              ticks: { precision: 0, callback: (v) => formatNumber(v) } },
      },
    },
  }));
  page.charts.push(new Chart(rateCanvas, {
    type: "line",
    data: {
      labels,
      datasets: [
        { label: t(`${NS}.night.ci`), data: hours.map((r) => r.ci_low),
          borderColor: "transparent", backgroundColor: COLOURS.band, pointRadius: 0,
          fill: false, spanGaps: false },
        { label: t(`${NS}.night.ci`), data: hours.map((r) => r.ci_high),
          borderColor: "transparent", backgroundColor: COLOURS.band, pointRadius: 0,
          fill: "-1", spanGaps: false },
        { label: t(`${NS}.night.rate`), data: hours.map((r) => r.rate_per_1000),
          borderColor: COLOURS.rate, backgroundColor: COLOURS.rate, borderWidth: 2,
          spanGaps: false },
      ],
    },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom",
                           labels: { filter: (item) => item.datasetIndex !== 0 } } },
      scales: {
        x,
        y: { beginAtZero: true, title: { display: true, text: t(`${NS}.night.per_1000`) },
             ticks: { callback: (v) => formatNumber(v) } },
      },
    },
  }));
}

function renderTable(data, hours) {
  const table = $("night-table");
  table.replaceChildren(
    h("caption", { class: "visually-hidden" }, t(`${NS}.night.table_title`)),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, t(`${NS}.night.hour`)),
      h("th", { scope: "col" }, t(`${NS}.night.part`)),
      h("th", { scope: "col", class: "number" }, t(`${NS}.night.footfall`)),
      h("th", { scope: "col", class: "number" }, t(`${NS}.night.incidents`)),
      h("th", { scope: "col", class: "number" }, t(`${NS}.night.rate_ci`)))),
    h("tbody", {}, hours.map((row) => h("tr", { dataset: { hour: String(row.hour) } },
      h("th", { scope: "row" }, `${String(row.hour).padStart(2, "0")}:00`),
      h("td", {}, isNight(row.hour, data.night_window) ? t(`${NS}.night.is_night`)
        : t(`${NS}.night.is_day`)),
      h("td", { class: "number" }, whole(row.footfall)),
      h("td", { class: "number" }, whole(row.incidents)),
      h("td", { class: "number" }, withInterval(row.rate_per_1000, row.ci_low, row.ci_high))))));
  const counters = data.counters || [];
  $("night-counters").textContent = counters.length
    ? t(`${NS}.night.counters`, { list: counters.map((c) => t(`${NS}.night.counter_hours`, {
      name: c.name, hours: formatNumber(c.hours ?? 0) })).join(", ") })
    : t(`${NS}.night.no_counters`);
}

function renderCoverage(data) {
  const note = $("night-coverage");
  const coverage = data.footfall_coverage;
  if (coverage === 0 || coverage === null || coverage === undefined) {
    note.textContent = (data.counters || []).length ? t(`${NS}.night.coverage_silent`)
      : t(`${NS}.night.coverage_none`);
    note.hidden = false;
    note.dataset.coverage = "0";
  } else if (coverage < 1) {
    note.textContent = t(`${NS}.night.coverage_part`, {
      share: formatNumber(coverage, { style: "percent", maximumFractionDigits: 1 }) });
    note.hidden = false;
    note.dataset.coverage = String(coverage);
  } else {
    note.hidden = true;
    note.dataset.coverage = "1";
  }
}

/** The first and the last local day of the period (its end is excluded: a period ending at
 * local midnight ends with the day before). */
function periodDays(period) {
  const from = (period?.from_local || "").slice(0, 10);
  const end = period?.to_local || "";
  const to = /T00:00(:00)?/.test(end) ? addDays(end.slice(0, 10), -1) : end.slice(0, 10);
  return { from, to };
}

function render(data) {
  const hours = [...(data.hours || [])].sort((a, b) => a.hour - b.hour);
  const area = data.area || {};
  const days = periodDays(data.period);
  const title = t(`${NS}.night.results_title`, {
    area: area.name && area.name !== area.code ? `${area.name} (${area.code})` : (area.code || ""),
    from: formatDate(days.from), to: formatDate(days.to), timezone: data.timezone || "" });
  const warning = $("night-warning");
  warning.textContent = data.warning ? t(`${NS}.night.no_incident_data`) : "";
  warning.hidden = !data.warning;
  $("night-results-title").textContent = title;
  renderCoverage(data);
  renderSummary(data);
  renderCharts(data, hours);
  renderTable(data, hours);
  $("night-results").hidden = false;
  return title;
}

async function load(state, { focus = false } = {}) {
  const problem = formProblem(state);
  const error = $("night-form-error");
  if (problem) {
    error.textContent = problem;
    error.hidden = false;
    $("night-results").hidden = true;
    $("night-coverage").hidden = true;
    return;
  }
  error.hidden = true;
  $("night-message").hidden = true;
  document.body.dataset.state = "loading";
  $("night-results").setAttribute("aria-busy", "true");
  try {
    const [kind, code] = [state.area.slice(0, state.area.indexOf(":")),
                          state.area.slice(state.area.indexOf(":") + 1)];
    const data = await api("/nighttime", { query: {
      area_kind: kind, area: code, from: state.from, to: state.to, night: state.night,
      category: state.category } });
    const title = render(data);
    announce(title);
    if (focus) focusOn($("night-results-title"));
  } catch (failure) {
    $("night-results").hidden = true;
    $("night-coverage").hidden = true;
    const message = $("night-message");
    message.textContent = errorText(failure, NS, { withDetail: true });
    message.hidden = false;
    if (focus) focusOn(message);
  } finally {
    $("night-results").removeAttribute("aria-busy");
    document.body.dataset.state = "ready";
  }
}

async function start() {
  await initPage({ namespaces: [NS, "partner"], titleKey: `${NS}.night.title` });
  const [config, taxonomy] = await Promise.all([
    api("/dashboard/config").catch((error) => {
      console.warn("urbansec: /dashboard/config failed", error);
      return null;
    }),
    api("/dashboard/taxonomy").catch((error) => {
      console.warn("urbansec: /dashboard/taxonomy failed", error);
      return { categories: [] };
    }),
  ]);
  page.config = config;
  const wanted = readUrl();
  if (!wanted.from || !wanted.to) Object.assign(wanted, defaultPeriod());
  fillCategories(taxonomy, wanted.category);
  await showState(wanted);

  $("night-area-kind").addEventListener("change", () => loadAreas($("night-area-kind").value));
  $("night-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const state = formState();
    writeUrl(state, true);
    load(state, { focus: true });
  });
  window.addEventListener("popstate", async () => {
    const state = readUrl();
    if (!state.from || !state.to) Object.assign(state, defaultPeriod());
    await showState(state);
    load(state);
  });

  const state = formState();
  if (state.area) {
    writeUrl(state, false);
    await load(state);
  } else {
    document.body.dataset.state = "ready";
  }
}

start();
