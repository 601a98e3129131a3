/**
 * The heatmap most views share: a matrix with labelled axes, a colour scale and exact tooltips.
 *
 * ECharts draws a heatmap cell by cell (a rectangle each): a 256 × 256 attention matrix took about
 * a second to first draw on a 2-core machine. Above IMAGE_CELLS cells the matrix is painted
 * instead, pixel by pixel, into one image of the grid's visible area (a custom series), each time
 * ECharts lays the chart out (zoom, resize): a few milliseconds, crisp at any zoom. Its tooltip
 * and clicks find the cell under the mouse from the same geometry (`pointer`, `cellAt`).
 */
import { base, esc, fmt, labelAxis, type Option } from "./common";
import type { Theme } from "./theme";

/** The id of an image heatmap's empty series that carries its colour scale (not data). */
export const SCALE_ONLY = "scale-only";

/** Above this many cells a heatmap is painted as an image rather than drawn cell by cell. */
export const IMAGE_CELLS = 5000;

/** The mouse over the chart being hovered, in its pixels (views/chartHost.ts keeps it current). */
export const pointer = { x: -1, y: -1 };

/** Where an image heatmap's cells lie on screen: cell (0, 0)'s top-left corner and a cell's size
 * (negative height: row 0 at the bottom). Set each time the image is painted. */
export interface CellGeometry {
  x0: number;
  y0: number;
  cw: number;
  ch: number;
  cols: number;
  rows: number;
}

/** The cell (row, col) at pixel (x, y), or null outside the matrix. */
export function cellAt(g: CellGeometry | null, x: number, y: number): [number, number] | null {
  if (!g || g.cw === 0 || g.ch === 0) return null;
  const c = Math.floor((x - g.x0) / g.cw);
  const r = Math.floor((y - g.y0) / g.ch);
  return r >= 0 && r < g.rows && c >= 0 && c < g.cols ? [r, c] : null;
}

/** Colour stops (#rrggbb) → a function from t in [0, 1] to [r, g, b], linear between stops. */
export function colorRamp(stops: string[]): (t: number) => [number, number, number] {
  const rgb = stops.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)) as [number, number, number]);
  return (t: number) => {
    const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (rgb.length - 1);
    const i = Math.min(rgb.length - 2, Math.floor(x));
    const f = x - i;
    const a = rgb[i];
    const b = rgb[i + 1];
    // written out: called for every painted cell, and the array and closure of a map() were half its time
    return [
      Math.round(a[0] + (b[0] - a[0]) * f),
      Math.round(a[1] + (b[1] - a[1]) * f),
      Math.round(a[2] + (b[2] - a[2]) * f),
    ];
  };
}

/**
 * Paint the cells of `matrix` seen in a w × h pixel area whose top-left is (left, top), cells laid
 * out by `g`: RGBA pixels, transparent where a cell is null, NaN or skipped (0 with skipZeros).
 */
export function paintCells(
  matrix: (number | null)[][],
  g: CellGeometry,
  left: number,
  top: number,
  w: number,
  h: number,
  color: (v: number) => [number, number, number],
  skipZeros = false,
): Uint8ClampedArray<ArrayBuffer> {
  const px = new Uint8ClampedArray(w * h * 4);
  const cols = new Int32Array(w);
  for (let x = 0; x < w; x++) cols[x] = Math.floor((left + x + 0.5 - g.x0) / g.cw);
  // A cell spans several pixels: its colour is computed once per pixel row, and a pixel row of
  // the same matrix row as the one above is a copy of it (a 256 × 256 matrix in a 600-pixel
  // square: 65k colours instead of 360k, which took a tenth of a second).
  let above = -1; // the matrix row the pixel row above painted (-1: none)
  for (let y = 0; y < h; y++) {
    const r = Math.floor((top + y + 0.5 - g.y0) / g.ch);
    const row = r >= 0 && r < g.rows ? matrix[r] : undefined;
    if (!row) {
      above = -1;
      continue;
    }
    const o0 = y * w * 4;
    if (r === above) {
      px.copyWithin(o0, o0 - w * 4, o0);
      continue;
    }
    above = r;
    let last = -2; // the cell of the pixel to the left
    let shown = false;
    let cr = 0;
    let cg = 0;
    let cb = 0;
    for (let x = 0, o = o0; x < w; x++, o += 4) {
      const c = cols[x];
      if (c !== last) {
        last = c;
        const v = c >= 0 && c < g.cols ? row[c] : null;
        shown = !(v === null || v === undefined || Number.isNaN(v) || (skipZeros && v === 0));
        if (shown) [cr, cg, cb] = color(v as number);
      }
      if (!shown) continue;
      px[o] = cr;
      px[o + 1] = cg;
      px[o + 2] = cb;
      px[o + 3] = 255;
    }
  }
  return px;
}

