/**
 * What-if tab: what an intervention did to the prediction, and where a patching sweep found
 * what restores it.
 *
 * - interventions as words (chips, titles): "zero L1 H2", "scale L0 mlp ×0.5 @ 3–7";
 * - before vs after at one position: a table of prob / logit / rank / gap and the top-N as bars
 *   (the union of both top lists; a candidate outside one list has no bar there);
 * - the whole run: each predicted position's probability change and KL(before ‖ after);
 * - the head picker: each head's direct effect (layers × heads), the heads already in the plan marked;
 * - a sweep's maps: layers × positions (heads for 'heads') of the restored metric, on a
 *   diverging scale where 0 = no effect and 1 = the clean prediction restored.
 * Each saved result (views "whatif", "sweep") has a renderer for the offline report.
 */
import type { Intervention, SweepMap, SweepResult, Token, WhatIfResult } from "../api/types";
import type { HeadContributionsView } from "../api/views";
import { axisStyle, base, esc, fmt, labelAxis, pct, posLabel, short, type Option } from "./common";
import { heatmapOption, labelInterval } from "./heatmap";
import type { Theme } from "./theme";

/** How the offline report draws a saved result that is not a view (what-if, sweep). */
export interface ResultRenderer<R> {
  view: string;
  render(result: R, tokens: Token[], theme: Theme, title: string): Option;
}

export interface HeadRef {
  layer: number;
  head: number;
}

// --- interventions as words --------------------------------------------------------------------

/** "all", "5", "3–7" (a contiguous range), "2, 5, 9" (at most 4, then "…"). */
export function positionsText(ps: number[] | null | undefined): string {
  if (!ps || ps.length === 0) return "all";
  const s = [...new Set(ps)].sort((a, b) => a - b);
  if (s.length > 2 && s[s.length - 1] - s[0] === s.length - 1) return `${s[0]}–${s[s.length - 1]}`;
  return s.length > 4 ? `${s.slice(0, 4).join(", ")}, …` : s.join(", ");
}

/** "0-3, 5, 9" → [0, 1, 2, 3, 5, 9]; null when it is not such a list. */
export function parsePositions(text: string): number[] | null {
  const out: number[] = [];
  for (const part of text.split(/[,\s]+/).filter(Boolean)) {
    const m = /^(\d+)(?:\s*[-–]\s*(\d+))?$/.exec(part);
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b - a > 100_000) return null;
    for (let p = a; p <= b; p++) out.push(p);
  }
  return out.length ? [...new Set(out)].sort((x, y) => x - y) : null;
}

function siteText(i: Intervention): string {
  const l = `L${i.layer}`;
  switch (i.site) {
    case "residual":
      return `${l} resid`;
    case "attn_out":
      return `${l} attn`;
    case "mlp_out":
      return `${l} mlp`;
    case "head":
      return `${l} H${i.head}`;
    case "neuron":
      return `${l} n${i.neuron}`;
    case "attention_edges":
      return `${l}${i.head === null || i.head === undefined ? "" : ` H${i.head}`} edges →${positionsText(i.keys)}`;
  }
}

function opText(i: Intervention): string {
  switch (i.op) {
    case "scale":
      return `scale ×${fmt(i.factor ?? 1, 3)}`;
    case "patch":
      return `patch ← ${(i.source_run ?? "").slice(0, 8)}`;
    case "add":
      return `add ${fmt(i.factor ?? 1, 3)}·v`;
    default:
      return i.op;
  }
}

/** One line naming an intervention: "zero L1 H2", "add 4·v L1 resid @ 3–7". */
export function describeIntervention(i: Intervention): string {
  const where = i.positions?.length ? ` @ ${positionsText(i.positions)}` : "";
  return `${opText(i)} ${siteText(i)}${where}`;
}

/** A plan in words, for a title: "zero L1 H2; scale L0 mlp ×0.5" (or "no intervention"). */
export function describePlan(plan: Intervention[] | null | undefined, max = 3): string {
  if (!plan?.length) return "no intervention";
  const words = plan.slice(0, max).map(describeIntervention);
  return plan.length > max ? `${words.join("; ")}; +${plan.length - max}` : words.join("; ");
}

// --- before vs after -------------------------------------------------------------------------------

