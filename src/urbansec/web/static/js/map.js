// The Leaflet map: imported boundaries as the base, hotspot cells (canvas), and optional
// layers (emerging hot spots, forecast risk, citizen reports, other boundaries, risk register)
// that are fetched only when switched on. Every layer also has a text alternative in
// `#map-summary` (counts and a "top cells" table) and a legend in `#map-legend`.
//
// Leaflet is the classic script `/static/vendor/leaflet/leaflet.js` (global `L`).

import { t, formatNumber, formatDate, h } from "/static/js/core.js";
import { areaLabel } from "/static/js/filters.js";
import { cellLayer, expandCells } from "/static/js/grid.js";

const L = window.L;

// ColorBrewer YlOrRd (counts, KDE), RdBu (Gi*), as in the CLI's PNG maps
export const SEQUENTIAL = { q1: "#ffffb2", q2: "#fecc5c", q3: "#fd8d3c", q4: "#f03b20",
                            q5: "#bd0026" };
export const GI_COLOURS = { "hot-99": "#b2182b", "hot-95": "#ef8a62", "hot-90": "#fddbc7",
                            ns: "#f7f7f7", "cold-90": "#d1e5f0", "cold-95": "#67a9cf",
                            "cold-99": "#2166ac" };
const GI_ORDER = ["hot-99", "hot-95", "hot-90", "ns", "cold-90", "cold-95", "cold-99"];
const SUPPRESSED_COLOUR = "#bdbdbd";
const EMERGING_ORDER = ["new", "consecutive", "intensifying", "persistent", "diminishing",
                        "sporadic", "oscillating", "historical"];
const EMERGING_HOT = { new: "#67000d", consecutive: "#a50f15", intensifying: "#cb181d",
                       persistent: "#ef3b2c", diminishing: "#fb6a4a", sporadic: "#fc9272",
                       oscillating: "#fcbba1", historical: "#fee0d2" };
const EMERGING_COLD = { new: "#08306b", consecutive: "#08519c", intensifying: "#2171b5",
                        persistent: "#4292c6", diminishing: "#6baed6", sporadic: "#9ecae1",
                        oscillating: "#c6dbef", historical: "#deebf7" };
const FORECAST = ["#f2f0f7", "#cbc9e2", "#9e9ac8", "#756bb1", "#54278f"];
const RISK_LEVELS = { low: "#1a9850", medium: "#fee08b", high: "#fc8d59", critical: "#d73027" };
const REPORT_COLOUR = "#00796b";
const TOP_N = 10;

function swatch(colour, { outline = false } = {}) {
  const box = h("span", { class: `swatch${outline ? " swatch-outline" : ""}`,
                           "aria-hidden": "true" });
  box.style.background = colour;
  return box;
}

function ringCentroid(geometry) {
  const ring = geometry.type === "Polygon" ? geometry.coordinates[0]
    : geometry.type === "MultiPolygon" ? geometry.coordinates[0][0]
      : geometry.type === "Point" ? [geometry.coordinates] : [];
  if (!ring.length) return null;
  const points = ring.length > 1 ? ring.slice(0, -1) : ring;
  const lon = points.reduce((s, p) => s + p[0], 0) / points.length;
  const lat = points.reduce((s, p) => s + p[1], 0) / points.length;
  return [lon, lat];
}