export interface HeatmapSpec {
  title: string;
  file: string;
  matrix: (number | null)[][]; // [row][col]
  xLabels: string[];
  yLabels: string[];
  xName?: string;
  yName?: string;
  min?: number;
  max?: number;
  /** skip cells equal to 0 (e.g. the causal upper triangle): half the data to draw */
  skipZeros?: boolean;
  diverging?: boolean;
  /** tooltip text for cell (row, col, value) */
  cellText?: (row: number, col: number, value: number) => string;
  /** colour-scale top at this quantile of the values (attention: a few sinks would wash out the rest) */
  clipQuantile?: number;
  /** dataZoom sliders on both axes */
  zoom?: boolean;
  invertY?: boolean;
  /** always draw cell by cell, however large (cells styled or clicked one by one: head maps) */
  cellByCell?: boolean;
}

/** [col, row, value] triples, the layout ECharts' heatmap reads. */
export function cells(matrix: (number | null)[][], skipZeros = false): [number, number, number][] {
  const out: [number, number, number][] = [];
  matrix.forEach((row, r) =>
    row.forEach((v, c) => {
      if (v === null || Number.isNaN(v) || (skipZeros && v === 0)) return;
      out.push([c, r, v]);
    }),
  );
  return out;
}

/** The values of the cells `cells` would list, in the same order. */
export function cellValues(matrix: (number | null)[][], skipZeros = false): Float64Array {
  let n = 0;
  for (const row of matrix) for (const v of row) if (!(v === null || Number.isNaN(v) || (skipZeros && v === 0))) n++;
  const out = new Float64Array(n);
  let i = 0;
  for (const row of matrix)
    for (const v of row) if (!(v === null || Number.isNaN(v) || (skipZeros && v === 0))) out[i++] = v;
  return out;
}

/** The q-quantile of values (0..1), by sorting a typed copy (a numeric sort, no comparator:
 * a tenth of the time of an array's sort on the 33k cells of a long run's attention). */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return 0;
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))];
}

export { labelInterval } from "./common";

