/** Compare view: two runs' entropy and confidence curves overlaid, the divergence marked. */
import type { Token } from "../api/types";
import { axisStyle, base, esc, fmt, pct, probabilityAxis, type Option } from "./common";
import { labelInterval } from "./heatmap";
import type { Theme } from "./theme";

export function compareCurvesOption(
  a: Token[],
  b: Token[],
  names: [string, string],
  diverge: number,
  theme: Theme,
  title: string,
): Option {
  const n = Math.max(a.length, b.length);
  const x = Array.from({ length: n }, (_, i) => String(i));
  const ent = (ts: Token[]) => x.map((_, i) => ts[i]?.stats?.raw_entropy ?? null);
  const conf = (ts: Token[]) =>
    x.map((_, i) => {
      const s = ts[i]?.stats;
      return s ? (s.sampled_prob ?? s.raw_prob) : null;
    });
  const b0 = base(theme, title, "llmvis-compare");
  const colours = [theme.accent, theme.accent2];
  return {
    ...b0,
    tooltip: {
      ...(b0.tooltip as Option),
      trigger: "axis",
      formatter: (ps: { dataIndex: number }[]) => {
        const i = ps[0].dataIndex;
        const row = (name: string, t: Token | undefined) => {
          if (!t) return `${esc(name)}: –`;
          const p = t.stats ? (t.stats.sampled_prob ?? t.stats.raw_prob) : null;
          return `${esc(name)}: <b>${esc(t.label)}</b> · H ${fmt(t.stats?.raw_entropy)} · p ${pct(p)}`;
        };
        return [`position ${i}`, row(names[0], a[i]), row(names[1], b[i])].join("<br>");
      },
    },
    legend: { top: 26, left: 8, itemHeight: 8, textStyle: { color: theme.muted } },
    grid: { left: 8, right: 12, top: 60, bottom: 36, containLabel: true },
    dataZoom: [
      { type: "inside", filterMode: "none" },
      { type: "slider", height: 14, bottom: 6, borderColor: theme.grid },
    ],
    xAxis: {
      type: "category",
      data: x,
      ...axisStyle(theme),
      axisLabel: { color: theme.muted, interval: labelInterval(n, 20) },
    },
    yAxis: [{ type: "value", ...axisStyle(theme) }, probabilityAxis(theme)],
    series: [
      {
        name: `${names[0]} · entropy`,
        type: "line",
        data: ent(a),
        showSymbol: false,
        color: colours[0],
        connectNulls: false,
        markLine: {
          symbol: "none",
          data: [{ xAxis: diverge }],
          lineStyle: { color: theme.warn, type: "dashed" },
          label: { formatter: "fork", color: theme.warn },
        },
      },
      { name: `${names[1]} · entropy`, type: "line", data: ent(b), showSymbol: false, color: colours[1] },
      {
        name: `${names[0]} · p`,
        type: "line",
        yAxisIndex: 1,
        data: conf(a),
        showSymbol: false,
        color: colours[0],
        lineStyle: { type: "dotted", width: 1 },
      },
      {
        name: `${names[1]} · p`,
        type: "line",
        yAxisIndex: 1,
        data: conf(b),
        showSymbol: false,
        color: colours[1],
        lineStyle: { type: "dotted", width: 1 },
      },
    ],
  };
}
