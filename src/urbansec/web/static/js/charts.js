// The charts under the map: hour x weekday (an HTML table: readable by screen readers and
// keyboard users, shaded for the eye), the monthly trend against last year (Chart.js with a
// visually-hidden data table), the categories, and the analysts' panels (significant
// increases, near-repeat Knox table, backtest hit rates).
//
// Chart.js is the classic script `/static/vendor/chart.js/chart.umd.js` (global `Chart`).

import { t, formatNumber, formatDate, h } from "/static/js/core.js";

const Chart = window.Chart;
const SERIES = ["#1f5fa8", "#c2410c", "#15803d", "#7e22ce", "#52606d"];
const HEAT = [[255, 255, 229], [254, 227, 145], [254, 153, 41], [204, 76, 2], [102, 37, 6]];

function num(value, empty = "–") {
  return value === null || value === undefined ? empty : formatNumber(value);
}

function percent(value, digits = 0) {
  if (value === null || value === undefined) return "–";
  const factor = 10 ** digits;
  return `${formatNumber(Math.round(value * 100 * factor) / factor)} %`;
}

/** Weekday names in the page's language, Monday first. */
export function weekdayNames(lang, style = "short") {
  const format = new Intl.DateTimeFormat(lang, { weekday: style, timeZone: "UTC" });
  // 2024-01-01 was a Monday
  return Array.from({ length: 7 }, (_, i) => format.format(new Date(Date.UTC(2024, 0, 1 + i))));
}

function monthName(month, lang) {
  const [year, m] = month.split("-").map(Number);
  return new Intl.DateTimeFormat(lang, { month: "short", year: "numeric", timeZone: "UTC" })
    .format(new Date(Date.UTC(year, m - 1, 1)));
}

/** Interpolated fill colour for a share 0..1 and the text colour that stays readable on it. */
export function heatColour(share) {
  const x = Math.max(0, Math.min(1, share)) * (HEAT.length - 1);
  const i = Math.min(HEAT.length - 2, Math.floor(x));
  const f = x - i;
  const rgb = HEAT[i].map((c, j) => Math.round(c + (HEAT[i + 1][j] - c) * f));
  const luminance = rgb.map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  const l = 0.2126 * luminance[0] + 0.7152 * luminance[1] + 0.0722 * luminance[2];
  // pure black and white cross at a luminance of 0.179, where both still give 4.58:1
  return { background: `rgb(${rgb.join(",")})`, color: l > 0.179 ? "#000000" : "#ffffff" };
}

/** Hour x weekday counts as a shaded table (rows: weekdays, Monday first; columns: hours). */
export function renderHourWeekday(root, data, { lang }) {
  const counts = data?.counts || [];
  const values = counts.flat().filter((v) => typeof v === "number");
  const max = values.length ? Math.max(...values) : 0;
  const names = weekdayNames(lang, "short");
  const long = weekdayNames(lang, "long");
  const head = h("tr", {}, h("td", { class: "corner" }));
  for (let hour = 0; hour < 24; hour += 1) {
    head.append(h("th", { scope: "col", text: String(hour).padStart(2, "0"),
                          title: t("dashboard.charts.hourTitle", { hour }) }));
  }
  const body = h("tbody");
  counts.forEach((row, d) => {
    const tr = h("tr", {}, h("th", { scope: "row", text: names[d], title: long[d] }));
    row.forEach((value) => {
      const cell = h("td", { text: value === null ? "–" : formatNumber(value) });
      if (value === null) {
        cell.classList.add("suppressed");
        cell.title = t("dashboard.charts.suppressedCell");
      } else {
        const colour = heatColour(max ? value / max : 0);
        cell.style.background = colour.background;
        cell.style.color = colour.color;
      }
      tr.append(cell);
    });
    body.append(tr);
  });
  const table = h("table", { class: "heat-table" },
    h("caption", { text: t("dashboard.charts.hourWeekdayCaption",
                            { timezone: data?.timezone || "" }) }),
    h("thead", {}, head), body);
  const scroller = h("div", { class: "table-scroll", tabindex: "0", role: "region",
                               "aria-label": t("dashboard.charts.hourWeekday") }, table);
  root.replaceChildren(scroller);
}

