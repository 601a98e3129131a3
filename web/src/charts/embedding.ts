/**
 * Embedding tab: each position's hidden state at one layer projected to 2D or 3D (PCA, UMAP
 * or t-SNE on the server), coloured by position; prompt tokens are circles, generated ones
 * diamonds. 3D uses echarts-gl's scatter3D.
 */
import type { EmbeddingView } from "../api/views";
import { axisStyle, base, esc, fmt, type Option, type ReportRenderer } from "./common";
import type { Theme } from "./theme";

export function embeddingOption(view: EmbeddingView, theme: Theme, title: string, selected: number | null): Option {
  const three = view.dims === 3 && view.coords.every((c) => c.length >= 3);
  const point = (i: number) => {
    const c = view.coords[i];
    return three ? [c[0], c[1], c[2], view.positions[i]] : [c[0], c[1], view.positions[i]];
  };
  const idx = view.positions.map((_, i) => i);
  const prompt = idx.filter((i) => view.positions[i] < view.prompt_len);
  const gen = idx.filter((i) => view.positions[i] >= view.prompt_len);
  const b = base(theme, title, `llmvis-embedding-L${view.layer}-${view.method}`);
  const ratio = view.explained_variance_ratio;
  const axisName = (k: number) =>
    ratio ? `${view.method.toUpperCase()}${k + 1} (${fmt(ratio[k] * 100, 3)}%)` : `${view.method}${k + 1}`;
  const label = (i: number) => `${view.positions[i]} ${view.labels[i]}`;
  const tooltip = {
    ...(b.tooltip as Option),
    formatter: (p: { value: number[]; dataIndex: number; seriesIndex: number }) => {
      const i = (p.seriesIndex === 0 ? prompt : gen)[p.dataIndex];
      return `<b>${esc(label(i))}</b><br>${view.coords[i].map((v) => fmt(v)).join(", ")}`;
    },
  };
  const lastDim = three ? 3 : 2;
  const visualMap = {
    type: "continuous",
    min: 0,
    max: Math.max(1, ...view.positions),
    dimension: lastDim,
    calculable: true,
    orient: "horizontal",
    left: "center",
    bottom: 4,
    itemWidth: 10,
    itemHeight: 160,
    text: ["last", "position 0"],
    textStyle: { color: theme.muted, fontSize: 10 },
    inRange: { color: ["#5b9cff", "#43b0a4", "#c6e377", "#f2a541", "#e0603a"] },
  };
  const sel = selected === null ? -1 : view.positions.indexOf(selected);
  if (three) {
    const ax = (k: number) => ({
      name: axisName(k),
      nameTextStyle: { color: theme.muted },
      axisLabel: { textStyle: { color: theme.muted } },
      axisLine: { lineStyle: { color: theme.grid } },
      splitLine: { lineStyle: { color: theme.grid, opacity: 0.4 } },
    });
    return {
      ...b,
      tooltip,
      visualMap,
      grid3D: {
        top: 20,
        bottom: 50,
        viewControl: { autoRotate: false, distance: 250 },
        axisPointer: { show: false },
        environment: "none",
        light: { main: { intensity: 1.2 } },
      },
      xAxis3D: { type: "value", ...ax(0) },
      yAxis3D: { type: "value", ...ax(1) },
      zAxis3D: { type: "value", ...ax(2) },
      series: [
        { name: "prompt", type: "scatter3D", data: prompt.map(point), symbolSize: 6, symbol: "circle" },
        { name: "generated", type: "scatter3D", data: gen.map(point), symbolSize: 8, symbol: "diamond" },
      ],
    };
  }
  return {
    ...b,
    tooltip,
    visualMap,
    legend: { top: 26, left: 8, itemHeight: 8, textStyle: { color: theme.muted }, data: ["prompt", "generated"] },
    grid: { left: 8, right: 24, top: 56, bottom: 66, containLabel: true },
    xAxis: { type: "value", name: axisName(0), nameLocation: "middle", nameGap: 24, scale: true, ...axisStyle(theme) },
    yAxis: { type: "value", name: axisName(1), scale: true, ...axisStyle(theme) },
    dataZoom: [
      { type: "inside", xAxisIndex: 0, filterMode: "none" },
      { type: "inside", yAxisIndex: 0, filterMode: "none" },
    ],
    series: [
      {
        name: "prompt",
        type: "scatter",
        data: prompt.map(point),
        symbolSize: 7,
        symbol: "circle",
        itemStyle: { opacity: 0.85 },
      },
      {
        name: "generated",
        type: "scatter",
        data: gen.map(point),
        symbolSize: 9,
        symbol: "diamond",
        itemStyle: { opacity: 0.9 },
        markPoint:
          sel >= 0
            ? {
                symbol: "pin",
                symbolSize: 30,
                data: [{ coord: view.coords[sel].slice(0, 2), value: view.positions[sel] }],
                itemStyle: { color: theme.warn },
              }
            : undefined,
      },
    ],
  };
}

/** No WebGL library in the report: a 3D projection is drawn on its first two axes. */
export const embeddingReport: ReportRenderer<"embedding"> = {
  view: "embedding",
  render: (view, _tokens, theme, title) =>
    embeddingOption({ ...view, dims: 2, coords: view.coords.map((c) => c.slice(0, 2)) }, theme, title, null),
};
