/** The heatmap most views share: a matrix with labelled axes, a colour scale and exact tooltips. */
import { axisStyle, base, esc, fmt, type Option } from "./common";
import type { Theme } from "./theme";

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
  /** dataZoom sliders on both axes */
  zoom?: boolean;
  invertY?: boolean;
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

export function heatmapOption(spec: HeatmapSpec, theme: Theme): Option {
  const data = cells(spec.matrix, spec.skipZeros);
  let lo = spec.min;
  let hi = spec.max;
  if (lo === undefined || hi === undefined) {
    let mn = Infinity;
    let mx = -Infinity;
    for (const [, , v] of data) {
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
        { type: "slider", xAxisIndex: 0, height: 14, bottom: 6, filterMode: "none", textStyle: { color: theme.muted }, borderColor: theme.grid },
        { type: "slider", yAxisIndex: 0, width: 14, right: 70, filterMode: "none", textStyle: { color: theme.muted }, borderColor: theme.grid },
      ]
    : undefined;
  return {
    ...base(theme, spec.title, spec.file),
    tooltip: {
      ...(base(theme, "").tooltip as Option),
      formatter: (p: { value: [number, number, number] }) => {
        const [c, r, v] = p.value;
        if (spec.cellText) return spec.cellText(r, c, v);
        return `${esc(spec.yLabels[r] ?? String(r))} → ${esc(spec.xLabels[c] ?? String(c))}<br><b>${fmt(v)}</b>`;
      },
    },
    grid: { left: 8, right: spec.zoom ? 96 : 72, top: 40, bottom: spec.zoom ? 34 : 12, containLabel: true },
    xAxis: {
      type: "category", data: spec.xLabels, name: spec.xName, nameLocation: "middle", nameGap: 0,
      ...axisStyle(theme), splitLine: { show: false },
      axisLabel: { color: theme.muted, fontSize: 10, rotate: 60, hideOverlap: true, fontFamily: "ui-monospace, monospace" },
    },
    yAxis: {
      type: "category", data: spec.yLabels, inverse: spec.invertY ?? true, name: spec.yName,
      ...axisStyle(theme), splitLine: { show: false },
      axisLabel: { color: theme.muted, fontSize: 10, hideOverlap: true, fontFamily: "ui-monospace, monospace" },
    },
    visualMap: {
      min: lo, max: hi, calculable: true, orient: "vertical", right: 6, top: "middle", itemHeight: 140, itemWidth: 10,
      inRange: { color: spec.diverging ? theme.diverging : theme.heat },
      textStyle: { color: theme.muted, fontSize: 10 },
      formatter: (v: number) => fmt(v, 3),
    },
    dataZoom: zoom,
    series: [{ type: "heatmap", data, progressive: 20000, emphasis: { itemStyle: { borderColor: theme.text, borderWidth: 1 } } }],
  };
}
