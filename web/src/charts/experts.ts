/**
 * Experts tab (mixture-of-experts models): one MoE layer's router probabilities per token with
 * each token's chosen experts marked, how the run's tokens spread over the experts in every MoE
 * layer, the selected token's routing through the MoE layers, and what each of its experts
 * added to the residual stream.
 */
import type { ExpertsView, TokenRouting } from "../api/views";
import { axisStyle, base, esc, fmt, pct, posLabel, type Option, type ReportRenderer } from "./common";
import { binRange } from "./attention";
import { heatmapOption, labelInterval, type HeatmapSpec } from "./heatmap";
import type { Theme } from "./theme";

const expertLabels = (n: number) => Array.from({ length: n }, (_, e) => `E${e}`);

/** [expert, row, value] of every routed cell: the markers drawn over a routing heatmap. */
export function routedCells(matrix: number[][], routes: (TokenRouting | null)[]): [number, number, number][] {
  const out: [number, number, number][] = [];
  routes.forEach((r, row) => r?.experts.forEach((e) => out.push([e, row, matrix[row]?.[e] ?? 0])));
  return out;
}

/** "chosen #1, weight 0.6" for a routed cell; "" otherwise. */
function routeText(r: TokenRouting | null | undefined, expert: number): string {
  const k = r ? r.experts.indexOf(expert) : -1;
  return k < 0 ? "" : `<br>chosen #${k + 1} · weight <b>${fmt(r!.weights[k])}</b>`;
}

/**
 * A heatmap whose routed cells carry a marker (a scatter over the cells: the colour scale
 * maps the heatmap only) and, optionally, a highlighted row.
 */
function routedHeatmap(
  spec: HeatmapSpec,
  matrix: number[][],
  routes: (TokenRouting | null)[],
  theme: Theme,
  selectedRow: number | null,
): Option {
  const o = heatmapOption(spec, theme);
  const heat = (o.series as Option[])[0];
  const marked = routedCells(matrix, routes);
  const yAxis = o.yAxis as Option & { axisLabel: Option };
  const every = labelInterval(spec.yLabels.length, 28) + 1;
  const highlighted = selectedRow !== null && selectedRow >= 0 && selectedRow < spec.yLabels.length;
  return {
    ...o,
    visualMap: { ...(o.visualMap as Option), seriesIndex: 0 },
    yAxis: highlighted
      ? {
          ...yAxis,
          axisLabel: {
            ...yAxis.axisLabel,
            // Always show the selected row's label, in the accent colour.
            interval: (i: number) => i === selectedRow || i % every === 0,
            formatter: (v: string, i: number) => (i === selectedRow ? `{sel|▶ ${v}}` : v),
            rich: { sel: { color: theme.accent, fontWeight: "bold", fontSize: 10 } },
          },
        }
      : yAxis,
    series: [
      highlighted
        ? {
            ...heat,
            markLine: {
              silent: true,
              symbol: "none",
              label: { show: false },
              lineStyle: { color: theme.accent, width: 1, type: "dashed", opacity: 0.8 },
              data: [{ yAxis: spec.yLabels[selectedRow!] }],
            },
          }
        : heat,
      {
        type: "scatter",
        name: "chosen",
        data: marked,
        symbol: "circle",
        symbolSize: marked.length > 4000 ? 3 : 6,
        large: marked.length > 4000,
        itemStyle: { color: theme.text, borderColor: theme.panel, borderWidth: 1 },
        z: 3,
      },
    ],
  };
}

/**
 * Token × expert grid of `layer`: router probability per token row (max over a bin's tokens
 * when the run was pooled); each token's chosen experts marked when rows are single tokens.
 */
export function expertsGridOption(
  view: ExpertsView,
  labels: string[],
  theme: Theme,
  title: string,
  selected: number | null = view.position,
): Option {
  const pooled = view.bin_size > 1;
  const end = Math.max(view.routing.length, (view.bin_starts[view.bin_starts.length - 1] ?? 0) + view.bin_size);
  const yl = view.bin_starts.map((p) => posLabel(p, labels[p] ?? ""));
  const xl = expertLabels(view.n_experts);
  const routes = pooled ? [] : view.bin_starts.map((p) => view.routing[p] ?? null);
  let selectedRow: number | null = null;
  if (selected !== null) {
    let i = view.bin_starts.length - 1;
    while (i >= 0 && view.bin_starts[i] > selected) i--;
    if (i >= 0 && selected < end) selectedRow = i;
  }
  const describe = (r: number) => {
    const [a, b] = binRange(view.bin_starts, r, end);
    return a === b ? `${a} ${esc(labels[a] ?? "")}` : `${a}–${b} (max of ${b - a + 1})`;
  };
  return routedHeatmap(
    {
      title,
      file: `llmvis-experts-L${view.layer}`,
      matrix: view.probs,
      xLabels: xl,
      yLabels: yl,
      min: 0,
      zoom: yl.length > 48,
      cellText: (r, c) =>
        `${describe(r)} → ${xl[c]}<br>router probability <b>${fmt(view.probs[r]?.[c])}</b>` +
        (pooled ? "" : routeText(routes[r], c)),
    },
    view.probs,
    routes,
    theme,
    selectedRow,
  );
}