export interface OutcomeRow {
  key: "prob" | "logit" | "rank" | "gap";
  before: string;
  after: string;
  delta: string;
  /** the numbers shown (rank: 0 = the most likely) */
  values: [number, number];
  /** +1: the intervention helped the token (higher prob/logit/gap, better rank), −1: hurt it */
  sign: -1 | 0 | 1;
}

const signOf = (x: number, eps = 1e-9): -1 | 0 | 1 => (x > eps ? 1 : x < -eps ? -1 : 0);
const signed = (x: number, text: string) => (x > 0 ? `+${text}` : x < 0 ? `−${text}` : text);

/** The table of the chosen position: prob, logit, rank (#1 = top) and, with a foil, the gap. */
export function outcomeRows(r: WhatIfResult): OutcomeRow[] {
  const { before: b, after: a } = r;
  const dp = a.prob - b.prob;
  const dl = a.logit - b.logit;
  const dr = a.rank - b.rank;
  const rows: OutcomeRow[] = [
    {
      key: "prob",
      before: pct(b.prob),
      after: pct(a.prob),
      delta: signed(dp, `${fmt(Math.abs(dp) * 100, 3)} pp`),
      values: [b.prob, a.prob],
      sign: signOf(dp),
    },
    {
      key: "logit",
      before: fmt(b.logit),
      after: fmt(a.logit),
      delta: signed(dl, fmt(Math.abs(dl))),
      values: [b.logit, a.logit],
      sign: signOf(dl),
    },
    {
      key: "rank",
      before: `#${b.rank + 1}`,
      after: `#${a.rank + 1}`,
      delta: signed(dr, String(Math.abs(dr))),
      values: [b.rank, a.rank],
      sign: signOf(-dr),
    },
  ];
  if (b.gap !== null && b.gap !== undefined && a.gap !== null && a.gap !== undefined) {
    const dg = a.gap - b.gap;
    rows.push({
      key: "gap",
      before: fmt(b.gap),
      after: fmt(a.gap),
      delta: signed(dg, fmt(Math.abs(dg))),
      values: [b.gap, a.gap],
      sign: signOf(dg),
    });
  }
  return rows;
}

export interface TopRow {
  id: number;
  label: string;
  before: number | null;
  after: number | null;
}

/** The union of the before and after top lists, by the larger of the two probabilities; at most `n`. */
export function topRows(r: WhatIfResult, n = 10): TopRow[] {
  const rows = new Map<number, TopRow>();
  for (const c of r.before.top) rows.set(c.id, { id: c.id, label: c.label, before: c.prob, after: null });
  for (const c of r.after.top) {
    const row = rows.get(c.id);
    if (row) row.after = c.prob;
    else rows.set(c.id, { id: c.id, label: c.label, before: null, after: c.prob });
  }
  return [...rows.values()]
    .sort((x, y) => Math.max(y.before ?? 0, y.after ?? 0) - Math.max(x.before ?? 0, x.after ?? 0))
    .slice(0, n);
}

export interface TopChangeText {
  title: string;
  before: string;
  after: string;
  outside: string; // "not in the top-N"
}

export function topChangeOption(r: WhatIfResult, theme: Theme, text: TopChangeText, n = 10): Option {
  const rows = topRows(r, n).reverse(); // bars read top-down
  const mark = (id: number) => (id === r.token_id ? "▶ " : id === r.foil_id ? "vs " : "");
  const labels = rows.map((c) => `${mark(c.id)}${short(c.label, 16)}`);
  const b = base(theme, text.title, `llmvis-whatif-top-${r.position}`);
  const bar = (name: string, color: string, values: (number | null)[]) => ({
    name,
    type: "bar",
    color,
    data: values,
    barMaxWidth: 12,
    label: {
      show: true,
      position: "right",
      color: theme.muted,
      fontSize: 10,
      formatter: (p: { value: number | null }) => (p.value === null ? "" : pct(p.value)),
    },
  });
  return {
    ...b,
    legend: { top: 26, left: 8, itemHeight: 8, textStyle: { color: theme.muted } },
    grid: { left: 8, right: 64, top: 56, bottom: 16, containLabel: true },
    xAxis: {
      type: "value",
      min: 0,
      max: (v: { max: number }) => Math.min(1, Math.max(0.01, v.max * 1.15)),
      ...axisStyle(theme),
      axisLabel: { color: theme.muted, formatter: (v: number) => `${Number((v * 100).toPrecision(3))}%` },
    },
    yAxis: {
      type: "category",
      data: labels,
      ...axisStyle(theme),
      axisLabel: { color: theme.text, fontSize: 12, fontFamily: "ui-monospace, monospace" },
    },
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "axis",
      axisPointer: { type: "shadow" },
      formatter: (ps: { dataIndex: number }[]) => {
        const c = rows[ps[0].dataIndex];
        const p = (v: number | null) => (v === null ? esc(text.outside) : `${pct(v)} (${fmt(v)})`);
        return [
          `<b>${esc(c.label)}</b> (id ${c.id})`,
          `${esc(text.before)}: ${p(c.before)}`,
          `${esc(text.after)}: ${p(c.after)}`,
        ].join("<br>");
      },
    },
    series: [
      bar(
        text.before,
        theme.muted,
        rows.map((c) => c.before),
      ),
      bar(
        text.after,
        theme.accent,
        rows.map((c) => c.after),
      ),
    ],
  };
}

