import { describe, expect, it } from "vitest";
import type { Token } from "./api/types";
import { chipColor, goodness, score } from "./colors";

function tok(kind: "prompt" | "generated", stats: Partial<NonNullable<Token["stats"]>> | null): Token {
  return {
    position: 1,
    id: 5,
    text: "a",
    label: "a",
    kind,
    special: false,
    stats:
      stats === null
        ? null
        : { raw_prob: 0.5, rank: 0, raw_entropy: 1, logit_gap: 1, gap_to_top1: 0, top: [], ...stats },
  };
}

describe("chip colours", () => {
  it("default mode marks only generated tokens that were not top-1", () => {
    expect(chipColor(tok("generated", { rank: 0 }), "default", true)).toBe("");
    expect(chipColor(tok("generated", { rank: 2 }), "default", true)).toMatch(/rgba\(242/);
    expect(chipColor(tok("prompt", { rank: 2 }), "default", true)).toBe("");
    expect(chipColor(tok("prompt", null), "entropy", true)).toBe("");
  });

  it("entropy goes red when high and green when low", () => {
    expect(chipColor(tok("generated", { raw_entropy: 0 }), "entropy", true)).toContain("hsla(120");
    expect(chipColor(tok("generated", { raw_entropy: 50 }), "entropy", true)).toContain("hsla(0,");
  });

  it("probability uses the sampled probability when recorded", () => {
    expect(score(tok("generated", { raw_prob: 0.1, sampled_prob: 0.9 }), "probability")).toBe(0.9);
    expect(score(tok("prompt", { raw_prob: 0.1 }), "probability")).toBe(0.1);
  });

  it("a small logit gap is red, a large one green, and modes differ", () => {
    const t = tok("generated", { logit_gap: 0.1, raw_entropy: 0.1 });
    expect(chipColor(t, "gap", true)).not.toEqual(chipColor(t, "entropy", true));
    expect(goodness(2, false)).toContain("hsla(120");
    expect(goodness(-1, false)).toContain("hsla(0,");
  });
});
