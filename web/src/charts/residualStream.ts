/**
 * Layers tab: the residual stream at one position, layer by layer: its norm and the norms of
 * what attention and the MLP add (lines), and each part's direct effect on the chosen token's
 * logit (bars), which sum to the logit. A family whose layers add a third part (Gemma 4's
 * per-layer input and scale, Falcon-H1's Mamba mixer) gets its norm and bars too, named.
 */
import type { ResidualStreamView } from "../api/views";
import { axisStyle, base, fmt, type Option, type ReportRenderer } from "./common";
import type { Theme } from "./theme";

export function residualStreamOption(view: ResidualStreamView, theme: Theme, title: string): Option {
  const xl = view.layers.map((l) => `L${l.layer}`);
  // with a foil the bars are effects on logit(token) − logit(foil)
  const target = view.foil_id !== null && view.foil_id !== undefined ? "logit diff" : "logit";
  const extra = view.extra_part
    ? [
        {
          name: `‖${view.extra_part}‖`,
          type: "line",
          data: view.layers.map((l) => l.extra_norm ?? null),
          color: theme.muted,
          showSymbol: false,
          lineStyle: { type: "dotted" },
        },
        {
          name: `${view.extra_part} → ${target}`,
          type: "bar",
          yAxisIndex: 1,
          stack: "logit",
          data: view.layers.map((l) => l.extra_logit ?? null),
          color: theme.muted,
          itemStyle: { opacity: 0.55 },
        },
      ]
    : [];
  const b = base(theme, title, `llmvis-residual-${view.position}`);
  return {
    ...b,
    tooltip: { ...(b.tooltip as Option), trigger: "axis", valueFormatter: (v: number) => fmt(v) },
    legend: { top: 26, left: 8, itemHeight: 8, textStyle: { color: theme.muted, fontSize: 11 } },
    grid: { left: 8, right: 8, top: 56, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: xl, ...axisStyle(theme) },
    yAxis: [
      { type: "value", ...axisStyle(theme) },
      { type: "value", ...axisStyle(theme), splitLine: { show: false } },
    ],
    series: [
      {
        name: "‖residual‖",
        type: "line",
        data: view.layers.map((l) => l.residual_norm),
        color: theme.text,
        showSymbol: false,
      },
      {
        name: "‖attn‖",
        type: "line",
        data: view.layers.map((l) => l.attn_norm),
        color: theme.accent,
        showSymbol: false,
        lineStyle: { type: "dashed" },
      },
      {
        name: "‖mlp‖",
        type: "line",
        data: view.layers.map((l) => l.mlp_norm),
        color: theme.accent2,
        showSymbol: false,
        lineStyle: { type: "dashed" },
      },
      {
        name: `attn → ${target}`,
        type: "bar",
        yAxisIndex: 1,
        stack: "logit",
        data: view.layers.map((l) => l.attn_logit),
        color: theme.accent,
        itemStyle: { opacity: 0.55 },
      },
      {
        name: `mlp → ${target}`,
        type: "bar",
        yAxisIndex: 1,
        stack: "logit",
        data: view.layers.map((l) => l.mlp_logit),
        color: theme.accent2,
        itemStyle: { opacity: 0.55 },
      },
      ...extra,
    ],
  };
}

export const residualStreamReport: ReportRenderer<"residual_stream"> = {
  view: "residual_stream",
  render: (view, _tokens, theme, title) => residualStreamOption(view, theme, title),
};
