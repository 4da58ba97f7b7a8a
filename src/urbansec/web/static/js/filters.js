// The map page's filter: its state, its place in the URL, and the form that edits it.
//
// One plain object describes what the page shows:
//   { category: ["05", "0201"], from: "YYYY-MM-DD", to: "YYYY-MM-DD", time: "all" |
//     "day" | "night" | "HH:MM-HH:MM", area: "" | "KIND:CODE", layer: "count"|"kde"|"gi" }
// `from`/`to` are the first and the last day shown (both included; the API reads a bare
// `to` day as included). Empty `from`/`to` mean the whole data. The state lives in the URL
// query (`?category=05,0201&from=...`), so a view can be shared and reopened as it was.

import { t, formatNumber, h } from "/static/js/core.js";

export const LAYERS = ["count", "kde", "gi"];
export const TIMES = ["all", "day", "night"];
export const PRESETS = ["30d", "3m", "12m", "all"];
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const TIME_RANGE = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/;
const CODE = /^[A-Za-z0-9._-]{1,20}$/;
const AREA = /^[A-Za-z0-9_.-]{1,50}:[^,]{1,60}$/;

export function emptyState() {
  return { category: [], from: "", to: "", time: "all", area: "", layer: "count" };
}

/** The state from a query string; anything malformed falls back to its default. */
export function readState(search = window.location.search) {
  const params = new URLSearchParams(search);
  const state = emptyState();
  const category = params.get("category");
  if (category) {
    state.category = [...new Set(category.split(",").map((c) => c.trim())
      .filter((c) => CODE.test(c)))];
  }
  for (const key of ["from", "to"]) {
    const value = params.get(key);
    if (value && DATE.test(value)) state[key] = value;
  }
  const time = params.get("time");
  if (time && (TIMES.includes(time) || TIME_RANGE.test(time))) state.time = time;
  const area = params.get("area");
  if (area && AREA.test(area)) state.area = area;
  const layer = params.get("layer");
  if (layer && LAYERS.includes(layer)) state.layer = layer;
  return state;
}

/** The URL query for a state (defaults left out, other parameters such as `lang` kept). */
export function writeState(state, { push = false } = {}) {
  const params = new URLSearchParams(window.location.search);
  const values = {
    category: state.category.join(","), from: state.from, to: state.to,
    time: state.time === "all" ? "" : state.time, area: state.area,
    layer: state.layer === "count" ? "" : state.layer,
  };
  for (const [key, value] of Object.entries(values)) {
    if (value) params.set(key, value);
    else params.delete(key);
  }
  const query = params.toString();
  const url = `${window.location.pathname}${query ? `?${query}` : ""}${window.location.hash}`;
  const here = `${window.location.pathname}${window.location.search}${window.location.hash}`;
  committed = committed ?? here;
  if (push) {
    // the entry being left keeps the view last applied; the new view gets its own entry,
    // so Back returns to the previous applied view, not to every intermediate edit
    if (url !== committed) {
      if (here !== committed) history.replaceState(null, "", committed);
      history.pushState(null, "", url);
    } else if (url !== here) {
      history.replaceState(null, "", url);
    }
    committed = url;
  } else if (url !== here) {
    history.replaceState(null, "", url);
  }
}

// the URL of the history entry last applied explicitly (pushed) or loaded
let committed = null;

/** After Back/Forward: the entry now shown is the applied view. */
export function markCommitted() {
  committed = `${window.location.pathname}${window.location.search}${window.location.hash}`;
}

/** The API query parameters of a state (for `/dashboard/view` and the other panels). */
export function apiQuery(state) {
  return {
    category: state.category.join(","), from: state.from, to: state.to,
    time: state.time === "all" ? "" : state.time, area: state.area,
  };
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function parseDay(text) {
  return new Date(`${text}T00:00:00Z`);
}

/** `date` moved by `months` calendar months, the day clamped to the month's length. */
function addMonths(date, months) {
  const out = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + months, 1));
  const length = new Date(Date.UTC(out.getUTCFullYear(), out.getUTCMonth() + 1, 0)).getUTCDate();
  out.setUTCDate(Math.min(date.getUTCDate(), length));
  return out;
}

/** `{from, to}` of a preset, counted back from the last day of the data (not from today):
 * "3 months" ending 2017-12-31 is 2017-10-01 to 2017-12-31. */
export function presetRange(preset, period) {
  if (!period || preset === "all" || !PRESETS.includes(preset)) return { from: "", to: "" };
  const end = parseDay(period.last);
  end.setUTCDate(end.getUTCDate() + 1); // the day after the last one, exclusive
  let from;
  if (preset === "30d") {
    from = new Date(end);
    from.setUTCDate(from.getUTCDate() - 30);
  } else {
    from = addMonths(end, preset === "3m" ? -3 : -12);
  }
  const first = parseDay(period.first);
  return { from: isoDay(from < first ? first : from), to: period.last };
}

