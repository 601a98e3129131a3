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
  /** colour-scale top at this quantile of the values (attention: a few sinks would wash out the rest) */
  clipQuantile?: number;
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

/** The q-quantile of values (0..1), by sorting a copy. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))];
}

/** Show about `max` labels on a category axis of `n` entries. */
export function labelInterval(n: number, max: number): number {
  return Math.max(0, Math.ceil(n / max) - 1);
}

export function heatmapOption(spec: HeatmapSpec, theme: Theme): Option {
  const data = cells(spec.matrix, spec.skipZeros);
  let lo = spec.min;
  let hi = spec.max;
  if (spec.clipQuantile !== undefined && hi === undefined) {
    const q = quantile(
      data.map((d) => d[2]),
      spec.clipQuantile,
    );
    if (q > (lo ?? 0)) hi = q;
  }
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
    grid: { left: 8, right: spec.zoom ? 88 : 64, top: 40, bottom: spec.zoom ? 34 : 12, containLabel: true },
    xAxis: {
      type: "category",
      data: spec.xLabels,
      name: spec.xName,
      nameLocation: "middle",
      nameGap: 0,
      ...axisStyle(theme),
      splitLine: { show: false },
      axisLabel: {
        color: theme.muted,
        fontSize: 10,
        rotate: 60,
        interval: labelInterval(spec.xLabels.length, 24),
        fontFamily: "ui-monospace, monospace",
      },
    },
    yAxis: {
      type: "category",
      data: spec.yLabels,
      inverse: spec.invertY ?? true,
      name: spec.yName,
      ...axisStyle(theme),
      splitLine: { show: false },
      axisLabel: {
        color: theme.muted,
        fontSize: 10,
        interval: labelInterval(spec.yLabels.length, 28),
        fontFamily: "ui-monospace, monospace",
      },
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
}