const charts = new WeakMap();

function lineChart(canvas, config) {
  const previous = charts.get(canvas);
  if (previous) previous.destroy();
  if (!Chart) return null;
  const chart = new Chart(canvas, config);
  charts.set(canvas, chart);
  return chart;
}

function baseOptions(yTitle, xTitle) {
  return {
    animation: false, responsive: true, maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { position: "bottom" } },
    scales: {
      x: { title: { display: !!xTitle, text: xTitle } },
      y: { beginAtZero: true, title: { display: !!yTitle, text: yTitle },
           ticks: { callback: (v) => formatNumber(v) } },
    },
  };
}

function hiddenTable(caption, columns, rows) {
  // a table ignores the 1 px box of .visually-hidden (it would widen the page): wrapped
  return h("div", { class: "visually-hidden data-table-alt" }, h("table", {},
    h("caption", { text: caption }),
    h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, ...rows.map((row) => h("tr", {},
      h("th", { scope: "row", text: row[0] }),
      ...row.slice(1).map((v) => h("td", { text: v })))))));
}

/** Monthly counts with the same months a year earlier, and the same data as a table. */
export function renderMonthly(root, data, { lang }) {
  const months = data?.months || [];
  const labels = months.map((m) => monthName(m, lang));
  const lastYear = Array.isArray(data?.last_year) ? data.last_year : null;
  const title = t("dashboard.charts.monthly");
  let canvas = root.querySelector("canvas");
  if (!canvas) {
    canvas = h("canvas", { role: "img" });
    root.replaceChildren(h("div", { class: "chart-box" }, canvas));
  }
  const current = t("dashboard.charts.thisPeriod");
  const previous = t("dashboard.charts.lastYear");
  canvas.setAttribute("aria-label", t("dashboard.charts.monthlyLabel", {
    months: formatNumber(months.length),
    total: num((data?.counts || []).reduce((s, v) => s + (v || 0), 0)) }));
  const datasets = [{ label: current, data: data?.counts || [], borderColor: SERIES[0],
                      backgroundColor: SERIES[0], tension: 0.2, spanGaps: false }];
  if (lastYear) {
    datasets.push({ label: previous, data: lastYear, borderColor: SERIES[1],
                    backgroundColor: SERIES[1], borderDash: [6, 4], tension: 0.2 });
  }
  lineChart(canvas, { type: "line", data: { labels, datasets },
                      options: baseOptions(t("dashboard.charts.incidents")) });
  root.querySelector(".data-table-alt")?.remove();
  root.append(hiddenTable(title, [t("dashboard.charts.month"), current,
                                  ...(lastYear ? [previous] : [])],
    months.map((m, i) => [labels[i], num(data.counts[i]),
                          ...(lastYear ? [num(lastYear[i])] : [])])));
  if (!lastYear) {
    root.querySelector(".chart-note")?.remove();
    root.append(h("p", { class: "chart-note muted", text: t("dashboard.charts.noLastYear") }));
  } else {
    root.querySelector(".chart-note")?.remove();
  }
}

/** The largest categories of the filter, as a list with bars. */
export function renderCategories(root, categories) {
  const rows = (categories || []).slice(0, 10);
  if (!rows.length) {
    root.replaceChildren(h("p", { text: t("dashboard.charts.noData") }));
    return;
  }
  const max = Math.max(...rows.map((r) => r.count || 0), 1);
  root.replaceChildren(h("ol", { class: "bar-list" }, ...rows.map((r) => {
    const bar = h("span", { class: "bar", "aria-hidden": "true" });
    bar.style.width = `${((r.count || 0) / max) * 100}%`;
    return h("li", {}, h("span", { class: "bar-label", text: r.name || r.code }),
              h("span", { class: "bar-value", text: num(r.count,
                t("dashboard.charts.suppressedShort")) }), bar);
  })));
}

