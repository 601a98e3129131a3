import { describe, expect, it } from "vitest";
import type { Token } from "./api/types";
import { biggestDifferences, divergence } from "./compare";

const tok = (position: number, id: number, entropy: number | null, prob = 0.5): Token => ({
  position,
  id,
  text: String(id),
  label: String(id),
  kind: "generated",
  special: false,
  stats: entropy === null ? null : { raw_prob: prob, rank: 0, raw_entropy: entropy, logit_gap: 1, gap_to_top1: 0 },
});

describe("compare", () => {
  it("finds the diverging position", () => {
    const a = [tok(0, 1, null), tok(1, 2, 1), tok(2, 3, 1)];
    expect(divergence(a, [tok(0, 1, null), tok(1, 2, 1), tok(2, 9, 1)])).toBe(2);
    expect(divergence(a, a.slice(0, 2))).toBe(2);
    expect(divergence(a, [tok(0, 7, null)])).toBe(0);
  });
  it("ranks positions by how much entropy and probability changed", () => {
    const a = [tok(0, 1, null), tok(1, 2, 1, 0.5), tok(2, 3, 2, 0.5), tok(3, 4, 1, 0.5)];
    const b = [tok(0, 1, null), tok(1, 2, 1, 0.5), tok(2, 5, 0.5, 0.9), tok(3, 4, 1.2, 0.5)];
    const d = biggestDifferences(a, b);
    expect(d.map((x) => x.position)).toEqual([2, 3]);
    expect(d[0].dEntropy).toBeCloseTo(-1.5);
    expect(d[0].dProb).toBeCloseTo(0.4);
  });
});