export function heatmapOption(spec: HeatmapSpec, theme: Theme): Option {
  const painted = !spec.cellByCell && spec.matrix.length * (spec.matrix[0]?.length ?? 0) > IMAGE_CELLS;
  // a painted matrix needs its values only, not ECharts' [col, row, value] triples
  const data = painted ? [] : cells(spec.matrix, spec.skipZeros);
  const values = painted ? cellValues(spec.matrix, spec.skipZeros) : data.map((d) => d[2]);
  let lo = spec.min;
  let hi = spec.max;
  if (spec.clipQuantile !== undefined && hi === undefined) {
    const q = quantile(values, spec.clipQuantile);
    if (q > (lo ?? 0)) hi = q;
  }
  if (lo === undefined || hi === undefined) {
    let mn = Infinity;
    let mx = -Infinity;
    for (const v of values) {
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    if (spec.diverging) {
      const m = Math.max(Math.abs(mn), Math.abs(mx)) || 1;
      mn = -m;
      mx = m;
    }
    lo ??= Number.isFinite(mn) ? mn : 0;
    hi ??= Number.isFinite(mx) && mx > lo ? mx : lo + 1;
  }
  const zoom = spec.zoom
    ? [
        { type: "inside", xAxisIndex: 0, filterMode: "none" },
        { type: "inside", yAxisIndex: 0, filterMode: "none" },
        {
          type: "slider",
          xAxisIndex: 0,
          height: 14,
          bottom: 6,
          filterMode: "none",
          textStyle: { color: theme.muted },
          borderColor: theme.grid,
        },
        {
          type: "slider",
          yAxisIndex: 0,
          width: 14,
          right: 62,
          filterMode: "none",
          showDetail: false,
          borderColor: theme.grid,
        },
      ]
    : undefined;
  const option: Option = {
    ...base(theme, spec.title, spec.file),
    tooltip: {
      ...(base(theme, "").tooltip as Option),
      formatter: (p: { value: [number, number, number] }) => {
        const [c, r, v] = p.value;
        if (spec.cellText) return spec.cellText(r, c, v);
        return `${esc(spec.yLabels[r] ?? String(r))} → ${esc(spec.xLabels[c] ?? String(c))}<br><b>${fmt(v)}</b>`;
      },
    },
    grid: { left: 8, right: spec.zoom ? 88 : 64, top: 40, bottom: spec.zoom ? 34 : 12, containLabel: true },
    xAxis: {
      ...labelAxis(theme, spec.xLabels, 24, 60),
      name: spec.xName,
      nameLocation: "middle",
      nameGap: 0,
      splitLine: { show: false },
    },
    yAxis: {
      ...labelAxis(theme, spec.yLabels, 28),
      inverse: spec.invertY ?? true,
      name: spec.yName,
      splitLine: { show: false },
    },
    visualMap: {
      min: lo,
      max: hi,
      calculable: true,
      orient: "vertical",
      right: 4,
      top: "middle",
      itemHeight: 140,
      itemWidth: 10,
      align: "left",
      inRange: { color: spec.diverging ? theme.diverging : theme.heat },
      textStyle: { color: theme.muted, fontSize: 10 },
      formatter: (v: number) => fmt(v, 3),
    },
    dataZoom: zoom,
    series: [
      {
        type: "heatmap",
        data,
        progressive: 20000,
        emphasis: { itemStyle: { borderColor: theme.text, borderWidth: 1 } },
      },
    ],
  };
  return painted ? imageHeatmap(option, spec, lo, hi, theme, values.length) : option;
}

/**
 * A custom series that paints `matrix` into one image of its grid's visible area at each layout
 * (see the module's comment); `seen` gets the cells' geometry of each paint. `cells`: how many
 * cells it shows (the browser tests count them as the series' data). `extra`: axis indices etc.
 */
export function paintedSeries(
  matrix: (number | null)[][],
  color: (v: number) => [number, number, number],
  skipZeros: boolean,
  seen: (g: CellGeometry) => void,
  cells: number,
  extra: Option = {},
): Option {
  const rows = matrix.length;
  const cols = rows ? Math.max(...matrix.map((r) => r.length)) : 0;
  const renderItem = (
    params: { coordSys: { x: number; y: number; width: number; height: number } },
    api: { coord: (v: number[]) => number[]; size: (v: number[]) => number[]; getDevicePixelRatio?: () => number },
  ) => {
    const [x0, y0] = api.coord([0, 0]);
    const [cw, ch] = api.size([1, 1]);
    const [, yLast] = api.coord([0, rows - 1]);
    const down = yLast >= y0; // row 0 at the top
    const g: CellGeometry = {
      x0: x0 - cw / 2,
      y0: down ? y0 - ch / 2 : y0 + ch / 2,
      cw,
      ch: down ? ch : -ch,
      cols,
      rows,
    };
    seen(g);
    const box = params.coordSys;
    const scale = Math.min(2, api.getDevicePixelRatio?.() ?? 1);
    const w = Math.max(1, Math.round(box.width * scale));
    const h = Math.max(1, Math.round(box.height * scale));
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const scaled = { ...g, x0: (g.x0 - box.x) * scale, y0: (g.y0 - box.y) * scale, cw: g.cw * scale, ch: g.ch * scale };
    const pixels = paintCells(matrix, scaled, 0, 0, w, h, color, skipZeros);
    canvas.getContext("2d")?.putImageData(new ImageData(pixels, w, h), 0, 0);
    return { type: "image", style: { image: canvas, x: box.x, y: box.y, width: box.width, height: box.height } };
  };
  return { type: "custom", renderItem, data: [[0, 0]], clip: true, paintedCells: cells, ...extra };
}

/** The same chart painted as an image (see the module's comment); what `heatmapOption` returns
 * for matrices above IMAGE_CELLS cells. The visual map shows the scale (not draggable here). */
function imageHeatmap(option: Option, spec: HeatmapSpec, lo: number, hi: number, theme: Theme, cells: number): Option {
  const ramp = colorRamp(spec.diverging ? theme.diverging : theme.heat);
  const span = hi - lo || 1;
  let geometry: CellGeometry | null = null;
  const text = (r: number, c: number) => {
    const v = spec.matrix[r]?.[c];
    if (v === null || v === undefined || Number.isNaN(v) || (spec.skipZeros && v === 0)) return "";
    if (spec.cellText) return spec.cellText(r, c, v);
    return `${esc(spec.yLabels[r] ?? String(r))} → ${esc(spec.xLabels[c] ?? String(c))}<br><b>${fmt(v)}</b>`;
  };
  const image = paintedSeries(
    spec.matrix,
    (v) => ramp((v - lo) / span),
    spec.skipZeros ?? false,
    (g) => (geometry = g),
    cells,
  );
  const { visualMap } = option as { visualMap: Option };
  return {
    ...option,
    tooltip: {
      ...(option.tooltip as Option),
      formatter: () => {
        const cell = cellAt(geometry, pointer.x, pointer.y);
        return cell ? text(cell[0], cell[1]) : "";
      },
    },
    visualMap: { ...visualMap, calculable: false, seriesIndex: 1 },
    series: [
      image,
      { type: "heatmap", id: SCALE_ONLY, data: [] }, // the visual map's series: the scale it shows
    ],
    /** (row, col) of the cell at a pixel of the chart (clicks) */
    cellAt: (x: number, y: number) => cellAt(geometry, x, y),
  };
}