/** Share of each MoE layer's routed tokens per expert: tokens[e] / Σ tokens (rows sum to 1). */
export function loadShares(tokens: number[]): number[] {
  const total = tokens.reduce((a, b) => a + b, 0);
  return tokens.map((n) => (total > 0 ? n / total : 0));
}

/** MoE layers × experts: the share of the run's tokens sent to each expert, with each layer's balance. */
export function expertsLoadOption(view: ExpertsView, theme: Theme, title: string): Option {
  const matrix = view.loads.map((l) => loadShares(l.tokens));
  const yl = view.loads.map((l) => `L${l.layer} · ${fmt(l.balance, 2)}`);
  const xl = expertLabels(view.n_experts);
  const runTokens = view.routing.length;
  return heatmapOption(
    {
      title,
      file: "llmvis-experts-load",
      matrix,
      xLabels: xl,
      yLabels: yl,
      min: 0,
      cellText: (r, c) => {
        const l = view.loads[r];
        return [
          `layer ${l.layer}, ${xl[c]}`,
          `<b>${pct(matrix[r][c])}</b> of routed tokens · ${l.tokens[c]} of ${runTokens} tokens`,
          `summed weight ${fmt(l.weight[c])}`,
          `balance ${fmt(l.balance)} (1 = every expert equally used)`,
        ].join("<br>");
      },
    },
    theme,
  );
}

/** The selected token's router probabilities in every MoE layer, its chosen experts marked. */
export function expertsTokenOption(view: ExpertsView, theme: Theme, title: string): Option {
  const yl = view.moe_layers.map((l) => `L${l}`);
  const xl = expertLabels(view.n_experts);
  const selectedRow = view.moe_layers.indexOf(view.layer);
  return routedHeatmap(
    {
      title,
      file: `llmvis-experts-position-${view.position}`,
      matrix: view.position_probs,
      xLabels: xl,
      yLabels: yl,
      min: 0,
      cellText: (r, c) =>
        `position ${view.position} · layer ${view.moe_layers[r]}, ${xl[c]}<br>router probability <b>${fmt(
          view.position_probs[r]?.[c],
        )}</b>${routeText(view.position_routing[r], c)}`,
    },
    view.position_probs,
    view.position_routing,
    theme,
    selectedRow >= 0 ? selectedRow : null,
  );
}

/** Bars: ‖what each chosen expert (and the shared expert) added‖ at the selected token in `layer`. */
export function expertPartsOption(view: ExpertsView, theme: Theme, title: string, shared = "shared"): Option {
  const xl = view.parts.map((p) => (p.expert === null ? shared : `E${p.expert}`));
  const b = base(theme, title, `llmvis-experts-parts-L${view.layer}-${view.position}`);
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "axis",
      axisPointer: { type: "shadow" },
      formatter: (ps: { dataIndex: number }[]) => {
        const p = view.parts[ps[0]?.dataIndex ?? 0];
        if (!p) return "";
        const who = p.expert === null ? esc(shared) : `E${p.expert}`;
        const weight = p.weight === null ? "" : ` · weight ${fmt(p.weight)}`;
        return `${who}${weight}<br>‖added‖ <b>${fmt(p.norm)}</b>`;
      },
    },
    grid: { left: 8, right: 8, top: 40, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: xl, ...axisStyle(theme), splitLine: { show: false } },
    yAxis: { type: "value", min: 0, ...axisStyle(theme) },
    series: [
      {
        type: "bar",
        name: "‖added‖",
        barMaxWidth: 36,
        data: view.parts.map((p) => ({
          value: p.norm,
          itemStyle: { color: p.expert === null ? theme.accent2 : theme.accent },
        })),
      },
    ],
  };
}

/** The report draws the token grid of the saved layer, the saved position highlighted. */
export const expertsReport: ReportRenderer<"experts"> = {
  view: "experts",
  render: (view, tokens, theme, title) =>
    expertsGridOption(
      view,
      tokens.map((tk) => tk.label),
      theme,
      title,
      view.position,
    ),
};
