/** Attribution tab: how much each earlier token contributed to the selected one (signed). */
import type { AttributionView } from "../api/views";
import { axisStyle, base, esc, fmt, pct, posLabel, type Option, type ReportRenderer } from "./common";
import { labelInterval } from "./heatmap";
import type { Theme } from "./theme";

/**
 * `hideFirst` leaves out position 0: attention sinks there take most of the rollout flow and
 * flatten every other bar.
 */
export function attributionOption(view: AttributionView, theme: Theme, title: string, hideFirst = false): Option {
  const keep = view.positions.map((_, i) => i).filter((i) => !(hideFirst && view.positions[i] === 0));
  view = {
    ...view,
    positions: keep.map((i) => view.positions[i]),
    labels: keep.map((i) => view.labels[i]),
    scores: keep.map((i) => view.scores[i]),
    share: keep.map((i) => view.share[i]),
  };
  const xl = view.positions.map((p, i) => posLabel(p, view.labels[i] ?? ""));
  const b = base(theme, title, `llmvis-attribution-${view.method}-${view.position}`);
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "axis",
      axisPointer: { type: "shadow" },
      formatter: (ps: { dataIndex: number }[]) => {
        const i = ps[0].dataIndex;
        return `<b>${esc(xl[i])}</b><br>score ${fmt(view.scores[i])}<br>share ${pct(view.share[i])}`;
      },
    },
    grid: { left: 8, right: 16, top: 44, bottom: 40, containLabel: true },
    dataZoom:
      view.positions.length > 80
        ? [{ type: "inside" }, { type: "slider", height: 14, bottom: 6, borderColor: theme.grid }]
        : undefined,
    xAxis: {
      type: "category",
      data: xl,
      ...axisStyle(theme),
      axisLabel: { color: theme.muted, fontSize: 10, rotate: 55, interval: labelInterval(xl.length, 30) },
    },
    yAxis: { type: "value", ...axisStyle(theme) },
    series: [
      {
        type: "bar",
        data: view.scores.map((s) => ({ value: s, itemStyle: { color: s >= 0 ? theme.accent : theme.diverging[2] } })),
        barMaxWidth: 18,
      },
    ],
  };
}

export const attributionReport: ReportRenderer<"attribution"> = {
  view: "attribution",
  render: (view, _tokens, theme, title) => attributionOption(view, theme, title, true),
};