// --- the whole run ----------------------------------------------------------------------------------

export interface CurveText {
  title: string;
  delta: string; // "Δ probability"
  kl: string; // "KL(before ‖ after)"
  before: string;
  after: string;
}

/** Each predicted position's probability change (bars) and KL (line, right axis); the selected one marked. */
export function changeCurveOption(
  r: WhatIfResult,
  labels: string[],
  theme: Theme,
  text: CurveText,
  selected: number | null,
): Option {
  const xl = r.positions.map((p) => posLabel(p, labels[p] ?? ""));
  const delta = r.positions.map((_, i) => Number((r.prob_after[i] - r.prob_before[i]).toFixed(6)));
  const selIdx = selected === null ? -1 : r.positions.indexOf(selected);
  // symmetric around 0, as large as the largest change (a head of a small model moves little)
  const span = Math.min(1, Math.max(0.001, ...delta.map(Math.abs)) * 1.1);
  const b = base(theme, text.title, "llmvis-whatif-change");
  const many = xl.length > 60;
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "axis",
      formatter: (ps: { dataIndex: number }[]) => {
        const i = ps[0].dataIndex;
        const p = r.positions[i];
        return [
          `<b>${esc(posLabel(p, labels[p] ?? "", 40))}</b>`,
          `${esc(text.before)} ${pct(r.prob_before[i])} → ${esc(text.after)} ${pct(r.prob_after[i])}`,
          `${esc(text.delta)}: <b>${fmt(delta[i])}</b>`,
          `${esc(text.kl)}: ${fmt(r.kl[i])} nats`,
        ].join("<br>");
      },
    },
    legend: { top: 26, left: 8, itemHeight: 8, textStyle: { color: theme.muted } },
    grid: { left: 8, right: 12, top: 56, bottom: many ? 40 : 12, containLabel: true },
    dataZoom: many
      ? [
          { type: "inside", filterMode: "none" },
          { type: "slider", height: 14, bottom: 6, filterMode: "none", borderColor: theme.grid },
        ]
      : undefined,
    xAxis: labelAxis(theme, xl, 30, 50),
    yAxis: [
      {
        type: "value",
        min: -span,
        max: span,
        ...axisStyle(theme),
        axisLabel: { color: theme.muted, fontSize: 10, formatter: (v: number) => fmt(v, 2) },
      },
      {
        type: "value",
        min: 0,
        ...axisStyle(theme),
        splitLine: { show: false },
        axisLabel: { color: theme.muted, fontSize: 10 },
      },
    ],
    series: [
      {
        name: text.delta,
        type: "bar",
        data: delta.map((v) => ({ value: v, itemStyle: { color: v < 0 ? theme.diverging[0] : theme.diverging[2] } })),
        barMaxWidth: 10,
        color: theme.accent,
        markLine:
          selIdx >= 0
            ? { symbol: "none", data: [{ xAxis: selIdx }], lineStyle: { color: theme.warn }, label: { show: false } }
            : undefined,
      },
      {
        name: text.kl,
        type: "line",
        yAxisIndex: 1,
        data: r.kl,
        showSymbol: !many,
        symbolSize: 4,
        color: theme.accent2,
        lineStyle: { width: 1.5 },
      },
    ],
  };
}

