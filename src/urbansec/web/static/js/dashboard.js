// The map dashboard (`/`): the public safety map when signed out, the analyst's view when
// signed in. One filter drives everything: each change redraws the map and the charts from
// ONE `/dashboard/view` call (debounced, the previous request aborted), then the slower
// panels (significant increases, near-repeat, backtest) load after it.
//
// What the first render needs was asked for as the page began to load
// (`dashboard-early.js`); the page starts (catalogues, who is signed in) while it travels.
//
// `document.body.dataset.state` is "loading" while the view for the current filter is being
// fetched and drawn, "ready" once the map and the charts show it (tests and the benchmark
// wait on it). A panel that fails shows its own inline message; the page never throws.

import { initPage, api, ApiError, t, session, formatNumber, formatDate, announce }
  from "/static/js/core.js";
import { FilterPanel, readState, writeState, apiQuery, emptyState, areaLabel, markCommitted }
  from "/static/js/filters.js";
import { DashboardMap, errorText } from "/static/js/map.js";
import { early, viewQuery, CELL_M, EMPTY_AREAS } from "/static/js/dashboard-early.js";
import { renderHourWeekday, renderMonthly, renderCategories, renderChangeList,
         renderNearRepeat, renderBacktest } from "/static/js/charts.js";

// changes closer together than this (a few boxes ticked in a row) make one request; more
// would be added to every redraw (the previous request is aborted anyway, and views already
// asked come from the server's memory)
const DEBOUNCE_MS = 60;
// the API refuses the Knox test beyond this many located incidents (api/routers/evidence.py)
const MAX_NEAR_REPEAT_EVENTS = 10_000;

const body = document.body;
const byId = (id) => document.getElementById(id);

function setState(value) {
  body.dataset.state = value;
}

function showError(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}

function isAbort(error) {
  return error?.name === "AbortError";
}

function dayBefore(day) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() - 1);
  return date.toISOString().slice(0, 10);
}

function inlineMessage(root, text, kind = "inline-error") {
  const p = document.createElement("p");
  p.className = kind;
  p.textContent = text;
  root.replaceChildren(p);
}