/** Significant increases against the same period a year earlier, per area. */
export function renderChangeList(root, data, { areaName }) {
  const up = (data.units || []).filter((u) => u.significant && u.direction === "up");
  const current = data.current || {};
  const base = data.baseline_period || {};
  const parts = [h("p", { class: "muted", text: t("dashboard.change.periods", {
    from: current.start ? formatDate(current.start) : "",
    to: current.end ? formatDate(lastDay(current.end)) : "",
    bfrom: base.start ? formatDate(base.start) : "",
    bto: base.end ? formatDate(lastDay(base.end)) : "" }) })];
  if (data.fallback) {
    parts.push(h("p", { class: "inline-note", text: t("dashboard.change.fallback") }));
  }
  if (data.uncovered || base.count === 0) {
    parts.push(h("p", { class: "inline-note", text: t("dashboard.change.noBaseline") }));
  } else if (!up.length) {
    parts.push(h("p", { text: t("dashboard.change.none") }));
  } else {
    parts.push(h("ul", { class: "change-items" }, ...up.map((u) => h("li", {},
      h("strong", { text: areaName(u.unit) }), " ",
      t("dashboard.change.item", {
        current: formatNumber(u.current), baseline: formatNumber(u.baseline),
        percent: typeof u.percent_change === "number"
          ? `+${formatNumber(Math.round(u.percent_change))}` : "∞",
        p: u.p === null ? "–" : (u.p < 0.001 ? "< 0.001" : formatNumber(Number(u.p.toFixed(3)))),
      })))));
  }
  root.replaceChildren(...parts);
}

function lastDay(endIso) {
  // the API's end is exclusive: the day before it is the last one shown
  const end = new Date(endIso);
  return new Date(end.getTime() - 1000).toISOString();
}

function spaceLabels(bands) {
  const labels = [t("dashboard.nearRepeat.sameLocation")];
  let previous = 0;
  for (const b of bands) {
    labels.push(t("dashboard.nearRepeat.metres", { from: formatNumber(previous),
                                                    to: formatNumber(b) }));
    previous = b;
  }
  labels.push(t("dashboard.nearRepeat.beyondMetres", { to: formatNumber(previous) }));
  return labels;
}

function timeLabels(bands) {
  const labels = [];
  let previous = 0;
  for (const b of bands) {
    labels.push(t("dashboard.nearRepeat.days", { from: formatNumber(previous),
                                                  to: formatNumber(b) }));
    previous = b;
  }
  labels.push(t("dashboard.nearRepeat.beyondDays", { to: formatNumber(previous) }));
  return labels;
}

/** The Knox table: observed pairs and Knox ratio per space x time band, significant cells
 * marked in text (not only by colour). */