// --- the head picker --------------------------------------------------------------------------------

/** Each head's direct effect (as the Contributions tab's map); the heads in `planned` outlined and crossed. */
export function headPickOption(
  view: HeadContributionsView,
  theme: Theme,
  title: string,
  planned: HeadRef[],
  hint: string,
): Option {
  const missing = view.missing_layers ?? {};
  const xl = Array.from({ length: view.heads }, (_, h) => `H${h}`);
  const yl = Array.from({ length: view.layers }, (_, l) => (l in missing ? `L${l} ✕` : `L${l}`));
  const matrix = Array.from({ length: view.layers }, (_, l) => view.effects[l] ?? xl.map(() => null));
  const isPlanned = (layer: number, head: number) => planned.some((p) => p.layer === layer && p.head === head);
  const option = heatmapOption(
    {
      title,
      file: `llmvis-whatif-heads-${view.target.position}`,
      cellByCell: true, // styled and clicked head by head
      matrix,
      xLabels: xl,
      yLabels: yl,
      diverging: true,
      cellText: (r, c, v) =>
        [
          `layer ${r}, head ${c}${isPlanned(r, c) ? " — zeroed" : ""}`,
          `effect on ${esc(view.target.objective)}: <b>${fmt(v)}</b>`,
          `<span style="opacity:.7">${esc(hint)}</span>`,
        ].join("<br>"),
    },
    theme,
  );
  const series = option.series as Option[];
  series[0].data = (series[0].data as [number, number, number][]).map((d) =>
    isPlanned(d[1], d[0])
      ? {
          value: d,
          itemStyle: { borderColor: theme.warn, borderWidth: 2 },
          label: { show: true, formatter: "✕", color: theme.text, fontSize: 14, fontWeight: 700 },
        }
      : d,
  );
  return option;
}

// --- sweeps -----------------------------------------------------------------------------------------

export type SweepWhich = "exact" | "fast";

/** The map's values of one estimate, or the other when that one was not computed. */
export function sweepValues(m: SweepMap, which: SweepWhich): { values: number[][]; which: SweepWhich } | null {
  const first = which === "exact" ? m.exact : m.fast;
  if (first) return { values: first, which };
  const other: SweepWhich = which === "exact" ? "fast" : "exact";
  const second = other === "exact" ? m.exact : m.fast;
  return second ? { values: second, which: other } : null;
}

/** The largest |value| of every map, at least 1: one colour scale where 1 means "fully restored". */
export function sweepScale(r: SweepResult): number {
  let m = 1;
  for (const map of r.maps)
    for (const v of [map.exact, map.fast]) for (const row of v ?? []) for (const x of row) m = Math.max(m, Math.abs(x));
  return m;
}

/** "fast vs exact: max |error| 0.12, r = 0.98" when both were computed. */
export function fastVsExact(m: SweepMap): string | null {
  if (m.max_error === null || m.max_error === undefined) return null;
  const r = m.correlation === null || m.correlation === undefined ? "" : `, r = ${fmt(m.correlation, 3)}`;
  return `fast vs exact: max |error| ${fmt(m.max_error, 3)}${r}`;
}

export interface SweepText {
  title: string;
  restored: string; // "restored"
}

function colLabels(m: SweepMap, labels: string[]): string[] {
  return m.site === "heads" ? m.cols.map((h) => `H${h}`) : m.cols.map((p) => posLabel(p, labels[p] ?? ""));
}

/** One site's map: layers × positions (heads), the restored metric. */
export function sweepMapOption(
  m: SweepMap,
  r: SweepResult,
  labels: string[],
  theme: Theme,
  text: SweepText,
  which: SweepWhich,
): Option {
  const got = sweepValues(m, which);
  const values = got?.values ?? [];
  const scale = sweepScale(r);
  const xl = colLabels(m, labels);
  const other = got?.which === "exact" ? m.fast : m.exact;
  return heatmapOption(
    {
      title: text.title,
      file: `llmvis-sweep-${m.site}-${r.position}`,
      matrix: values,
      xLabels: xl,
      yLabels: m.rows.map((l) => `L${l}`),
      diverging: true,
      min: -scale,
      max: scale,
      invertY: true,
      cellText: (row, col, v) => {
        const where = m.site === "heads" ? `head ${m.cols[col]}, every position` : `position ${esc(xl[col] ?? "")}`;
        const lines = [
          `${m.site} · layer ${m.rows[row]} · ${where}`,
          `${esc(text.restored)} (${got?.which}): <b>${fmt(v)}</b>`,
        ];
        const o = other?.[row]?.[col];
        if (o !== undefined) lines.push(`${got?.which === "exact" ? "fast" : "exact"}: ${fmt(o)}`);
        return lines.join("<br>");
      },
    },
    theme,
  );
}

