/**
 * Contributions tab: which heads and which MLP neurons moved the prediction, as direct effects
 * on the objective (the token's logit, or logit(token) − logit(foil)) through the final norm
 * linearised at the final residual; each is a share of the residual stream's block effects.
 *
 * - head effects: a layer × head heatmap on a diverging scale symmetric around 0; layers
 *   without heads to show are drawn as empty cells whose tooltip says why;
 * - a head's attention row: one head's attention from the source position over earlier keys;
 * - neurons: every layer's top neurons (a mixture's experts) merged and ranked by |effect|.
 */
import type { AttentionView, HeadContributionsView, NeuronContributionsView } from "../api/views";
import { binRange } from "./attention";
import { axisStyle, base, esc, fmt, labelAxis, posLabel, type Option, type ReportRenderer } from "./common";
import { heatmapOption } from "./heatmap";
import type { Theme } from "./theme";

export interface HeadRef {
  layer: number;
  head: number;
}

/** The head with the largest |effect| (null when no layer has heads). */
export function topHead(view: HeadContributionsView): HeadRef | null {
  let best: HeadRef | null = null;
  let size = -1;
  view.effects.forEach((row, layer) =>
    row?.forEach((v, head) => {
      if (Math.abs(v) > size) {
        size = Math.abs(v);
        best = { layer, head };
      }
    }),
  );
  return best;
}

export function headEffectsOption(
  view: HeadContributionsView,
  theme: Theme,
  title: string,
  selected: HeadRef | null = null,
): Option {
  const missing = view.missing_layers ?? {};
  const xl = Array.from({ length: view.heads }, (_, h) => `H${h}`);
  const yl = Array.from({ length: view.layers }, (_, l) => (l in missing ? `L${l} ✕` : `L${l}`));
  const matrix = Array.from({ length: view.layers }, (_, l) => view.effects[l] ?? xl.map(() => null));
  const objective = view.target.objective;
  const option = heatmapOption(
    {
      title,
      file: `llmvis-head-effects-${view.target.position}`,
      cellByCell: true, // styled and clicked head by head
      matrix,
      xLabels: xl,
      yLabels: yl,
      diverging: true,
      cellText: (r, c, v) => {
        if (view.effects[r] === null || view.effects[r] === undefined)
          return `layer ${r}: no heads shown<br>${esc(missing[r] ?? "")}`;
        return [
          `layer ${r}, head ${c}`,
          `effect on ${esc(objective)}: <b>${fmt(v)}</b>`,
          `‖output‖ ${fmt(view.norms[r]?.[c])}`,
          `layer ${r}: attention block ${fmt(view.block[r])}, bias/rest ${fmt(view.rest[r])}`,
          `<span style="opacity:.7">click: this head's attention row</span>`,
        ].join("<br>");
      },
    },
    theme,
  );
  const series = option.series as Option[];
  // the clicked (or largest) head is outlined
  if (selected && view.effects[selected.layer]) {
    const data = series[0].data as [number, number, number][];
    series[0].data = data.map((d) =>
      d[0] === selected.head && d[1] === selected.layer
        ? { value: d, itemStyle: { borderColor: theme.text, borderWidth: 2 } }
        : d,
    );
  }
  const empty: [number, number, number][] = [];
  for (let l = 0; l < view.layers; l++)
    if (!view.effects[l]) for (let h = 0; h < view.heads; h++) empty.push([h, l, 0]);
  if (empty.length) {
    series.push({
      type: "heatmap",
      data: empty,
      itemStyle: { color: theme.grid, opacity: 0.35, borderColor: theme.panel, borderWidth: 1 },
      emphasis: { disabled: true },
    });
    (option.visualMap as Option).seriesIndex = 0;
  }
  return option;
}

/** One head's attention from the view's query position over its key bins, as bars. */
export function headRowOption(view: AttentionView, ref: HeadRef, theme: Theme, title: string): Option {
  const row = view.rows?.[ref.layer]?.[ref.head] ?? [];
  const xl = view.col_indices.map((p, i) => posLabel(p, view.col_labels[i] ?? ""));
  const describe = (i: number) => {
    const [a, b] = binRange(view.col_indices, i, view.end);
    return a === b ? `${a} ${esc(view.col_labels[i] ?? "")}` : `${a}–${b} (max of ${b - a + 1})`;
  };
  const b = base(theme, title, `llmvis-head-row-L${ref.layer}-H${ref.head}-${view.position}`);
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "axis",
      axisPointer: { type: "shadow" },
      formatter: (ps: { dataIndex: number }[]) => {
        const i = ps[0].dataIndex;
        return `key ${describe(i)}<br>L${ref.layer} H${ref.head} attention <b>${fmt(row[i])}</b>`;
      },
    },
    grid: { left: 8, right: 16, top: 40, bottom: row.length > 80 ? 36 : 12, containLabel: true },
    dataZoom:
      row.length > 80
        ? [{ type: "inside" }, { type: "slider", height: 14, bottom: 6, borderColor: theme.grid }]
        : undefined,
    xAxis: labelAxis(theme, xl, 20, 50),
    yAxis: { type: "value", min: 0, ...axisStyle(theme) },
    series: [{ type: "bar", data: row, color: theme.accent, barMaxWidth: 18 }],
  };
}

