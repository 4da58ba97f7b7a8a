// The dashboard's first requests, started as soon as the page begins to load: this module is
// loaded `async` from the page's <head>, so it runs before the classic scripts (Leaflet,
// Chart.js) are fetched and the rest of the page's modules are ready. The tab's session
// tokens are already in its storage, so the configuration, the category tree and the view of
// the filter in the URL are asked at once, the default boundaries as soon as the
// configuration names them. `dashboard.js` takes the answers from here.

import { api } from "/static/js/core.js";
import { readState, apiQuery } from "/static/js/filters.js";

// the view is asked at this cell size for everyone: the API never draws finer than
// `public_cell_m` for those who may not see details, so the first request need not wait for
// the configuration or the session to know who is asking
export const CELL_M = 250;
export const EMPTY_AREAS = { type: "FeatureCollection", features: [] };

/** The `/dashboard/view` query of a filter state. */
export function viewQuery(state) {
  return { ...apiQuery(state), layer: state.layer, cell: CELL_M };
}

// a promise that never rejects: { value } or { error } (nothing left unhandled meanwhile)
function settled(promise) {
  return promise.then((value) => ({ value }), (error) => ({ error }));
}

function startRequests() {
  const config = settled(api("/dashboard/config"));
  const areas = config.then(({ value }) => {
    const kind = value?.default_area_kind;
    return kind ? settled(api(`/dashboard/areas/${encodeURIComponent(kind)}`))
      : { value: EMPTY_AREAS };
  });
  const query = viewQuery(readState());
  const view = settled(api("/dashboard/view", { query }));
  return { config, areas, taxonomy: settled(api("/dashboard/taxonomy")),
           view: { key: JSON.stringify(query), answer: view } };
}

/** {config, areas, taxonomy}: promises of {value} or {error}; `view`: {key, answer} of
 * the URL's filter, until the page takes it (then null). */
export const early = startRequests();
