/**
 * Comparing two runs: where they diverge and how their statistics differ position by position.
 * Pure functions over token lists, used by the compare view.
 */
import type { Token } from "./api/types";

/** First position where the two runs hold different tokens (the shorter length if none). */
export function divergence(a: Token[], b: Token[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i].id !== b[i].id) return i;
  return n;
}

export interface PositionDiff {
  position: number;
  a: Token;
  b: Token;
  /** b − a raw entropy, nats */
  dEntropy: number;
  /** b − a probability of the token each run chose */
  dProb: number;
  score: number;
}

/** Positions present in both with statistics, largest |Δentropy| + |Δprob| first. */
export function biggestDifferences(a: Token[], b: Token[], limit = 10): PositionDiff[] {
  const out: PositionDiff[] = [];
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const sa = a[i].stats;
    const sb = b[i].stats;
    if (!sa || !sb) continue;
    const dEntropy = sb.raw_entropy - sa.raw_entropy;
    const pa = sa.sampled_prob ?? sa.raw_prob;
    const pb = sb.sampled_prob ?? sb.raw_prob;
    const dProb = pb - pa;
    const score = Math.abs(dEntropy) + Math.abs(dProb);
    if (score > 0) out.push({ position: i, a: a[i], b: b[i], dEntropy, dProb, score });
  }
  return out.sort((x, y) => y.score - x.score || x.position - y.position).slice(0, limit);
}