/** One bar of the neuron ranking: a neuron, or (mixtures) an expert. */
export interface NeuronRow {
  layer: number;
  name: string;
  kind: string;
  effect: number;
  activation: number | null;
  norm: number | null;
  /** a routed expert's router weight (null: a neuron, or the shared expert) */
  weight: number | null;
}

/** Every layer's listed neurons and experts, largest |effect| first; at most `n`. */
export function neuronRows(view: NeuronContributionsView, n = 24): NeuronRow[] {
  const rows: NeuronRow[] = [];
  for (const l of view.layers) {
    for (const x of l.top ?? [])
      rows.push({
        layer: l.layer,
        name: `L${l.layer} n${x.neuron}`,
        kind: l.kind,
        effect: x.effect,
        activation: x.activation,
        norm: x.norm,
        weight: null,
      });
    for (const e of l.experts ?? [])
      rows.push({
        layer: l.layer,
        name: e.expert === null || e.expert === undefined ? `L${l.layer} shared` : `L${l.layer} E${e.expert}`,
        kind: "experts",
        effect: e.effect,
        activation: null,
        norm: null,
        weight: e.weight ?? null,
      });
  }
  return rows.sort((a, b) => Math.abs(b.effect) - Math.abs(a.effect)).slice(0, n);
}

export function neuronsOption(view: NeuronContributionsView, theme: Theme, title: string, n = 24): Option {
  // bars read top-down: the largest |effect| first
  const rows = neuronRows(view, n).reverse();
  const byLayer = new Map(view.layers.map((l) => [l.layer, l]));
  const b = base(theme, title, `llmvis-neurons-${view.target.position}`);
  const pos = theme.diverging[2];
  const neg = theme.diverging[0];
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "axis",
      axisPointer: { type: "shadow" },
      formatter: (ps: { dataIndex: number }[]) => {
        const r = rows[ps[0].dataIndex];
        const l = byLayer.get(r.layer);
        const lines = [
          `<b>${esc(r.name)}</b> (${esc(r.kind)})`,
          `effect on ${esc(view.target.objective)}: <b>${fmt(r.effect)}</b>`,
        ];
        if (r.activation !== null) lines.push(`activation ${fmt(r.activation)} · ‖write‖ ${fmt(r.norm)}`);
        if (r.weight !== null) lines.push(`router weight ${fmt(r.weight)}`);
        if (l) {
          const of = l.neurons ? ` · Σ of its ${l.neurons} neurons ${fmt(l.neurons_effect)}` : "";
          lines.push(`layer ${r.layer}: MLP ${fmt(l.mlp_effect)}${of} · bias/rest ${fmt(l.rest_effect)}`);
        }
        return lines.join("<br>");
      },
    },
    grid: { left: 8, right: 56, top: 40, bottom: 8, containLabel: true },
    xAxis: { type: "value", ...axisStyle(theme) },
    yAxis: {
      type: "category",
      data: rows.map((r) => r.name),
      ...axisStyle(theme),
      axisLabel: { color: theme.text, fontSize: 11, fontFamily: "ui-monospace, monospace" },
    },
    series: [
      {
        type: "bar",
        data: rows.map((r) => ({ value: r.effect, itemStyle: { color: r.effect >= 0 ? pos : neg } })),
        barMaxWidth: 14,
        label: {
          show: true,
          position: "right",
          color: theme.muted,
          fontSize: 10,
          formatter: (p: { value: number }) => fmt(p.value, 3),
        },
      },
    ],
  };
}

export const headContributionsReport: ReportRenderer<"head_contributions"> = {
  view: "head_contributions",
  render: (view, _tokens, theme, title) => headEffectsOption(view, theme, `${title} · ${view.target.objective}`),
};

export const neuronContributionsReport: ReportRenderer<"neuron_contributions"> = {
  view: "neuron_contributions",
  render: (view, _tokens, theme, title) => neuronsOption(view, theme, `${title} · ${view.target.objective}`),
};
