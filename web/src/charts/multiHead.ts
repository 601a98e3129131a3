/**
 * Heads tab: every head of one layer side by side, each a small (pooled) attention matrix; above
 * IMAGE_CELLS cells in all, each head is painted as an image (charts/heatmap.ts).
 */
import type { MultiHeadView } from "../api/views";
import { base, fmt, type Option, type ReportRenderer } from "./common";
import { type CellGeometry, cellAt, cells, colorRamp, IMAGE_CELLS, paintedSeries, pointer } from "./heatmap";
import type { Theme } from "./theme";

export function gridShape(n: number): [number, number] {
  const cols = Math.ceil(Math.sqrt(n));
  return [cols, Math.ceil(n / cols)];
}

export function multiHeadOption(view: MultiHeadView, theme: Theme, title: string): Option {
  const [cols, rowsN] = gridShape(view.heads);
  const gap = 2; // percent
  const w = (100 - 4 - gap * (cols - 1)) / cols;
  const hgt = (100 - 14 - gap * (rowsN - 1) - 10) / rowsN;
  const grids: Option[] = [];
  const xAxes: Option[] = [];
  const yAxes: Option[] = [];
  const series: Option[] = [];
  const titles: Option[] = [];
  const painted = view.matrices.reduce((n, m) => n + m.length * (m[0]?.length ?? 0), 0) > IMAGE_CELLS;
  const ramp = colorRamp(theme.heat);
  const geometry: (CellGeometry | null)[] = view.matrices.map(() => null);
  view.matrices.forEach((m, h) => {
    const col = h % cols;
    const row = Math.floor(h / cols);
    const left = 2 + col * (w + gap);
    const top = 12 + row * (hgt + gap + 3);
    grids.push({ left: `${left}%`, top: `${top}%`, width: `${w}%`, height: `${hgt}%` });
    const n = m.length;
    xAxes.push({ type: "category", gridIndex: h, data: view.col_indices.slice(0, m[0]?.length ?? 0), show: false });
    yAxes.push({ type: "category", gridIndex: h, data: view.row_indices.slice(0, n), show: false, inverse: true });
    const data = cells(m, true);
    const axes = { name: `H${h}`, xAxisIndex: h, yAxisIndex: h };
    series.push(
      painted
        ? paintedSeries(m, ramp, true, (g) => (geometry[h] = g), data.length, axes)
        : { ...axes, type: "heatmap", data },
    );
    titles.push({
      text: `H${h}`,
      left: `${left}%`,
      top: `${top - 3}%`,
      textStyle: { fontSize: 10, color: theme.muted, fontWeight: 500 },
    });
  });
  const b = base(theme, title, `llmvis-heads-L${view.layer}`);
  return {
    ...b,
    title: [b.title, ...titles],
    grid: grids,
    xAxis: xAxes,
    yAxis: yAxes,
    tooltip: {
      ...(b.tooltip as Option),
      formatter: (p: { seriesName: string; seriesIndex: number; value: [number, number, number] }) => {
        let [key, query, weight] = p.value;
        if (painted) {
          const cell = cellAt(geometry[p.seriesIndex], pointer.x, pointer.y);
          const v = cell ? view.matrices[p.seriesIndex][cell[0]]?.[cell[1]] : null;
          if (!cell || !v) return "";
          [query, key, weight] = [cell[0], cell[1], v];
        }
        const where = `${p.seriesName} · query ${view.row_indices[query]} → key ${view.col_indices[key]}`;
        return `${where}<br>attention <b>${fmt(weight)}</b>`;
      },
    },
    visualMap: painted
      ? undefined
      : { min: 0, max: 1, show: false, inRange: { color: theme.heat }, seriesIndex: series.map((_, i) => i) },
    series,
  };
}

export const multiHeadReport: ReportRenderer<"multi_head"> = {
  view: "multi_head",
  render: (view, _tokens, theme, title) => multiHeadOption(view, theme, title),
};
