/**
 * Token chip colours for each colour mode. Pure: (token stats, mode, theme) → CSS colour.
 *
 * default      sampled ≠ the model's top-1 (rank > 0) → yellow; otherwise none
 * entropy      raw entropy in nats, 0 → green … ≥ ENTROPY_MAX → red
 * probability  the token's probability (sampled when recorded, else raw), 1 → green … 0 → red
 * gap          logit of top-1 minus top-2, ≥ GAP_MAX → green … 0 → red (a close call)
 */
import type { Token } from "./api/types";

export type ColorMode = "default" | "entropy" | "probability" | "gap";
export const COLOR_MODES: ColorMode[] = ["default", "entropy", "probability", "gap"];

export const ENTROPY_MAX = 5;
export const GAP_MAX = 5;

/** 0 → red, 1 → green, through yellow; alpha keeps the text readable on top. */
export function goodness(x: number, dark: boolean): string {
  const v = Math.min(1, Math.max(0, x));
  const hue = Math.round(v * 120);
  return dark ? `hsla(${hue}, 75%, 45%, 0.55)` : `hsla(${hue}, 80%, 55%, 0.45)`;
}

export const DEFAULT_OFF_TOP1 = { dark: "rgba(242, 201, 76, 0.55)", light: "rgba(240, 190, 40, 0.55)" };

/** The score in 0..1 (1 = confident) that a mode maps to a colour, or null when none applies. */
export function score(token: Token, mode: ColorMode): number | null {
  const s = token.stats;
  if (!s) return null;
  switch (mode) {
    case "default":
      return null;
    case "entropy":
      return 1 - Math.min(s.raw_entropy, ENTROPY_MAX) / ENTROPY_MAX;
    case "probability":
      return s.sampled_prob ?? s.raw_prob;
    case "gap":
      return Math.min(s.logit_gap, GAP_MAX) / GAP_MAX;
  }
}

/** Background colour of a chip, "" for none. */
export function chipColor(token: Token, mode: ColorMode, dark: boolean): string {
  const s = token.stats;
  if (!s) return "";
  if (mode === "default") {
    if (token.kind !== "generated") return "";
    return s.rank > 0 ? (dark ? DEFAULT_OFF_TOP1.dark : DEFAULT_OFF_TOP1.light) : "";
  }
  const v = score(token, mode);
  return v === null ? "" : goodness(v, dark);
}

/** CSS gradient for the legend bar of a continuous mode (left = confident). */
export function legendGradient(dark: boolean): string {
  const stops = [1, 0.75, 0.5, 0.25, 0].map((v) => goodness(v, dark));
  return `linear-gradient(90deg, ${stops.join(", ")})`;
}