function inRing(point, ring) {
  let inside = false;
  const [x, y] = point;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function inPolygon(point, geometry) {
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
    : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
  return polygons.some((rings) => inRing(point, rings[0])
    && !rings.slice(1).some((hole) => inRing(point, hole)));
}

function cellValue(value, digits = 0) {
  if (value === null || value === undefined) return null;
  return formatNumber(digits ? Math.round(value * 10 ** digits) / 10 ** digits : value);
}

/** Leaflet map with the dashboard's layers. */
export class DashboardMap {
  constructor(container, { config, areas, user, seesDetail, legend, summary, layerBox,
                           loaders, onOverlayError }) {
    this.config = config;
    this.areas = areas;
    this.user = user;
    this.seesDetail = seesDetail;
    this.legendEl = legend;
    this.summaryEl = summary;
    this.loaders = loaders;
    this.onOverlayError = onOverlayError;
    this.renderer = L.canvas({ padding: 0.2 });
    this.map = L.map(container, { renderer: this.renderer, preferCanvas: true,
                                  keyboard: true, zoomSnap: 0.25, attributionControl: true,
                                  minZoom: 3, maxZoom: 19 });
    this.map.attributionControl.setPrefix("Leaflet");
    container.setAttribute("aria-label", t("dashboard.map.label"));
    container.setAttribute("aria-describedby", "map-help map-summary");
    container.setAttribute("role", "region");
    // boundaries above the cells, never in the way of a cell's tooltip
    this.map.createPane("boundaries").style.zIndex = 450;
    this.map.getPane("boundaries").style.pointerEvents = "none";
    if (config.tile_url) {
      L.tileLayer(config.tile_url, { attribution: config.tile_attribution || "",
                                     maxZoom: 19 }).addTo(this.map);
    } else {
      container.classList.add("no-tiles");
    }
    this.fit();
    // the layout may change the map's size (panel contents, window): keep Leaflet in step
    if (window.ResizeObserver) {
      new ResizeObserver(() => this.map.invalidateSize({ pan: false })).observe(container);
    }
    this.hotspots = null;
    this.cells = [];
    this.showHotspots = true;
    this.view = null;
    this.state = null;
    this.overlays = this.defineOverlays();
    this.buildLayerBox(layerBox);
    for (const overlay of this.overlays) {
      if (overlay.initial) this.toggle(overlay, true);
    }
  }

  fit() {
    const b = this.config.bounds;
    if (Array.isArray(b) && b.length === 4) {
      this.map.fitBounds([[b[1], b[0]], [b[3], b[2]]], { padding: [8, 8] });
    } else if (this.areas?.features?.length) {
      this.map.fitBounds(L.geoJSON(this.areas).getBounds(), { padding: [8, 8] });
    } else {
      this.map.setView([0, 0], 3);
    }
  }

  /** Zoom to the chosen area ("KIND:CODE"), or back to the whole data when none. */
  zoomToArea(area) {
    const code = area ? area.slice(area.indexOf(":") + 1) : null;
    const feature = code && (this.areas?.features || []).find(
      (f) => String(f.properties.code) === code);
    if (feature) this.map.fitBounds(L.geoJSON(feature).getBounds(), { padding: [12, 12] });
    else this.fit();
  }

  /** The name of the boundary polygon (default kind) that holds a point, or null. */
  areaAt(point) {
    if (!point) return null;
    for (const feature of this.areas?.features || []) {
      if (feature.geometry && inPolygon(point, feature.geometry)) {
        return areaLabel(feature.properties);
      }
    }
    return null;
  }

  locate(feature) {
    // a hotspot cell (grid.js) has its corners as [lat, lon]; other layers are GeoJSON
    const centroid = feature.corners
      ? [feature.corners.reduce((s, p) => s + p[1], 0) / feature.corners.length,
         feature.corners.reduce((s, p) => s + p[0], 0) / feature.corners.length]
      : ringCentroid(feature.geometry);
    const area = this.areaAt(centroid);
    const where = centroid
      ? t("dashboard.map.near", { lat: centroid[1].toFixed(4), lon: centroid[0].toFixed(4) })
      : "";
    return area ? `${area}, ${where}` : where;
  }

  // ---- optional layers ---------------------------------------------------------------------

  defineOverlays() {
    const kind = this.config.default_area_kind;
    const overlays = [{
      id: "boundaries", label: kind ? kindName(kind) : t("dashboard.layers.boundaries"),
      initial: true, static: true,
      load: async () => this.areas,
      render: (data) => this.boundaryLayer(data, "#1f2933", 2),
      describe: (data) => this.describeBoundaries(data, kind),
      legend: () => h("li", {}, swatch("transparent", { outline: true }),
                       kind ? kindName(kind) : t("dashboard.layers.boundaries")),
    }];
    for (const other of this.config.area_kinds || []) {
      // kinds known only from the incidents' area codes have no polygons to draw (asking
      // for them would be a 404): only kinds the config marks as having boundaries
      if (other.kind === kind || !other.count || other.boundaries !== true) continue;
      overlays.push({
        id: `areas-${other.kind}`, label: kindName(other.kind), static: true,
        load: () => this.loaders.areas(other.kind),
        render: (data) => this.boundaryLayer(data, "#52606d", 1, "4 3"),
        describe: (data) => this.describeBoundaries(data, other.kind),
        legend: () => h("li", {}, swatch("transparent", { outline: true }),
                         kindName(other.kind)),
      });
    }
    if (this.seesDetail) {
      overlays.push({
        id: "emerging", label: t("dashboard.layers.emerging"),
        keyOf: (state) => [state.category, state.area, state.time],
        load: (state) => this.loaders.emerging(state),
        render: (data) => this.emergingLayer(data),
        describe: (data) => this.describeEmerging(data),
        legend: (data) => this.emergingLegend(data),
      }, {
        id: "forecast", label: t("dashboard.layers.forecast"),
        keyOf: (state) => [state.category, state.area],
        load: (state) => this.loaders.forecast(state),
        render: (data) => this.forecastLayer(data),
        describe: (data) => this.describeForecast(data),
        legend: (data) => this.forecastLegend(data),
      });
    }
    overlays.push({
      id: "reports", label: t("dashboard.layers.reports"),
      keyOf: (state) => [state.category, state.from, state.to],
      load: (state) => this.loaders.reports(state),
      render: (data) => this.reportsLayer(data),
      describe: (data) => this.describeReports(data),
      legend: (data) => (data.aggregated
        ? h("li", {}, swatch(REPORT_COLOUR), t("dashboard.legend.reportCells"))
        : h("li", {}, swatch(REPORT_COLOUR), t("dashboard.legend.reportPoints"))),
    });
    if (this.user) {
      overlays.push({
        id: "risks", label: t("dashboard.layers.risks"), static: true,
        load: () => this.loaders.risks(),
        render: (data) => this.risksLayer(data),
        describe: (data) => this.describeRisks(data),
        legend: () => h("li", { class: "legend-row" }, ...Object.entries(RISK_LEVELS).map(
          ([level, colour]) => h("span", { class: "legend-item" }, swatch(colour),
                                  t(`dashboard.riskLevels.${level}`)))),
      });
    }
    for (const overlay of overlays) {
      Object.assign(overlay, { on: false, layer: null, data: null, key: null, pending: null,
                               error: null });
    }
    return overlays;
  }

  buildLayerBox(box) {
    const list = h("ul", { class: "layer-list" });
    const hotspots = h("input", { type: "checkbox", id: "layer-hotspots", value: "hotspots",
                                   checked: true });
    hotspots.addEventListener("change", () => {
      this.showHotspots = hotspots.checked;
      if (this.hotspots && hotspots.checked) this.hotspots.addTo(this.map).bringToBack();
      else if (this.hotspots) this.map.removeLayer(this.hotspots);
      this.refreshText();
    });
    list.append(h("li", {}, hotspots,
                   h("label", { for: "layer-hotspots", text: t("dashboard.layers.hotspots") })));
    for (const overlay of this.overlays) {
      const input = h("input", { type: "checkbox", id: `layer-${overlay.id}`,
                                  value: overlay.id, checked: overlay.initial });
      input.addEventListener("change", () => this.toggle(overlay, input.checked));
      overlay.input = input;
      list.append(h("li", {}, input, h("label", { for: input.id, text: overlay.label })));
    }
    box.append(list);
  }

  async toggle(overlay, on) {
    overlay.on = on;
    if (overlay.input) overlay.input.checked = on;
    if (!on) {
      if (overlay.layer) this.map.removeLayer(overlay.layer);
      this.refreshText();
      return;
    }
    await this.loadOverlay(overlay);
  }

  /** Fetch (when the filter changed since the last fetch) and show one overlay. */
  async loadOverlay(overlay) {
    // an overlay is fetched again only when a filter it depends on changed
    const key = overlay.static ? "static"
      : JSON.stringify(overlay.keyOf ? overlay.keyOf(this.state || {}) : this.state);
    if (overlay.key === key && (overlay.data || overlay.error)) {
      if (overlay.on && overlay.layer && !this.map.hasLayer(overlay.layer)) {
        overlay.layer.addTo(this.map);
      }
      this.refreshText();
      return;
    }
    if (!overlay.static && !this.state) return;
    overlay.key = key;
    overlay.error = null;
    overlay.loading = true;
    this.refreshText();
    let data;
    try {
      data = await overlay.load(this.state);
    } catch (error) {
      if (overlay.key !== key) return;
      overlay.loading = false;
      overlay.error = error;
      overlay.data = null;
      if (overlay.static && error?.status === 404 && overlay.input) {
        overlay.input.checked = false;
        overlay.input.disabled = true;
        overlay.on = false;
      }
      if (overlay.layer) this.map.removeLayer(overlay.layer);
      overlay.layer = null;
      this.onOverlayError?.(overlay, error);
      this.refreshText();
      return;
    }
    if (overlay.key !== key) return; // the filter changed while this was loading
    overlay.loading = false;
    if (overlay.layer) this.map.removeLayer(overlay.layer);
    overlay.data = data;
    overlay.layer = overlay.render(data);
    if (overlay.on) {
      overlay.layer.addTo(this.map);
      if (overlay.id.startsWith("areas") || overlay.id === "boundaries") {
        overlay.layer.bringToFront?.();
      }
    }
    this.refreshText();
  }

  /** The filter changed: reload the optional layers that are switched on. */
  setFilter(state) {
    if (this.state?.area !== state.area && (this.state || state.area)) this.zoomToArea(state.area);
    this.state = state;
    return Promise.all(this.overlays.filter((o) => o.on && !o.static)
      .map((o) => this.loadOverlay(o)));
  }

  // ---- hotspot cells -------------------------------------------------------------------------

  /** Draw the hotspot cells of a `/dashboard/view` answer (its compact grid: grid.js). */
  setView(view) {
    this.view = view;
    const layerKind = view.cells?.layer || "count";
    this.cells = expandCells(view.cells);
    const next = cellLayer(L, this.cells, {
      style: (cell) => this.cellStyle(cell, layerKind),
      tooltip: (cell) => this.cellText(cell, layerKind),
    });
    if (this.hotspots) this.map.removeLayer(this.hotspots);
    this.hotspots = next;
    if (this.showHotspots) this.hotspots.addTo(this.map).bringToBack();
    this.refreshText();
  }

  cellStyle(feature, layerKind) {
    const p = feature.properties || {};
    if (layerKind === "gi") {
      const colour = GI_COLOURS[p.class] || SUPPRESSED_COLOUR;
      const ns = !p.class || p.class === "ns";
      return { stroke: !ns, color: "#ffffff", weight: 0.5, fillColor: colour,
               fillOpacity: ns ? 0.15 : 0.8 };
    }
    if (p.value === null || p.value === undefined) {
      return { stroke: false, fillColor: SUPPRESSED_COLOUR, fillOpacity: 0.45 };
    }
    if (!p.value) return { stroke: false, fillOpacity: 0, fill: false };
    return { stroke: true, color: "#ffffff", weight: 0.3,
             fillColor: SEQUENTIAL[p.class] || SEQUENTIAL.q1, fillOpacity: 0.75 };
  }

  valueText(value, layerKind) {
    const k = this.view?.k;
    if (value === null || value === undefined) {
      return k ? t("dashboard.map.suppressed", { k: formatNumber(k) })
        : t("dashboard.map.noValue");
    }
    if (layerKind === "kde") return t("dashboard.map.density", { value: cellValue(value, 1) });
    if (layerKind === "gi") return t("dashboard.map.z", { value: cellValue(value, 2) });
    return t("dashboard.map.count", { count: value });
  }

  cellText(feature, layerKind) {
    const p = feature.properties || {};
    const parts = [];
    if (layerKind === "gi") {
      parts.push(t(`dashboard.gi.${GI_COLOURS[p.class] ? p.class : "ns"}`));
      // the public get the class only (no z-score)
      if (typeof p.value === "number") parts.push(this.valueText(p.value, layerKind));
    } else {
      parts.push(this.valueText(p.value, layerKind));
    }
    return parts.join(" · ");
  }

  // ---- optional layer renderers ----------------------------------------------------------------

  boundaryLayer(data, colour, weight, dashArray) {
    return L.geoJSON(data, {
      pane: "boundaries", interactive: false,
      style: { color: colour, weight, fill: false, dashArray, opacity: 0.9 },
    });
  }

  emergingPattern(properties) {
    // the pattern name, and whether it is a hot or a cold one ("new_hot", or "new" + hot)
    const raw = String(properties.pattern ?? properties.category ?? "none");
    let [pattern, side] = raw.split(/[_ ]/);
    if (properties.hot === false || properties.kind === "cold" || properties.type === "cold") {
      side = "cold";
    }
    if (!side) side = properties.kind || properties.type || "hot";
    if (!EMERGING_ORDER.includes(pattern)) pattern = "none";
    return { pattern, side: side === "cold" ? "cold" : "hot" };
  }

  emergingLayer(data) {
    return L.geoJSON(data, {
      renderer: this.renderer,
      filter: (feature) => this.emergingPattern(feature.properties || {}).pattern !== "none",
      style: (feature) => {
        const { pattern, side } = this.emergingPattern(feature.properties || {});
        const colour = (side === "cold" ? EMERGING_COLD : EMERGING_HOT)[pattern];
        return { color: "#1f2933", weight: 1, fillColor: colour, fillOpacity: 0.75 };
      },
      onEachFeature: (feature, layer) => layer.bindTooltip(() => {
        const { pattern, side } = this.emergingPattern(feature.properties || {});
        return t(`dashboard.emerging.${side}`, {
          pattern: t(`dashboard.emerging.patterns.${pattern}`) });
      }, { sticky: true }),
    });
  }

  emergingCounts(data) {
    const counts = new Map();
    for (const feature of data.features || []) {
      const { pattern, side } = this.emergingPattern(feature.properties || {});
      if (pattern === "none") continue;
      const key = `${side}:${pattern}`;
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    return counts;
  }

  emergingLegend(data) {
    const counts = this.emergingCounts(data);
    const items = [];
    for (const side of ["hot", "cold"]) {
      for (const pattern of EMERGING_ORDER) {
        if (!counts.has(`${side}:${pattern}`)) continue;
        items.push(h("li", {}, swatch((side === "cold" ? EMERGING_COLD : EMERGING_HOT)[pattern]),
          t(`dashboard.emerging.${side}`, { pattern: t(`dashboard.emerging.patterns.${pattern}`) })));
      }
    }
    if (!items.length) items.push(h("li", { text: t("dashboard.emerging.nothing") }));
    return items;
  }

  forecastBreaks(data) {
    const risks = (data.features || []).map((f) => f.properties?.risk)
      .filter((r) => typeof r === "number" && r > 0).sort((a, b) => a - b);
    if (!risks.length) return [];
    return [0.2, 0.4, 0.6, 0.8].map((q) => risks[Math.min(risks.length - 1,
      Math.floor(q * risks.length))]);
  }

  forecastClass(risk, breaks) {
    let i = 0;
    while (i < breaks.length && risk > breaks[i]) i += 1;
    return i;
  }

  forecastLayer(data) {
    const breaks = this.forecastBreaks(data);
    data.breaks = breaks;
    return L.geoJSON(data, {
      renderer: this.renderer,
      filter: (feature) => (feature.properties?.risk || 0) > 0 || feature.properties?.top,
      style: (feature) => {
        const p = feature.properties || {};
        return { fillColor: FORECAST[this.forecastClass(p.risk || 0, breaks)],
                 fillOpacity: 0.7, color: p.top ? "#000000" : "#ffffff",
                 weight: p.top ? 2.5 : 0.3 };
      },
      onEachFeature: (feature, layer) => layer.bindTooltip(() => {
        const p = feature.properties || {};
        const text = t("dashboard.forecast.cell", { rank: formatNumber(p.rank),
                                                     risk: formatRisk(p.risk) });
        return p.top ? `${text} · ${t("dashboard.forecast.topCell")}` : text;
      }, { sticky: true }),
    });
  }

  forecastLegend(data) {
    const meta = data.urbansec || {};
    const top = typeof meta.top === "number" ? meta.top : 0.05;
    return [
      h("li", { class: "legend-row" }, h("span", { text: t("dashboard.legend.low") }),
         ...FORECAST.map((c) => swatch(c)), h("span", { text: t("dashboard.legend.high") })),
      h("li", {}, swatch("transparent", { outline: true }),
         t("dashboard.forecast.topOutlined", { percent: formatNumber(top * 100) })),
    ];
  }

  reportsLayer(data) {
    if (data.aggregated) {
      return L.geoJSON(data, {
        renderer: this.renderer,
        style: (feature) => {
          const v = feature.properties?.value;
          return { color: REPORT_COLOUR, weight: 1.5, fillColor: v === null ? SUPPRESSED_COLOUR
            : REPORT_COLOUR, fillOpacity: v === null ? 0.3 : 0.45, dashArray: "3 2" };
        },
        onEachFeature: (feature, layer) => layer.bindTooltip(() => {
          const v = feature.properties?.value;
          return v === null || v === undefined
            ? t("dashboard.map.suppressed", { k: formatNumber(this.config.k_anonymity) })
            : t("dashboard.reports.cell", { count: v });
        }, { sticky: true }),
      });
    }
    return L.geoJSON(data, {
      pointToLayer: (_feature, latlng) => L.circleMarker(latlng, {
        renderer: this.renderer, radius: 6, color: "#ffffff", weight: 1.5,
        fillColor: REPORT_COLOUR, fillOpacity: 0.9 }),
      onEachFeature: (feature, layer) => layer.bindPopup(() => this.reportPopup(feature)),
    });
  }

  reportPopup(feature) {
    const p = feature.properties || {};
    return h("div", { class: "popup" },
      h("strong", { text: p.category_name || p.category || "" }),
      h("br"), t("dashboard.reports.status", {
        status: statusName("report_status", p.status) }),
      h("br"), p.created_at ? formatDate(p.created_at, { time: true }) : "",
      h("br"), h("span", { class: "muted", text: p.public_id || "" }));
  }

  risksLayer(data) {
    return L.geoJSON(data, {
      style: (feature) => ({ color: RISK_LEVELS[feature.properties?.level] || "#555555",
                             weight: 3, dashArray: "6 4", fillOpacity: 0.12,
                             fillColor: RISK_LEVELS[feature.properties?.level] || "#555555" }),
      pointToLayer: (_feature, latlng) => L.circleMarker(latlng, { radius: 8 }),
      onEachFeature: (feature, layer) => layer.bindPopup(() => {
        const p = feature.properties || {};
        return h("div", { class: "popup" }, h("strong", { text: p.title || "" }), h("br"),
          t("dashboard.risks.line", { level: t(`dashboard.riskLevels.${p.level}`),
                                      status: statusName("risk_status", p.status) }),
          p.owner ? h("br") : null, p.owner ? String(p.owner) : null);
      }),
    });
  }

  // ---- legend and text alternatives -----------------------------------------------------------

  refreshText() {
    this.renderLegend();
    this.renderSummary();
  }

  hotspotLegend() {
    const cells = this.view?.cells;
    if (!cells) return [];
    const layerKind = cells.layer || "count";
    const items = [];
    if (layerKind === "gi") {
      const present = new Set(this.cells.map((f) => f.properties.class));
      for (const cls of GI_ORDER) {
        if (cls !== "ns" && !present.has(cls)) continue;
        items.push(h("li", {}, swatch(GI_COLOURS[cls]), t(`dashboard.gi.${cls}`)));
      }
    } else {
      // the suppressed class gets its own (translated) entry below
      for (const entry of (cells.legend || []).filter((e) => e.class !== "suppressed")) {
        const digits = layerKind === "kde" ? 1 : 0;
        const range = entry.min !== undefined && entry.max !== undefined
          && entry.min !== null && entry.max !== null
          ? (entry.min === entry.max ? cellValue(entry.min, digits)
            : `${cellValue(entry.min, digits)}–${cellValue(entry.max, digits)}`)
          : entry.label;
        items.push(h("li", {}, swatch(SEQUENTIAL[entry.class] || SEQUENTIAL.q1), range));
      }
    }
    if (this.cells.some((f) => f.properties.value === null) && layerKind !== "gi") {
      items.push(h("li", {}, swatch(SUPPRESSED_COLOUR),
                    t("dashboard.map.suppressed", { k: formatNumber(this.view.k ?? "") })));
    }
    return items;
  }

  renderLegend() {
    const root = this.legendEl;
    const sections = [];
    const layerKind = this.view?.cells?.layer || "count";
    const hotspotTitle = t(`dashboard.legend.${layerKind}`,
                           { cell: formatNumber(this.view?.cells?.cell_m ?? "") });
    if (this.showHotspots) {
      sections.push(h("section", {}, h("h3", { text: hotspotTitle }),
                       h("ul", {}, ...this.hotspotLegend())));
    }
    for (const overlay of this.overlays) {
      if (!overlay.on || overlay.id === "boundaries") continue;
      const title = h("h3", { text: overlay.label });
      if (overlay.loading) {
        sections.push(h("section", {}, title, h("p", { text: t("dashboard.loading") })));
      } else if (overlay.data) {
        const items = overlay.legend(overlay.data);
        sections.push(h("section", {}, title,
                         h("ul", {}, ...(Array.isArray(items) ? items : [items]))));
      }
    }
    root.replaceChildren(...sections);
  }

  renderSummary() {
    const root = this.summaryEl;
    const sections = [];
    if (this.view && this.showHotspots) sections.push(this.describeHotspots());
    for (const overlay of this.overlays) {
      if (!overlay.on) continue;
      const section = h("section", { class: "layer-summary", "data-layer": overlay.id },
                         h("h3", { text: overlay.label }));
      if (overlay.loading) {
        section.setAttribute("aria-busy", "true");
        section.append(h("p", { text: t("dashboard.loading") }));
      } else if (overlay.error) {
        section.append(h("p", { class: "inline-error", role: "status",
                                 text: errorText(overlay.error) }));
      } else if (overlay.data) {
        section.append(...[].concat(overlay.describe(overlay.data)));
      }
      sections.push(section);
    }
    root.replaceChildren(...sections);
  }

  describeHotspots() {
    const cells = this.view.cells || {};
    const layerKind = cells.layer || "count";
    const features = this.cells || [];
    const section = h("section", { class: "layer-summary", "data-layer": "hotspots" },
                       h("h3", { text: t("dashboard.layers.hotspots") }));
    const withValue = features.filter((f) => typeof f.properties?.value === "number");
    const nonZero = layerKind === "gi" ? withValue : withValue.filter((f) => f.properties.value);
    section.append(h("p", { text: t(`dashboard.summary.${layerKind}`, {
      cells: formatNumber(nonZero.length), all: formatNumber(features.length),
      cell: formatNumber(cells.cell_m ?? "") }) }));
    if (layerKind === "gi") {
      const counts = new Map();
      for (const f of features) {
        const cls = f.properties?.class || "ns";
        counts.set(cls, (counts.get(cls) || 0) + 1);
      }
      section.append(h("ul", {}, ...GI_ORDER.filter((c) => counts.has(c)).map(
        (c) => h("li", { text: `${t(`dashboard.gi.${c}`)}: ${formatNumber(counts.get(c))}` }))));
    }
    const top = [...nonZero].sort((a, b) => b.properties.value - a.properties.value)
      .slice(0, TOP_N);
    if (top.length) {
      section.append(this.topTable(top, t("dashboard.summary.topCells", { n: top.length }),
        (f) => this.valueText(f.properties.value, layerKind)));
    }
    return section;
  }

  topTable(features, caption, valueOf) {
    const body = h("tbody");
    features.forEach((feature, i) => {
      body.append(h("tr", {}, h("td", { text: formatNumber(i + 1) }),
                     h("td", { text: this.locate(feature) }),
                     h("td", { text: valueOf(feature) })));
    });
    return h("table", { class: "data-table compact" }, h("caption", { text: caption }),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: t("dashboard.summary.rank") }),
        h("th", { scope: "col", text: t("dashboard.summary.where") }),
        h("th", { scope: "col", text: t("dashboard.summary.value") }))),
      body);
  }

  describeBoundaries(data, kind) {
    const names = (data.features || []).map((f) => areaLabel(f.properties))
      .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    return [h("p", { text: t("dashboard.summary.boundaries", {
      count: formatNumber(names.length), kind: kindName(kind) }) }),
    names.length <= 40 ? h("p", { class: "muted", text: names.join(", ") }) : null]
      .filter(Boolean);
  }

  describeEmerging(data) {
    const counts = this.emergingCounts(data);
    if (!counts.size) return h("p", { text: t("dashboard.emerging.nothing") });
    const items = [];
    for (const side of ["hot", "cold"]) {
      for (const pattern of EMERGING_ORDER) {
        const n = counts.get(`${side}:${pattern}`);
        if (!n) continue;
        items.push(h("li", { text: `${t(`dashboard.emerging.${side}`, {
          pattern: t(`dashboard.emerging.patterns.${pattern}`) })}: ${formatNumber(n)}` }));
      }
    }
    return [h("p", { text: t("dashboard.emerging.summary") }), h("ul", {}, ...items)];
  }

  describeForecast(data) {
    const features = data.features || [];
    const meta = data.urbansec || {};
    const top = features.filter((f) => f.properties?.top)
      .sort((a, b) => (a.properties.rank ?? 0) - (b.properties.rank ?? 0));
    const out = [h("p", { text: t("dashboard.forecast.summary", {
      model: meta.model || "", horizon: meta.horizon || "",
      origin: meta.origin ? formatDate(meta.origin) : "",
      top: formatNumber(top.length), cells: formatNumber(features.length) }) })];
    if (top.length) {
      out.push(this.topTable(top.slice(0, TOP_N), t("dashboard.summary.topCells", {
        n: Math.min(TOP_N, top.length) }), (f) => formatRisk(f.properties.risk)));
    }
    return out;
  }

  describeReports(data) {
    const features = data.features || [];
    if (data.aggregated) {
      const visible = features.map((f) => f.properties?.value).filter((v) => typeof v === "number");
      const total = visible.reduce((s, v) => s + v, 0);
      return h("p", { text: t("dashboard.reports.summaryCells", {
        count: total, cells: features.length,
        hidden: features.length - visible.length, k: this.config.k_anonymity }) });
    }
    return h("p", { text: t("dashboard.reports.summaryPoints",
                              { count: features.length }) });
  }

  describeRisks(data) {
    const features = data.features || [];
    if (!features.length) return h("p", { text: t("dashboard.risks.none") });
    return h("ul", {}, ...features.map((f) => h("li", { text: `${f.properties?.title || ""} — ${
      t("dashboard.risks.line", { level: t(`dashboard.riskLevels.${f.properties?.level}`),
                                  status: statusName("risk_status", f.properties?.status) })}`,
    })));
  }

  invalidateSize() {
    this.map.invalidateSize();
  }
}

export function kindName(kind) {
  const text = t(`dashboard.areaKinds.${kind}`);
  return text.startsWith("dashboard.") ? kind : text;
}

function statusName(group, status) {
  if (!status) return "";
  const text = t(`common.${group}.${status}`);
  return text.startsWith("common.") ? status : text;
}

export function formatRisk(risk) {
  if (risk === null || risk === undefined) return "–";
  if (risk >= 100) return formatNumber(Math.round(risk));
  return formatNumber(Number(risk.toPrecision(3)));
}

export function errorText(error) {
  if (error?.status === 401 || error?.status === 403) return t("dashboard.errors.forbidden");
  if (error?.status >= 400 && error?.status < 500 && error?.message) {
    return t("dashboard.errors.refused", { message: error.message });
  }
  return t("dashboard.errors.failed");
}