/** Which preset a state's period matches, or "custom". */
export function presetOf(state, period) {
  if (!state.from && !state.to) return "all";
  // explicit dates name the preset that gives them (12 months may also be the whole data)
  for (const preset of PRESETS) {
    const range = presetRange(preset, period);
    if (range.from && range.from === state.from && range.to === state.to) return preset;
  }
  if (period && state.from === period.first && state.to === period.last) return "all";
  return "custom";
}

/**
 * The filter form: category tree, period, time of day, area and hotspot layer.
 * `onChange(state, {push})` is called on every edit (push=true on explicit apply).
 */
export class FilterPanel {
  constructor(form, { config, taxonomy, areas, state, onChange }) {
    this.form = form;
    this.config = config;
    this.period = config.period;
    this.onChange = onChange;
    this.state = { ...state, category: [...state.category] };
    this.categories = taxonomy.categories || [];
    this.children = new Map();
    for (const category of this.categories) {
      const parent = category.parent || "";
      if (!this.children.has(parent)) this.children.set(parent, []);
      this.children.get(parent).push(category);
    }
    this.known = new Set(this.categories.map((c) => c.code));
    this.areas = areas;
    this.build();
    this.show(this.state);
  }

  build() {
    const f = this.form;
    this.categoryBox = f.querySelector("#filter-category");
    this.categoryBox.replaceChildren(
      h("legend", { text: t("dashboard.filters.category") }),
      h("p", { class: "hint", id: "filter-category-hint",
                text: t("dashboard.filters.categoryHint") }),
      this.buildTree(""),
    );
    this.categoryBox.setAttribute("aria-describedby", "filter-category-hint");
    const clear = h("button", { type: "button", class: "link-button",
                                 id: "filter-category-clear",
                                 text: t("dashboard.filters.allCategories") });
    clear.addEventListener("click", () => {
      this.state.category = [];
      this.syncTree();
      this.changed();
    });
    this.categoryBox.append(clear);
    this.categoryBox.addEventListener("change", (event) => {
      if (event.target.matches("input[type=checkbox]")) this.treeChanged(event.target);
    });

    this.from = f.querySelector("#filter-from");
    this.to = f.querySelector("#filter-to");
    for (const input of [this.from, this.to]) {
      if (this.period) {
        input.min = this.period.first;
        input.max = this.period.last;
      }
      input.addEventListener("change", () => this.periodChanged());
    }
    this.preset = f.querySelector("#filter-preset");
    this.preset.replaceChildren(
      ...PRESETS.map((p) => h("option", { value: p, text: t(`dashboard.presets.${p}`) })),
      h("option", { value: "custom", text: t("dashboard.presets.custom"), disabled: true }),
    );
    this.preset.addEventListener("change", () => {
      const range = presetRange(this.preset.value, this.period);
      this.state.from = range.from;
      this.state.to = range.to;
      this.show(this.state);
      this.changed();
    });

    this.time = f.querySelector("#filter-time");
    this.time.replaceChildren(...[...TIMES, "custom"].map(
      (v) => h("option", { value: v, text: t(`dashboard.time.${v}`) })));
    this.timeFrom = f.querySelector("#filter-time-from");
    this.timeTo = f.querySelector("#filter-time-to");
    this.timeCustom = f.querySelector("#filter-time-custom");
    this.time.addEventListener("change", () => {
      if (this.time.value === "custom") {
        this.timeCustom.hidden = false;
        this.customTimeChanged();
      } else {
        this.timeCustom.hidden = true;
        this.state.time = this.time.value;
        this.changed();
      }
    });
    for (const input of [this.timeFrom, this.timeTo]) {
      input.addEventListener("change", () => this.customTimeChanged());
    }

    this.area = f.querySelector("#filter-area");
    const features = [...(this.areas?.features || [])].sort(
      (a, b) => String(a.properties.name || a.properties.code).localeCompare(
        String(b.properties.name || b.properties.code), undefined, { numeric: true }));
    const kind = this.config.default_area_kind;
    this.area.replaceChildren(
      h("option", { value: "", text: t("dashboard.filters.allAreas") }),
      ...features.map((feature) => h("option", {
        value: `${feature.properties.kind || kind}:${feature.properties.code}`,
        text: areaLabel(feature.properties),
      })),
    );
    this.area.addEventListener("change", () => {
      this.state.area = this.area.value;
      this.changed();
    });

    this.layer = f.querySelector("#filter-layer");
    this.layer.replaceChildren(...LAYERS.map(
      (v) => h("option", { value: v, text: t(`dashboard.layers.method.${v}`) })));
    this.layer.addEventListener("change", () => {
      this.state.layer = this.layer.value;
      this.changed();
    });

    f.addEventListener("submit", (event) => {
      event.preventDefault();
      this.onChange(this.current(), { push: true, immediate: true });
    });
  }