export function renderNearRepeat(root, data) {
  const result = (data.results || [])[0];
  if (!result || !result.observed) {
    root.replaceChildren(h("p", { text: result?.message || data.message
      || t("dashboard.nearRepeat.nothing") }));
    return;
  }
  const space = spaceLabels(data.space_bands_m || []);
  const time = timeLabels(data.time_bands_days || []);
  const rows = result.observed.map((row, i) => h("tr", {},
    h("th", { scope: "row", text: space[i] ?? result.space_labels?.[i] ?? "" }),
    ...row.map((observed, j) => {
      const ratio = result.ratio?.[i]?.[j];
      const significant = result.significant?.[i]?.[j];
      const cell = h("td", { class: significant ? "significant" : null },
        h("span", { class: "ratio", text: ratio === null || ratio === undefined ? "–"
          : formatNumber(Number(ratio.toFixed(2))) }),
        h("span", { class: "muted small", text: ` (${formatNumber(observed)})` }));
      if (significant) {
        cell.append(h("span", { class: "marker", text: " *",
                                 title: t("dashboard.nearRepeat.significant") }),
                    h("span", { class: "visually-hidden",
                                 text: ` ${t("dashboard.nearRepeat.significant")}` }));
      }
      return cell;
    })));
  // the same reading as the Near Repeat Calculator (analysis/near_repeat.py `summary`):
  // repeats at the same place, the near-repeat block next to the closest cell, the rest
  const extent = result.near_repeat_extent;
  const elevated = (i, j) => result.significant?.[i]?.[j] && (result.ratio?.[i]?.[j] ?? 0) > 1;
  const repeatBands = (result.observed[0] || []).map((_, j) => j).filter((j) => elevated(0, j));
  const lines = [];
  if (repeatBands.length) {
    lines.push(t("dashboard.nearRepeat.repeat", {
      bands: repeatBands.map((j) => time[j]).join(", ") }));
  }
  lines.push(extent
    ? t("dashboard.nearRepeat.pattern", { metres: formatNumber(extent.metres),
                                          days: formatNumber(extent.days) })
    : t("dashboard.nearRepeat.noPattern"));
  const allSignificant = result.observed.flatMap((row, i) => row.map((_, j) => elevated(i, j)))
    .filter(Boolean).length;
  const inPattern = extent ? result.observed.slice(1, -1).flatMap((row, i) => row.slice(0, -1)
    .map((_, j) => elevated(i + 1, j) && (data.space_bands_m[i] ?? Infinity) <= extent.metres
      && (data.time_bands_days[j] ?? Infinity) <= extent.days)).filter(Boolean).length : 0;
  const others = allSignificant - repeatBands.length - inPattern;
  if (others > 0) lines.push(t("dashboard.nearRepeat.others", { count: others }));
  root.replaceChildren(
    ...lines.map((line, i) => h("p", { class: i === 0 ? "summary-line" : null, text: line })),
    h("div", { class: "table-scroll", tabindex: "0", role: "region",
                "aria-label": t("dashboard.nearRepeat.title") },
      h("table", { class: "data-table knox" },
        h("caption", { text: t("dashboard.nearRepeat.caption", {
          events: formatNumber(result.events), pairs: formatNumber(result.pairs ?? 0),
          permutations: formatNumber(data.permutations ?? 0) }) }),
        h("thead", {}, h("tr", {}, h("td"),
          ...time.map((label) => h("th", { scope: "col", text: label })))),
        h("tbody", {}, ...rows))),
    h("p", { class: "muted small", text: t("dashboard.nearRepeat.legend") }));
}

/** Hit rate against the share of the area flagged, one line per model. */
export function renderBacktest(root, data) {
  const coverages = data.coverages || [];
  const models = Object.entries(data.models || {});
  if (!coverages.length || !models.length) {
    root.replaceChildren(h("p", { text: data.message || t("dashboard.backtest.nothing") }));
    return;
  }
  let canvas = root.querySelector("canvas");
  if (!canvas) {
    canvas = h("canvas", { role: "img" });
    root.replaceChildren(h("div", { class: "chart-box" }, canvas));
  }
  root.querySelectorAll(".data-table-alt, p").forEach((node) => node.remove());
  const labels = coverages.map((c) => percent(c, 1));
  const name = (model) => {
    const text = t(`dashboard.backtest.models.${model}`);
    return text.startsWith("dashboard.") ? model : text;
  };
  canvas.setAttribute("aria-label", t("dashboard.backtest.label", {
    folds: formatNumber(data.folds ?? 0), horizon: data.horizon || "" }));
  const datasets = models.map(([model, values], i) => ({
    label: name(model), data: (values.hit_rate || []).map((v) => (v === null ? null : v * 100)),
    borderColor: SERIES[i % SERIES.length], backgroundColor: SERIES[i % SERIES.length],
    borderDash: model === "naive" ? [4, 4] : undefined, tension: 0.1 }));
  const options = baseOptions(t("dashboard.backtest.hitRate"), t("dashboard.backtest.coverage"));
  options.scales.y.max = 100;
  options.scales.y.ticks = { callback: (v) => `${formatNumber(v)} %` };
  lineChart(canvas, { type: "line", data: { labels, datasets }, options });
  root.append(hiddenTable(t("dashboard.backtest.caption"),
    [t("dashboard.backtest.model"), ...labels],
    models.map(([model, values]) => [name(model),
      ...(values.hit_rate || []).map((v) => percent(v, 1))])));
  const origins = data.origins || {};
  root.append(h("p", { class: "muted small", text: t("dashboard.backtest.note", {
    folds: formatNumber(data.folds ?? 0), horizon: data.horizon || "",
    first: origins.first ? formatDate(origins.first) : "",
    last: origins.last ? formatDate(origins.last) : "" }) }));
}
