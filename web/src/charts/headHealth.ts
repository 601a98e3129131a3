/** Heads tab: what each head does (sink, previous-token, induction, focused, diffuse) as a map. */
import type { HeadHealthView } from "../api/views";
import { axisStyle, base, fmt, type Option, type ReportRenderer } from "./common";
import type { Theme } from "./theme";

export const HEAD_LABELS = ["sink", "previous-token", "induction", "focused", "diffuse"] as const;
const COLORS = ["#8e6cef", "#43b0a4", "#f2a541", "#5b9cff", "#6b7488"];

export function headHealthOption(view: HeadHealthView, theme: Theme, title: string): Option {
  const data = view.scores.map((s) => [s.head, s.layer, HEAD_LABELS.indexOf(s.label)]);
  const byKey = new Map(view.scores.map((s) => [`${s.layer}:${s.head}`, s]));
  const b = base(theme, title, "llmvis-head-health");
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      formatter: (p: { value: [number, number, number] }) => {
        const s = byKey.get(`${p.value[1]}:${p.value[0]}`)!;
        return [
          `layer ${s.layer}, head ${s.head}: <b>${s.label}</b>`,
          `sink ${fmt(s.sink)} · previous ${fmt(s.previous)}`,
          `induction ${fmt(s.induction)} · entropy ${fmt(s.entropy)}`,
        ].join("<br>");
      },
    },
    grid: { left: 8, right: 120, top: 40, bottom: 12, containLabel: true },
    xAxis: {
      type: "category",
      data: Array.from({ length: view.heads }, (_, h) => `H${h}`),
      ...axisStyle(theme),
      splitLine: { show: false },
    },
    yAxis: {
      type: "category",
      inverse: true,
      data: Array.from({ length: view.layers }, (_, l) => `L${l}`),
      ...axisStyle(theme),
      splitLine: { show: false },
    },
    visualMap: {
      type: "piecewise",
      orient: "vertical",
      right: 6,
      top: "middle",
      pieces: HEAD_LABELS.map((label, i) => ({ value: i, label, color: COLORS[i] })),
      textStyle: { color: theme.muted, fontSize: 11 },
    },
    series: [{ type: "heatmap", data, itemStyle: { borderColor: theme.panel, borderWidth: 1 } }],
  };
}

export const headHealthReport: ReportRenderer<"head_health"> = {
  view: "head_health",
  render: (view, _tokens, theme, title) => headHealthOption(view, theme, title),
};
