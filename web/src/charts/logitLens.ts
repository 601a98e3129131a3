/**
 * Layers tab: the logit lens at one position. Each row is a layer's hidden state read through
 * the final norm and unembedding; cells are its top-k tokens (labelled) coloured by
 * probability, and the last column is the probability of the token actually chosen.
 */
import type { LogitLensView } from "../api/views";
import { axisStyle, base, esc, fmt, pct, short, type Option, type ReportRenderer } from "./common";
import type { Theme } from "./theme";

export function logitLensOption(view: LogitLensView, theme: Theme, title: string): Option {
  const k = Math.max(0, ...view.layers.map((l) => l.top.length));
  const foil = view.foil_id !== null && view.foil_id !== undefined ? (view.foil_label ?? String(view.foil_id)) : null;
  const cols = [
    ...Array.from({ length: k }, (_, i) => `#${i + 1}`),
    `▶ ${short(view.token_label, 10)}`,
    ...(foil === null ? [] : [`vs ${short(foil, 10)}`]),
  ];
  const ylabels = view.layers.map((l) => (l.layer === 0 ? "emb" : `L${l.layer}`));
  const data: { value: [number, number, number]; label: string }[] = [];
  view.layers.forEach((l, r) => {
    l.top.forEach((tk, c) => data.push({ value: [c, r, tk.prob], label: tk.label }));
    data.push({ value: [k, r, l.target_prob], label: `r${l.target_rank}` });
    if (foil !== null) data.push({ value: [k + 1, r, l.foil_prob ?? 0], label: `r${l.foil_rank ?? "?"}` });
  });
  const b = base(theme, title, `llmvis-logit-lens-${view.position}`);
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      formatter: (p: { dataIndex: number }) => {
        const d = data[p.dataIndex];
        const l = view.layers[d.value[1]];
        const head =
          d.value[0] === k
            ? `${esc(view.token_label)} (chosen): rank ${l.target_rank}`
            : d.value[0] === k + 1
              ? `${esc(foil ?? "")} (foil): rank ${l.foil_rank}<br>logit gap (chosen − foil) <b>${fmt(l.logit_gap)}</b>`
              : `<b>${esc(d.label)}</b>`;
        return `${ylabels[d.value[1]]}: ${head}<br>p = ${pct(d.value[2])} (${fmt(d.value[2])})<br>entropy ${fmt(l.entropy)} nats`;
      },
    },
    grid: { left: 8, right: 70, top: 40, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: cols, position: "top", ...axisStyle(theme), splitLine: { show: false } },
    yAxis: { type: "category", data: ylabels, inverse: true, ...axisStyle(theme), splitLine: { show: false } },
    visualMap: {
      min: 0,
      max: 1,
      calculable: true,
      right: 6,
      top: "middle",
      itemHeight: 140,
      itemWidth: 10,
      inRange: { color: theme.heat },
      textStyle: { color: theme.muted, fontSize: 10 },
    },
    series: [
      {
        type: "heatmap",
        data,
        label: {
          show: true,
          fontSize: 10,
          color: theme.text,
          formatter: (p: { data: { label: string } }) => short(p.data.label, 9),
          textBorderColor: theme.panel,
          textBorderWidth: 2,
        },
        itemStyle: { borderColor: theme.panel, borderWidth: 1 },
      },
    ],
  };
}

export const logitLensReport: ReportRenderer<"logit_lens"> = {
  view: "logit_lens",
  render: (view, _tokens, theme, title) => logitLensOption(view, theme, title),
};