  buildTree(parent) {
    const items = this.children.get(parent) || [];
    if (!items.length) return null;
    const list = h("ul", { class: parent ? "category-children" : "category-tree" });
    for (const category of items) {
      const id = `category-${category.code.replace(/[^A-Za-z0-9_-]/g, "_")}`;
      const count = category.count === null || category.count === undefined ? ""
        : ` (${formatNumber(category.count)})`;
      const input = h("input", { type: "checkbox", id, value: category.code,
                                  name: "category" });
      const label = h("label", { for: id },
        h("span", { class: "category-code", text: category.code }),
        ` ${category.name}${count}`);
      list.append(h("li", {}, h("span", { class: "category-item" }, input, label),
                     this.buildTree(category.code)));
    }
    return list;
  }

  descendants(code) {
    const out = [];
    for (const child of this.children.get(code) || []) {
      out.push(child.code, ...this.descendants(child.code));
    }
    return out;
  }

  /** The checked codes, as the shortest list (a fully checked parent stands for its tree). */
  checkedCodes() {
    const checked = new Set([...this.categoryBox.querySelectorAll("input[type=checkbox]")]
      .filter((input) => input.checked && !input.indeterminate).map((input) => input.value));
    const out = [];
    const walk = (parent) => {
      for (const category of this.children.get(parent) || []) {
        if (checked.has(category.code)) out.push(category.code);
        else walk(category.code);
      }
    };
    walk("");
    return out;
  }

  treeChanged(input) {
    // a parent checks or clears its whole subtree; a child updates its ancestors
    for (const code of this.descendants(input.value)) {
      const child = this.checkbox(code);
      if (child) {
        child.checked = input.checked;
        child.indeterminate = false;
      }
    }
    input.indeterminate = false;
    this.state.category = this.checkedCodes();
    this.syncTree();
    this.changed();
  }

  checkbox(code) {
    return this.categoryBox.querySelector(`input[type=checkbox][value="${CSS.escape(code)}"]`);
  }

  /** Check boxes from `state.category`: a code checks itself and its subtree, parents show
   * checked when every child is, indeterminate when some are. */
  syncTree() {
    const selected = new Set();
    for (const code of this.state.category) {
      selected.add(code);
      for (const d of this.descendants(code)) selected.add(d);
    }
    const update = (parent) => {
      let all = true;
      let some = false;
      for (const category of this.children.get(parent) || []) {
        const box = this.checkbox(category.code);
        const kids = this.children.get(category.code) || [];
        let on = selected.has(category.code);
        let partial = false;
        if (kids.length && !on) {
          const [childAll, childSome] = update(category.code);
          on = childAll;
          partial = !childAll && childSome;
        } else if (kids.length) {
          update(category.code);
        }
        if (box) {
          box.checked = on;
          box.indeterminate = partial;
        }
        all = all && on;
        some = some || on || partial;
      }
      return [all, some];
    };
    update("");
  }

  periodChanged() {
    let from = this.from.value;
    let to = this.to.value;
    if (from && to && from > to) [from, to] = [to, from];
    this.state.from = from;
    this.state.to = to;
    this.show(this.state);
    this.changed();
  }

  customTimeChanged() {
    const from = this.timeFrom.value || "22:00";
    const to = this.timeTo.value || "06:00";
    this.timeFrom.value = from;
    this.timeTo.value = to;
    this.state.time = `${from.slice(0, 5)}-${to.slice(0, 5)}`;
    this.changed();
  }

  current() {
    return { ...this.state, category: [...this.state.category] };
  }

  changed() {
    this.preset.value = presetOf(this.state, this.period);
    this.onChange(this.current(), { push: false });
  }

  /** Show a state in the form (on load and when the browser goes back). */
  show(state) {
    this.state = { ...state, category: state.category.filter((c) => this.known.has(c)) };
    this.syncTree();
    this.from.value = state.from || this.period?.first || "";
    this.to.value = state.to || this.period?.last || "";
    this.preset.value = presetOf(state, this.period);
    if (TIMES.includes(state.time)) {
      this.time.value = state.time;
      this.timeCustom.hidden = true;
    } else {
      this.time.value = "custom";
      this.timeCustom.hidden = false;
      const [from, to] = state.time.split("-");
      this.timeFrom.value = from;
      this.timeTo.value = to;
    }
    const known = [...this.area.options].some((o) => o.value === state.area);
    this.area.value = known ? state.area : "";
    if (!known) this.state.area = "";
    this.layer.value = state.layer;
  }

  /** A short description of the filter, for the screen-reader announcement and captions. */
  describe() {
    const parts = [];
    const names = new Map(this.categories.map((c) => [c.code, c.name]));
    parts.push(this.state.category.length
      ? this.state.category.map((c) => names.get(c) || c).join(", ")
      : t("dashboard.filters.allCategories"));
    const selected = this.area.selectedOptions[0];
    if (this.state.area && selected) parts.push(selected.textContent);
    return parts.join(" · ");
  }
}

/** An area's label: "Near North (18)", or the code alone when the area has no other name. */
export function areaLabel(properties) {
  const code = String(properties.code ?? "");
  const name = properties.name ? String(properties.name) : "";
  return name && name !== code ? `${name} (${code})` : code;
}
