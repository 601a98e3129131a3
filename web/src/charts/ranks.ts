/**
 * Layers tab: how the followed tokens' ranks move through the layers (the logit lens's
 * `watched`: the target, the foil, then the watched tokens; like Ecco's rankings_watch).
 * x = hidden state 0..L, y = rank on a log scale, #1 (top-1) at the top. With a foil, the
 * logit gap logit(target) − logit(foil) per layer is a second, linear axis on the right.
 */
import type { LogitLensView } from "../api/views";
import { axisStyle, base, esc, fmt, pct, short, type Option } from "./common";
import type { Theme } from "./theme";

export interface RanksText {
  title: string;
  /** the y axis's name */
  rank: string;
  /** the logit gap series' name */
  gap: string;
  /** a line under the title (e.g. which tokens are followed) */
  subtitle?: string;
}

/** The smallest power of ten ≥ n (the log axis's top), at least 10. */
export function rankAxisMax(n: number): number {
  let m = 10;
  while (m < n) m *= 10;
  return m;
}

/** Line colours: the target, the foil, then the watched tokens. */
function palette(theme: Theme): string[] {
  return [theme.accent, theme.diverging[2], theme.accent2, "#4fc38a", "#b48cff", theme.muted];
}

export function rankTrajectoryOption(view: LogitLensView, theme: Theme, text: RanksText): Option {
  const watched = view.watched ?? [];
  const xl = view.layers.map((l) => (l.layer === 0 ? "emb" : `L${l.layer}`));
  const colours = palette(theme);
  const hasFoil = view.foil_id !== null && view.foil_id !== undefined;
  const role = (id: number) => (id === view.token_id ? "▶ " : hasFoil && id === view.foil_id ? "vs " : "");
  const names = watched.map((w) => `${role(w.id)}${short(w.label, 14)}`);
  const top = rankAxisMax(Math.max(1, ...watched.flatMap((w) => w.ranks.map((r) => r + 1))));
  const lines: Option[] = watched.map((w, i) => ({
    name: names[i],
    type: "line",
    // rank 0 (top-1) is #1: a log axis has no 0
    data: w.ranks.map((r) => r + 1),
    color: colours[Math.min(i, colours.length - 1)],
    symbolSize: 5,
    lineStyle: { width: w.id === view.token_id ? 2.5 : 1.6 },
    z: w.id === view.token_id ? 3 : 2,
  }));
  const gap: Option[] = hasFoil
    ? [
        {
          name: text.gap,
          type: "line",
          yAxisIndex: 1,
          data: view.layers.map((l) => l.logit_gap ?? null),
          color: theme.muted,
          showSymbol: false,
          lineStyle: { type: "dashed", width: 1.5 },
          markLine: {
            silent: true,
            symbol: "none",
            label: { show: false },
            lineStyle: { color: theme.grid, type: "solid" },
            data: [{ yAxis: 0 }],
          },
        },
      ]
    : [];
  const b = base(theme, text.title, `llmvis-ranks-${view.position}`);
  const sub = text.subtitle ? 18 : 0;
  return {
    ...b,
    title: {
      ...(b.title as Option),
      subtext: text.subtitle ?? "",
      subtextStyle: { color: theme.muted, fontSize: 11 },
      itemGap: 4,
    },
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "axis",
      formatter: (ps: { dataIndex: number }[]) => {
        const i = ps[0]?.dataIndex ?? 0;
        const rows = watched.map(
          (w, k) =>
            `<span style="color:${colours[Math.min(k, colours.length - 1)]}">●</span> ${esc(names[k])}: ` +
            `#${w.ranks[i] + 1} · p ${pct(w.probs[i])}`,
        );
        const g = view.layers[i]?.logit_gap;
        if (hasFoil && g !== null && g !== undefined) rows.push(`${esc(text.gap)}: <b>${fmt(g)}</b>`);
        return [`<b>${xl[i]}</b>`, ...rows].join("<br>");
      },
    },
    legend: {
      top: 26 + sub,
      left: 8,
      itemHeight: 8,
      textStyle: { color: theme.muted, fontSize: 11 },
      data: [...names, ...(hasFoil ? [text.gap] : [])],
    },
    grid: { left: 8, right: hasFoil ? 16 : 24, top: 72 + sub, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: xl, boundaryGap: false, ...axisStyle(theme) },
    yAxis: [
      {
        type: "log",
        logBase: 10,
        min: 1,
        max: top,
        inverse: true,
        name: text.rank,
        // an inverted axis starts at the top
        nameLocation: "start",
        nameGap: 12,
        nameTextStyle: { color: theme.muted, align: "left" },
        ...axisStyle(theme),
        axisLabel: { color: theme.muted, fontSize: 11, formatter: (v: number) => `#${v}` },
      },
      ...(hasFoil
        ? [
            {
              type: "value",
              name: text.gap,
              nameGap: 12,
              nameTextStyle: { color: theme.muted, align: "right" },
              ...axisStyle(theme),
              splitLine: { show: false },
            },
          ]
        : []),
    ],
    series: [...lines, ...gap],
  };
}
