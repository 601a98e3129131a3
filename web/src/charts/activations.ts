/**
 * Activations tab: for each layer a histogram of MLP activations (or attention outputs) over
 * bin edges shared by all layers, drawn as a layer × value heatmap of log-counts, and the
 * per-layer spread (std, |max|) as lines.
 */
import type { Distributions } from "../api/views";
import { axisStyle, base, fmt, type Option, type ReportRenderer } from "./common";
import { heatmapOption } from "./heatmap";
import type { Theme } from "./theme";

export function activationsOption(d: Distributions, theme: Theme, title: string): Option {
  const centres = d.edges.slice(0, -1).map((e, i) => (e + d.edges[i + 1]) / 2);
  const matrix = d.layers.map((l) => l.counts.map((c) => (c > 0 ? Math.log10(c) : 0)));
  return heatmapOption(
    {
      title,
      file: `llmvis-activations-${d.kind}`,
      matrix,
      xLabels: centres.map((c) => fmt(c, 3)),
      yLabels: d.layers.map((l) => `L${l.layer}`),
      min: 0,
      skipZeros: true,
      cellText: (r, c) => {
        const l = d.layers[r];
        return [
          `layer ${l.layer}: ${fmt(d.edges[c])} … ${fmt(d.edges[c + 1])}`,
          `<b>${l.counts[c]}</b> of ${l.n} values`,
          `mean ${fmt(l.mean)} · std ${fmt(l.std)} · kurtosis ${fmt(l.kurtosis)}`,
        ].join("<br>");
      },
    },
    theme,
  );
}

export function activationStatsOption(d: Distributions, theme: Theme, title: string): Option {
  const layers = d.layers.map((l) => `L${l.layer}`);
  const b = base(theme, title, `llmvis-activation-stats-${d.kind}`);
  return {
    ...b,
    tooltip: { ...(b.tooltip as Option), trigger: "axis", valueFormatter: (v: number) => fmt(v) },
    legend: { top: 26, left: 8, itemHeight: 8, textStyle: { color: theme.muted } },
    grid: { left: 8, right: 16, top: 56, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: layers, ...axisStyle(theme) },
    yAxis: { type: "log", ...axisStyle(theme), name: "" },
    series: [
      {
        name: "std",
        type: "line",
        data: d.layers.map((l) => Math.max(l.std, 1e-6)),
        showSymbol: false,
        color: theme.accent,
      },
      {
        name: "|max|",
        type: "line",
        data: d.layers.map((l) => Math.max(l.abs_max, 1e-6)),
        showSymbol: false,
        color: theme.accent2,
      },
    ],
  };
}

/** The report shows the MLP distributions (the tab's default). */
export const activationsReport: ReportRenderer<"activations"> = {
  view: "activations",
  render: (view, _tokens, theme, title) => activationsOption(view.mlp, theme, title),
};
