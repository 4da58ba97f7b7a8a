// The view's cells, as the API sends them: the grid once (a WGS84 UTM zone and the cell side)
// and one [col, row, value, class] row per cell; cell (col, row) covers
// [col, col + 1) x [row, row + 1) times the side, in UTM metres. The corners are projected
// here, with the exact inverse transverse Mercator (Krüger's series to n^6, as PROJ's
// "etmerc" that the server uses: well under a millimetre inside a zone), and the cells are
// painted on one canvas: a Leaflet layer per cell cost most of a redraw with 8,000 cells.

const A = 6378137; // WGS84
const F = 1 / 298.257223563;
const K0 = 0.9996;
const FALSE_EASTING = 500000;
const FALSE_NORTHING_SOUTH = 10000000;

const N = F / (2 - F);
const E2 = F * (2 - F);
const E = Math.sqrt(E2);
const RECTIFYING_RADIUS = (A / (1 + N)) * (1 + N ** 2 / 4 + N ** 4 / 64 + N ** 6 / 256);
// Krüger's beta coefficients: from the rectified (xi, eta) back to conformal coordinates
const BETA = [
  N / 2 - (2 / 3) * N ** 2 + (37 / 96) * N ** 3 - (1 / 360) * N ** 4 - (81 / 512) * N ** 5
    + (96199 / 604800) * N ** 6,
  (1 / 48) * N ** 2 + (1 / 15) * N ** 3 - (437 / 1440) * N ** 4 + (46 / 105) * N ** 5
    - (1118711 / 3870720) * N ** 6,
  (17 / 480) * N ** 3 - (37 / 840) * N ** 4 - (209 / 4480) * N ** 5 + (5569 / 90720) * N ** 6,
  (4397 / 161280) * N ** 4 - (11 / 504) * N ** 5 - (830251 / 7257600) * N ** 6,
  (4583 / 161280) * N ** 5 - (108847 / 3991680) * N ** 6,
  (20648693 / 638668800) * N ** 6,
];

/** Latitude (radians) from its conformal tangent (Karney 2011, eq. 19-21, Newton). */
function latitudeFromConformal(tauPrime) {
  let tau = tauPrime;
  for (let i = 0; i < 8; i += 1) {
    const root = Math.sqrt(1 + tau * tau);
    const sigma = Math.sinh(E * Math.atanh((E * tau) / root));
    const tauI = tau * Math.sqrt(1 + sigma * sigma) - sigma * root;
    const delta = ((tauPrime - tauI) / Math.sqrt(1 + tauI * tauI))
      * ((1 + (1 - E2) * tau * tau) / ((1 - E2) * root));
    tau += delta;
    if (Math.abs(delta) < 1e-14) break;
  }
  return Math.atan(tau);
}

/** [lon, lat] (degrees) of UTM easting/northing (metres) in `zone` (1-60). */
export function utmToLonLat(easting, northing, zone, south = false) {
  const xi = (northing - (south ? FALSE_NORTHING_SOUTH : 0)) / (K0 * RECTIFYING_RADIUS);
  const eta = (easting - FALSE_EASTING) / (K0 * RECTIFYING_RADIUS);
  let xiP = xi;
  let etaP = eta;
  for (let j = 1; j <= 6; j += 1) {
    const b = BETA[j - 1];
    xiP -= b * Math.sin(2 * j * xi) * Math.cosh(2 * j * eta);
    etaP -= b * Math.cos(2 * j * xi) * Math.sinh(2 * j * eta);
  }
  const sinhEta = Math.sinh(etaP);
  const cosXi = Math.cos(xiP);
  const tauPrime = Math.sin(xiP) / Math.sqrt(sinhEta * sinhEta + cosXi * cosXi);
  const lon0 = zone * 6 - 183;
  const lon = lon0 + (Math.atan2(sinhEta, cosXi) * 180) / Math.PI;
  const lat = (latitudeFromConformal(tauPrime) * 180) / Math.PI;
  return [lon, lat];
}

/** The id the API gives a cell elsewhere (e.g. "250m_1793_18439"). */
export function cellId(size, col, row) {
  return `${Number(size)}m_${col}_${row}`;
}

/**
 * The cells of a view answer as objects the page works with: {id, col, row, properties:
 * {value, class}, corners: [[lat, lon] x 4] (SW, SE, NE, NW)}. Corners shared by
 * neighbouring cells are projected once.
 */
export function expandCells(cells) {
  const grid = cells?.grid;
  const rows = cells?.cells || [];
  if (!grid || !rows.length) return [];
  const columns = cells.columns || ["col", "row", "value", "class"];
  const at = Object.fromEntries(columns.map((name, i) => [name, i]));
  const size = Number(grid.size);
  const corners = new Map();
  const corner = (c, r) => {
    const key = `${c},${r}`;
    let point = corners.get(key);
    if (!point) {
      const [lon, lat] = utmToLonLat(c * size, r * size, grid.utm_zone, grid.south);
      point = [lat, lon];
      corners.set(key, point);
    }
    return point;
  };
  return rows.map((row) => {
    const col = row[at.col];
    const r = row[at.row];
    return {
      id: cellId(size, col, r), col, row: r,
      properties: { value: row[at.value], class: row[at.class] },
      corners: [corner(col, r), corner(col + 1, r), corner(col + 1, r + 1), corner(col, r + 1)],
    };
  });
}