/** What a sweep explains: "'Paris' vs 'Lyon' at 12 · logit diff clean 3.2, corrupted −1.0". */
export function sweepSummary(r: SweepResult): string {
  return `'${r.target_label}' vs '${r.foil_label}' at ${r.position} · logit diff clean ${fmt(r.clean_diff)}, corrupted ${fmt(r.corrupted_diff)}`;
}

/** Every map of a sweep in one chart (the offline report draws one chart per saved result). */
export function sweepReportOption(r: SweepResult, labels: string[], theme: Theme, title: string): Option {
  const n = Math.max(1, r.maps.length);
  const band = 86 / n;
  const scale = sweepScale(r);
  const grids: Option[] = [];
  const xAxes: Option[] = [];
  const yAxes: Option[] = [];
  const series: Option[] = [];
  r.maps.forEach((m, i) => {
    const got = sweepValues(m, "exact");
    const xl = colLabels(m, labels);
    grids.push({ left: 70, right: 64, top: `${10 + i * band}%`, height: `${band - 8}%` });
    xAxes.push({
      type: "category",
      gridIndex: i,
      data: xl,
      ...axisStyle(theme),
      splitLine: { show: false },
      axisLabel: { color: theme.muted, fontSize: 9, interval: labelInterval(xl.length, 24) },
    });
    yAxes.push({
      type: "category",
      gridIndex: i,
      inverse: true,
      data: m.rows.map((l) => `L${l}`),
      name: `${m.site}${got ? ` (${got.which})` : ""}`,
      nameLocation: "middle",
      nameGap: 44,
      ...axisStyle(theme),
      splitLine: { show: false },
      axisLabel: { color: theme.muted, fontSize: 9, interval: labelInterval(m.rows.length, 12) },
    });
    const data: [number, number, number][] = [];
    got?.values.forEach((row, ri) => row.forEach((v, ci) => data.push([ci, ri, v])));
    series.push({ type: "heatmap", xAxisIndex: i, yAxisIndex: i, data, name: m.site });
  });
  const b = base(theme, `${title} · ${sweepSummary(r)}`, `llmvis-sweep-${r.position}`);
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      formatter: (p: { seriesName: string; value: [number, number, number] }) =>
        `${esc(p.seriesName)} · L${p.value[1]} · ${p.value[0]}<br><b>${fmt(p.value[2])}</b>`,
    },
    grid: grids,
    xAxis: xAxes,
    yAxis: yAxes,
    visualMap: {
      min: -scale,
      max: scale,
      calculable: true,
      right: 4,
      top: "middle",
      itemHeight: 140,
      itemWidth: 10,
      inRange: { color: theme.diverging },
      textStyle: { color: theme.muted, fontSize: 10 },
      formatter: (v: number) => fmt(v, 3),
    },
    series,
  };
}

// --- the offline report -----------------------------------------------------------------------------

export const whatIfReport: ResultRenderer<WhatIfResult> = {
  view: "whatif",
  render: (r, tokens, theme, title) =>
    changeCurveOption(
      r,
      tokens.map((tk) => tk.label),
      theme,
      {
        title: `${title} · '${r.token_label}' at ${r.position}: ${pct(r.before.prob)} → ${pct(r.after.prob)}`,
        delta: "Δ probability",
        kl: "KL(before ‖ after)",
        before: "before",
        after: "after",
      },
      r.position,
    ),
};

export const sweepReport: ResultRenderer<SweepResult> = {
  view: "sweep",
  render: (r, tokens, theme, title) =>
    sweepReportOption(
      r,
      tokens.map((tk) => tk.label),
      theme,
      title,
    ),
};
