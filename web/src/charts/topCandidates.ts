/**
 * Tokens tab: the top-N candidates at one position, raw vs sampled probability, the chosen
 * token marked. Data straight from the trace (TokenStats.top), so it needs no request.
 */
import type { Token } from "../api/types";
import { axisStyle, base, esc, fmt, pct, short, type Option } from "./common";
import type { Theme } from "./theme";

export interface TopCandidatesText {
  title: string;
  raw: string;
  sampled: string;
  chosen: string;
}

/** The foil and the watched tokens, marked on their rows ("vs", "◦"). */
export interface CandidateMarks {
  foil?: number | null;
  watched?: number[];
}

export function topCandidatesOption(
  token: Token,
  theme: Theme,
  text: TopCandidatesText,
  marks: CandidateMarks = {},
): Option {
  const top = token.stats?.top ?? [];
  // Bars read top-down: highest probability first.
  const rows = [...top].reverse();
  const mark = (id: number) =>
    id === token.id ? "▶ " : id === marks.foil ? "vs " : marks.watched?.includes(id) ? "◦ " : "";
  const labels = rows.map((c) => `${mark(c.id)}${short(c.label, 16)}`);
  const hasSampled = rows.some((c) => c.sampled_prob !== null && c.sampled_prob !== undefined);
  const chosenStyle = { borderColor: theme.warn, borderWidth: 2 };
  const series: Option[] = [
    {
      name: text.raw,
      type: "bar",
      color: theme.accent,
      data: rows.map((c) => ({
        value: c.raw_prob,
        itemStyle: c.id === token.id ? { color: theme.accent, ...chosenStyle } : { color: theme.accent },
      })),
      barMaxWidth: 14,
      label: {
        show: true,
        position: "right",
        color: theme.muted,
        fontSize: 10,
        formatter: (p: { value: number }) => pct(p.value),
      },
    },
  ];
  if (hasSampled) {
    series.push({
      name: text.sampled,
      type: "bar",
      color: theme.accent2,
      data: rows.map((c) => ({
        value: c.sampled_prob ?? 0,
        itemStyle: c.id === token.id ? { color: theme.accent2, ...chosenStyle } : { color: theme.accent2 },
      })),
      barMaxWidth: 14,
    });
  }
  return {
    ...base(theme, text.title, `llmvis-top-${token.position}`),
    legend: { top: 26, left: 8, itemHeight: 8, textStyle: { color: theme.muted }, data: series.map((s) => s.name) },
    grid: { left: 8, right: 64, top: 56, bottom: 24, containLabel: true },
    xAxis: {
      type: "value",
      max: 1,
      ...axisStyle(theme),
      axisLabel: { color: theme.muted, formatter: (v: number) => `${v * 100}%` },
    },
    yAxis: {
      type: "category",
      data: labels,
      ...axisStyle(theme),
      axisLabel: { color: theme.text, fontSize: 12, fontFamily: "ui-monospace, monospace" },
    },
    tooltip: {
      ...(base(theme, "").tooltip as Option),
      trigger: "axis",
      axisPointer: { type: "shadow" },
      formatter: (ps: { dataIndex: number }[]) => {
        const c = rows[ps[0].dataIndex];
        const sampled =
          c.sampled_prob === null || c.sampled_prob === undefined
            ? "–"
            : `${pct(c.sampled_prob)} (${fmt(c.sampled_prob)})`;
        const lines = [
          `<b>${esc(c.label)}</b> (id ${c.id})${c.id === token.id ? ` — ${esc(text.chosen)}` : ""}` +
            (c.id === marks.foil ? " — foil" : marks.watched?.includes(c.id) ? " — watched" : ""),
          `${esc(text.raw)}: ${pct(c.raw_prob)} (${fmt(c.raw_prob)})`,
          `${esc(text.sampled)}: ${sampled}`,
          `logit: ${fmt(c.logit)}`,
        ];
        return lines.join("<br>");
      },
    },
    series,
  };
}
