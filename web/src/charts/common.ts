/** Pieces every chart option shares: text style, tooltip look, the save-as-PNG toolbox. */
import type { Token } from "../api/types";
import type { ViewName, ViewResult } from "../api/views";
import type { Theme } from "./theme";

export type Option = Record<string, unknown>;

/**
 * How the offline report draws a result of `view` saved with a run (no server, no controls).
 * Each chart module that has one exports it beside its builder; views/savedViews.ts lists them.
 */
export interface ReportRenderer<N extends ViewName> {
  view: N;
  render(result: ViewResult<N>, tokens: Token[], theme: Theme, title: string): Option;
}

export function base(theme: Theme, title: string, file = "llmvis-chart"): Option {
  return {
    backgroundColor: theme.bg,
    animation: false,
    textStyle: { fontFamily: theme.font, color: theme.text },
    title: {
      text: title,
      left: 8,
      top: 4,
      textStyle: { fontSize: 13, fontWeight: 600, color: theme.text, fontFamily: theme.font },
    },
    tooltip: {
      confine: true,
      backgroundColor: theme.panel,
      borderColor: theme.grid,
      textStyle: { color: theme.text, fontSize: 12, fontFamily: theme.font },
    },
    toolbox: {
      right: 8,
      top: 2,
      iconStyle: { borderColor: theme.muted },
      feature: { saveAsImage: { name: file, title: "PNG", pixelRatio: 2, backgroundColor: theme.panel } },
    },
  };
}

/** Show about `max` labels on a category axis of `n` entries. */
export function labelInterval(n: number, max: number): number {
  return Math.max(0, Math.ceil(n / max) - 1);
}

/** A category axis of token or layer labels: small monospace labels, about `shown` of them. */
export function labelAxis(theme: Theme, labels: string[], shown: number, rotate = 0): Option {
  return {
    type: "category",
    data: labels,
    ...axisStyle(theme),
    axisLabel: {
      color: theme.muted,
      fontSize: 10,
      rotate,
      interval: labelInterval(labels.length, shown),
      fontFamily: "ui-monospace, monospace",
    },
  };
}

export function axisStyle(theme: Theme): Option {
  return {
    axisLine: { lineStyle: { color: theme.grid } },
    axisTick: { lineStyle: { color: theme.grid } },
    axisLabel: { color: theme.muted, fontSize: 11 },
    splitLine: { lineStyle: { color: theme.grid, opacity: 0.5 } },
    nameTextStyle: { color: theme.muted },
  };
}

/** A second value axis for probabilities, 0–100 %, without grid lines of its own. */
export function probabilityAxis(theme: Theme): Option {
  return {
    type: "value",
    min: 0,
    max: 1,
    ...axisStyle(theme),
    splitLine: { show: false },
    axisLabel: { color: theme.muted, formatter: (v: number) => `${v * 100}%` },
  };
}

/** Significant-digit formatting for tooltips: exact enough, never "0.30000000004". */
export function fmt(x: number | null | undefined, digits = 4): string {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-4) return x.toExponential(2);
  return String(Number(x.toPrecision(digits)));
}

export function pct(x: number | null | undefined): string {
  if (x === null || x === undefined) return "–";
  return `${fmt(x * 100, 3)}%`;
}

/** Escape text put into tooltip HTML (token labels can hold "<", "&"). */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** Short readable form of a token label for axes: visible whitespace, cut to `max` chars. */
export function short(label: string, max = 12): string {
  const s = label.replace(/\n/g, "↵").replace(/\t/g, "⇥");
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** "12 the" style axis label keeping positions unique even when labels repeat. */
export function posLabel(pos: number, label: string, max = 10): string {
  return `${pos} ${short(label, max)}`;
}

/** "'Paris' vs 'Lyon'": how a title says its numbers explain the target against a foil. */
export function versus(target: string, foil: string): string {
  return `'${target}' vs '${foil}'`;
}

/** A title suffix naming what a chart explains: ": 'Paris' vs 'Lyon'" with a foil, else " → 'Paris'". */
export function explains(target: string, foil: string | null | undefined): string {
  return foil === null || foil === undefined ? ` → '${target}'` : `: ${versus(target, foil)}`;
}

/** A chart slot that has nothing to draw: its title and, below it, why. */
export function messageOption(theme: Theme, title: string, message: string): Option {
  const b = base(theme, title);
  return {
    ...b,
    toolbox: undefined,
    title: {
      ...(b.title as Option),
      subtext: message,
      subtextStyle: { color: theme.muted, fontSize: 12, width: 480, overflow: "break", lineHeight: 16 },
    },
    series: [],
  };
}
