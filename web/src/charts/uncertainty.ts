/**
 * Uncertainty tab: the entropy curve over the run (in position order or sorted, highest
 * first) with the chosen token's confidence on a second axis.
 */
import type { TokensView } from "../api/views";
import { axisStyle, base, esc, fmt, pct, posLabel, probabilityAxis, type Option, type ReportRenderer } from "./common";
import { labelInterval } from "./heatmap";
import type { Theme } from "./theme";

export interface UncertaintyText {
  title: string;
  entropy: string;
  confidence: string;
  upper: string; // the upper bound's series name (remote engines)
}

export function entropyCurveOption(
  view: TokensView,
  labels: string[],
  sortByEntropy: boolean,
  theme: Theme,
  text: UncertaintyText,
  selected: number | null,
): Option {
  const all = sortByEntropy ? view.order : view.entropy.map((_, i) => i);
  const order = all.filter((p) => view.entropy[p] !== null && view.entropy[p] !== undefined);
  const xl = order.map((p) => posLabel(p, labels[p] ?? ""));
  const b = base(theme, text.title, "llmvis-entropy");
  const selIdx = selected === null ? -1 : order.indexOf(selected);
  // A remote engine's top-N gives the entropy within bounds: the curve is the lower one.
  const upper = (p: number) => view.entropy_upper?.[p] ?? null; // absent in views saved before it existed
  const bounded = order.some((p) => upper(p) !== null);
  const entropyText = (p: number) =>
    upper(p) === null ? `${fmt(view.entropy[p])} nats` : `≥ ${fmt(view.entropy[p])} nats (≤ ${fmt(upper(p))})`;
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "axis",
      formatter: (ps: { dataIndex: number }[]) => {
        const p = order[ps[0].dataIndex];
        const sampled = view.sampled_confidence[p];
        const head = `<b>${esc(posLabel(p, labels[p] ?? "", 40))}</b>${p < view.prompt_len ? " (prompt)" : ""}`;
        const confidence = `${esc(text.confidence)}: ${pct(view.confidence[p])}`;
        const sampledText = sampled !== null && sampled !== undefined ? ` (sampled ${pct(sampled)})` : "";
        return [head, `${esc(text.entropy)}: ${entropyText(p)}`, confidence + sampledText].join("<br>");
      },
    },
    legend: { top: 26, left: 8, itemHeight: 8, textStyle: { color: theme.muted } },
    grid: { left: 8, right: 12, top: 56, bottom: 40, containLabel: true },
    dataZoom: [
      { type: "inside", filterMode: "none" },
      {
        type: "slider",
        height: 14,
        bottom: 6,
        filterMode: "none",
        borderColor: theme.grid,
        textStyle: { color: theme.muted },
      },
    ],
    xAxis: {
      type: "category",
      data: xl,
      ...axisStyle(theme),
      axisLabel: { color: theme.muted, fontSize: 10, rotate: 50, interval: labelInterval(xl.length, 30) },
    },
    yAxis: [{ type: "value", ...axisStyle(theme) }, probabilityAxis(theme)],
    series: [
      {
        name: text.entropy,
        type: sortByEntropy ? "bar" : "line",
        data: order.map((p) => view.entropy[p]),
        showSymbol: false,
        color: theme.accent2,
        areaStyle: sortByEntropy ? undefined : { opacity: 0.15 },
        markLine:
          selIdx >= 0
            ? { symbol: "none", data: [{ xAxis: selIdx }], lineStyle: { color: theme.warn }, label: { show: false } }
            : undefined,
      },
      ...(bounded && !sortByEntropy
        ? [
            {
              name: text.upper,
              type: "line",
              data: order.map(upper),
              showSymbol: false,
              color: theme.accent2,
              lineStyle: { type: "dashed", width: 1 },
            },
          ]
        : []),
      {
        name: text.confidence,
        type: "line",
        yAxisIndex: 1,
        data: order.map((p) => view.confidence[p]),
        showSymbol: false,
        color: theme.accent,
        lineStyle: { width: 1 },
      },
    ],
  };
}

/** The report's entropy curve, in the saved view's order. */
export const tokensReport: ReportRenderer<"tokens"> = {
  view: "tokens",
  render: (view, tokens, theme, title) =>
    entropyCurveOption(
      view,
      tokens.map((t) => t.label),
      view.sort === "entropy",
      theme,
      { title, entropy: "entropy", confidence: "confidence", upper: "entropy ≤" },
      null,
    ),
};