function inQuad(x, y, quad) {
  let inside = false;
  for (let i = 0, j = 3; i < 4; j = i, i += 1) {
    const [xi, yi] = quad[i];
    const [xj, yj] = quad[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/**
 * Leaflet layer painting `cells` (from `expandCells`) on one canvas, each with
 * `style(cell)` ({fill, fillColor, fillOpacity, stroke, color, weight}); `tooltip(cell)`
 * gives the text shown under the pointer. Redrawn after each move or zoom (projecting the
 * corners is a few milliseconds for 10,000 cells); scaled with the map during a zoom.
 */
export function cellLayer(L, cells, { style, tooltip, pane = "overlayPane" }) {
  const Layer = L.Layer.extend({
    options: { pane },

    initialize() {
      this.cells = cells;
      this._quads = [];
    },

    onAdd(map) {
      this._canvas = L.DomUtil.create("canvas", "urbansec-cells leaflet-zoom-animated");
      this._canvas.style.pointerEvents = "none";
      this.getPane().appendChild(this._canvas);
      this._tooltip = L.tooltip({ sticky: true, direction: "top", offset: [0, -6] });
      this._redraw();
    },

    onRemove(map) {
      if (this._tooltip) map.closeTooltip(this._tooltip);
      L.DomUtil.remove(this._canvas);
      this._canvas = null;
    },

    getEvents() {
      return { moveend: this._redraw, zoomend: this._redraw, resize: this._redraw,
               viewreset: this._redraw, zoomanim: this._animateZoom,
               mousemove: this._hover, mouseout: this._leave };
    },

    bringToBack() {
      if (this._canvas) L.DomUtil.toBack(this._canvas);
      return this;
    },

    _animateZoom(event) {
      if (!this._bounds) return;
      const map = this._map;
      const scale = map.getZoomScale(event.zoom);
      const offset = map._latLngBoundsToNewLayerBounds(this._bounds, event.zoom,
                                                       event.center).min;
      L.DomUtil.setTransform(this._canvas, offset, scale);
    },

    _redraw() {
      const map = this._map;
      if (!map || !this._canvas) return;
      const size = map.getSize();
      const ratio = window.devicePixelRatio || 1;
      const canvas = this._canvas;
      canvas.width = Math.round(size.x * ratio);
      canvas.height = Math.round(size.y * ratio);
      canvas.style.width = `${size.x}px`;
      canvas.style.height = `${size.y}px`;
      const topLeft = map.containerPointToLayerPoint([0, 0]);
      L.DomUtil.setPosition(canvas, topLeft);
      this._bounds = L.latLngBounds(map.containerPointToLatLng([0, 0]),
                                    map.containerPointToLatLng(size));
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, size.x, size.y);
      const zoom = map.getZoom();
      const origin = map.getPixelOrigin().add(topLeft);
      const projected = new Map();
      const project = (latlng) => {
        let point = projected.get(latlng);
        if (!point) {
          const p = map.project(latlng, zoom);
          point = [p.x - origin.x, p.y - origin.y];
          projected.set(latlng, point);
        }
        return point;
      };
      this._quads = new Array(this.cells.length);
      // cells of the same style are filled (and stroked) as one path: fewer state changes
      const groups = new Map();
      this.cells.forEach((cell, i) => {
        const quad = cell.corners.map(project);
        this._quads[i] = quad;
        const xs = quad.map((p) => p[0]);
        const ys = quad.map((p) => p[1]);
        if (Math.max(...xs) < 0 || Math.min(...xs) > size.x || Math.max(...ys) < 0
            || Math.min(...ys) > size.y) return;
        const look = style(cell);
        const key = JSON.stringify(look);
        let group = groups.get(key);
        if (!group) groups.set(key, (group = { look, quads: [] }));
        group.quads.push(quad);
      });
      for (const { look, quads } of groups.values()) {
        ctx.beginPath();
        for (const quad of quads) {
          ctx.moveTo(quad[0][0], quad[0][1]);
          for (let k = 1; k < 4; k += 1) ctx.lineTo(quad[k][0], quad[k][1]);
          ctx.closePath();
        }
        if (look.fill !== false) {
          ctx.globalAlpha = look.fillOpacity ?? 0.2;
          ctx.fillStyle = look.fillColor || look.color || "#3388ff";
          ctx.fill();
        }
        if (look.stroke !== false && (look.weight ?? 1) > 0) {
          ctx.globalAlpha = look.opacity ?? 1;
          ctx.strokeStyle = look.color || "#3388ff";
          ctx.lineWidth = look.weight ?? 1;
          ctx.stroke();
        }
      }
      ctx.globalAlpha = 1;
    },

    /** The cell under a container point, or null. */
    cellAt(point) {
      const { x, y } = point;
      for (let i = this._quads.length - 1; i >= 0; i -= 1) {
        const quad = this._quads[i];
        if (quad && inQuad(x, y, quad)) return this.cells[i];
      }
      return null;
    },

    _hover(event) {
      const cell = this.cellAt(event.containerPoint);
      const map = this._map;
      if (!cell || !tooltip) {
        this._leave();
        return;
      }
      this._tooltip.setContent(tooltip(cell)).setLatLng(event.latlng);
      if (!map.hasLayer(this._tooltip)) map.openTooltip(this._tooltip);
    },

    _leave() {
      if (this._map && this._tooltip && this._map.hasLayer(this._tooltip)) {
        this._map.closeTooltip(this._tooltip);
      }
    },
  });
  return new Layer();
}