async function start() {
  setState("loading");
  const { lang } = await initPage({ namespaces: ["dashboard"], titleKey: "dashboard.title",
                                    requireRole: null });
  const user = session.user;
  const can = (permission) => session.has(permission);
  const seesDetail = can("incidents:read");
  const analysis = can("analysis:run");
  const forecasting = can("forecast:run");

  const configAnswer = await early.config;
  if (configAnswer.error) {
    console.warn("urbansec: /dashboard/config failed", configAnswer.error);
    showError(byId("page-error"), t("dashboard.errors.config"));
    setState("ready");
    return;
  }
  const config = configAnswer.value;
  const kind = config.default_area_kind;
  const [taxonomyAnswer, areasAnswer] = await Promise.all([early.taxonomy, early.areas]);
  let taxonomy = taxonomyAnswer.value;
  if (taxonomyAnswer.error) {
    console.warn("urbansec: /dashboard/taxonomy failed", taxonomyAnswer.error);
    showError(byId("page-error"), t("dashboard.errors.taxonomy"));
    taxonomy = { categories: [] };
  }
  let areas = areasAnswer.value;
  if (areasAnswer.error) {
    console.warn("urbansec: boundaries failed", areasAnswer.error);
    areas = EMPTY_AREAS;
  }
  const areaNames = new Map((areas.features || []).map(
    (f) => [String(f.properties.code), areaLabel(f.properties)]));

  // -- who sees what -------------------------------------------------------------------------
  if (!seesDetail) {
    const note = byId("privacy-note");
    note.textContent = t("dashboard.privacy.note", { k: config.k_anonymity,
                                                     m: config.public_cell_m });
    note.hidden = false;
  }
  byId("panel-change").hidden = !analysis;
  byId("panel-near-repeat").hidden = !analysis;
  byId("panel-backtest").hidden = !forecasting;
  byId("dashboard-heading").textContent = user ? t("dashboard.headingAnalyst")
    : t("dashboard.heading");
  // the overlays' cells (the view's: CELL_M, which the API coarsens for the public)
  const cell = seesDetail ? CELL_M : Math.max(CELL_M, config.public_cell_m || CELL_M);

  // on a phone the text version of the map would push the filters far down: folded there
  if (window.matchMedia("(max-width: 56rem)").matches) {
    document.querySelector(".map-text").open = false;
  }

  let services = null;
  const serviceNames = () => {
    services = services || api("/open311/v2/services.json")
      .then((list) => new Map((list || []).map((s) => [s.service_code, s.service_name])))
      .catch((error) => {
        console.warn("urbansec: report categories could not be read", error);
        return new Map();
      });
    return services;
  };

  // -- map -----------------------------------------------------------------------------------
  const overlayQuery = (state) => ({ ...apiQuery(state), cell });
  const map = new DashboardMap(byId("map"), {
    config, areas, user, seesDetail,
    legend: byId("map-legend"), summary: byId("map-summary"), layerBox: byId("map-layers"),
    loaders: {
      areas: (other) => api(`/dashboard/areas/${encodeURIComponent(other)}`),
      emerging: (state) => api("/dashboard/emerging", { query: {
        category: state.category.join(","), area: state.area, cell: Math.max(cell, 250),
        time: state.time === "all" ? "" : state.time } }),
      forecast: (state) => api("/dashboard/forecast", { query: {
        category: state.category.join(","), area: state.area, cell, model: "sepp",
        horizon: "7d", top: 0.05 } }),
      reports: async (state) => {
        const data = await api("/dashboard/reports", { query: {
          category: state.category.join(","), from: state.from, to: state.to } });
        if (!data.aggregated && data.features?.length) {
          // points carry the service code: name it as the report form does (Open311)
          const names = await serviceNames();
          for (const feature of data.features) {
            const p = feature.properties || {};
            p.category_name = names.get(p.category) || p.category;
          }
        }
        return data;
      },
      risks: () => api("/dashboard/risks"),
    },
    onOverlayError: (overlay, error) => console.warn(`urbansec: layer ${overlay.id} failed`,
                                                     error),
  });

  // -- the view ------------------------------------------------------------------------------
  let timer = null;
  let controller = null;
  let generation = 0;
  let filters = null;

  function requestView(state, { immediate = false } = {}) {
    setState("loading");
    byId("view-busy").hidden = false;
    window.clearTimeout(timer);
    timer = window.setTimeout(() => loadView(state), immediate ? 0 : DEBOUNCE_MS);
  }

  async function loadView(state) {
    controller?.abort();
    controller = new AbortController();
    const mine = ++generation;
    const signal = controller.signal;
    const query = viewQuery(state);
    // the view asked for as the page loaded, when it is still the one wanted
    const prefetched = early.view?.key === JSON.stringify(query) ? early.view.answer : null;
    early.view = null;
    let view;
    try {
      if (prefetched) {
        const answer = await prefetched;
        if (answer.error) throw answer.error;
        view = answer.value;
      } else {
        view = await api("/dashboard/view", { query, signal });
      }
    } catch (error) {
      if (isAbort(error) || mine !== generation) return;
      console.warn("urbansec: /dashboard/view failed", error);
      showError(byId("view-error"), errorText(error));
      byId("view-busy").hidden = true;
      setState("ready");
      return;
    }
    if (mine !== generation) return;
    showError(byId("view-error"), "");
    drawView(view, state);
    await nextFrame(); // Leaflet paints the canvas on the next frame
    if (mine !== generation) return;
    byId("view-busy").hidden = true;
    setState("ready");
    announce(t("dashboard.announce.updated", {
      count: view.total ?? 0, total: formatNumber(view.total) }));
    // the slower parts, after the map and charts are up
    map.setFilter(state);
    loadPanels(state, view, mine);
  }

  function drawView(view, state) {
    const total = byId("view-total");
    total.textContent = view.total === null || view.total === undefined
      ? t("dashboard.total.suppressed", { k: view.k ?? config.k_anonymity })
      : formatNumber(view.total);
    total.dataset.value = view.total ?? "";
    byId("view-total-label").textContent = t("dashboard.total.label",
                                             { count: view.total ?? 0 });
    const detail = [];
    if (view.period?.from && view.period?.to) {
      // the API's `to` is exclusive: the day before it is the last one shown
      detail.push(t("dashboard.total.period", { from: formatDate(view.period.from),
                                                to: formatDate(dayBefore(view.period.to)) }));
    }
    if (typeof view.located === "number" && typeof view.total === "number" && view.total) {
      detail.push(t("dashboard.total.located", {
        share: formatNumber(view.located / view.total, { style: "percent",
                                                         maximumFractionDigits: 1 }) }));
    }
    if (filters) detail.push(filters.describe());
    byId("view-detail").textContent = detail.length ? `· ${detail.join(" · ")}` : "";
    map.setView(view);
    renderHourWeekday(byId("chart-hour-weekday"), view.hour_weekday, { lang });
    renderMonthly(byId("chart-monthly"), view.monthly, { lang });
    renderCategories(byId("chart-categories"), view.categories);
    for (const id of ["change-list", "near-repeat-table"]) {
      if (analysis) byId(id).setAttribute("aria-busy", "true");
    }
    if (state.layer !== (view.cells?.layer || state.layer)) {
      console.warn("urbansec: the view answered another layer", view.cells?.layer);
    }
  }

  // -- slower panels -------------------------------------------------------------------------
  let backtestKey = null;

  // `current()` says whether the answer still belongs to what the page shows
  async function panel(id, load, render, current) {
    const root = byId(id);
    root.setAttribute("aria-busy", "true");
    if (!root.childElementCount) inlineMessage(root, t("dashboard.loading"), "muted");
    try {
      const data = await load();
      if (!current()) return;
      render(root, data);
    } catch (error) {
      if (!current() || isAbort(error)) return;
      console.warn(`urbansec: ${id} failed`, error);
      inlineMessage(root, panelError(id, error));
    } finally {
      if (current()) root.removeAttribute("aria-busy");
    }
  }

  function panelError(id, error) {
    if (id === "near-repeat-table" && error instanceof ApiError && error.status === 400
        && /narrow the filter/i.test(error.message)) {
      return t("dashboard.nearRepeat.tooMany", { message: error.message });
    }
    return errorText(error);
  }

  function loadPanels(state, view, mine) {
    const query = apiQuery(state);
    const current = () => mine === generation;
    if (analysis) {
      const change = (baseline) => api("/change", { query: {
        category: query.category, from: query.from, to: query.to, area: query.area,
        by: kind || undefined, baseline, limit: 200 } });
      // a period that starts before the data would count as zero what was never recorded
      // (the API refuses it): choose a baseline inside the data before asking. The periods
      // are the API's: "to" is a whole day; without "from", the last 28 days of data.
      const baselineInsideData = () => {
        if (!config.period) return null;
        const day = (iso, offset = 0) => {
          const d = new Date(`${iso.slice(0, 10)}T00:00:00Z`);
          d.setUTCDate(d.getUTCDate() + offset);
          return d;
        };
        const first = day(config.period.first);
        const end = query.to ? day(query.to, 1) : day(config.period.last, 1);
        const start = query.from ? day(query.from) : day(end.toISOString(), -28);
        if (start < first || end <= start) return null;
        const yearBefore = new Date(start);
        yearBefore.setUTCFullYear(yearBefore.getUTCFullYear() - 1);
        if (yearBefore >= first) return "last-year";
        if (new Date(start.getTime() - (end - start)) >= first) return "previous";
        return null;
      };
      panel("change-list", async () => {
        const baseline = baselineInsideData();
        if (!baseline) return { uncovered: true };
        const result = await change(baseline);
        return baseline === "previous" ? { ...result, fallback: true } : result;
      },
      (root, data) => renderChangeList(root, data, {
        areaName: (code) => areaNames.get(String(code)) || String(code) }), current);
      const located = typeof view.located === "number" ? view.located : view.total;
      if (typeof located === "number" && located > MAX_NEAR_REPEAT_EVENTS) {
        const root = byId("near-repeat-table");
        root.removeAttribute("aria-busy");
        inlineMessage(root, t("dashboard.nearRepeat.tooManyCount", {
          count: located, max: MAX_NEAR_REPEAT_EVENTS }), "inline-note");
      } else {
        panel("near-repeat-table", () => api("/near-repeat", { query: {
          category: query.category, from: query.from, to: query.to, area: query.area,
          space_bands: "100,200,400", time_bands: "7,14,30", permutations: 99 } }),
        renderNearRepeat, current);
      }
    }
    if (forecasting) {
      const key = JSON.stringify([query.category, query.area]);
      if (key !== backtestKey) {
        backtestKey = key;
        // the backtest ignores the period and the time of day: only category and area
        panel("chart-backtest", () => api("/dashboard/backtest", { query: {
          category: query.category, area: query.area, horizon: "7d" } }),
        renderBacktest, () => backtestKey === key);
      }
    }
  }

  // -- filters -------------------------------------------------------------------------------
  const initial = readState();
  filters = new FilterPanel(byId("filter-form"), {
    config, taxonomy, areas, state: initial,
    onChange: (state, { push, immediate }) => {
      writeState(state, { push });
      requestView(state, { immediate });
    },
  });
  byId("filter-reset").addEventListener("click", () => {
    const state = emptyState();
    filters.show(state);
    writeState(state, { push: true });
    requestView(state, { immediate: true });
  });
  window.addEventListener("popstate", () => {
    markCommitted();
    const state = readState();
    filters.show(state);
    requestView(state, { immediate: true });
  });
  // the filter may have dropped unknown codes or areas: the URL says what is shown
  markCommitted();
  writeState(filters.current());
  markCommitted();
  requestView(filters.current(), { immediate: true });
}

start().catch((error) => {
  console.warn("urbansec: the dashboard could not start", error);
  const element = byId("page-error");
  if (element) showError(element, t("dashboard.errors.failed"));
  setState("ready");
});
