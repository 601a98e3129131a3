import { describe, expect, it } from "vitest";
import type { Token, TokenStats } from "./api/types";
import { applyPromptStats } from "./promptStats";

const stats = (p: number): TokenStats => ({
  raw_prob: p,
  rank: 0,
  raw_entropy: 1,
  logit_gap: 0.5,
  gap_to_top1: 0,
  top: [],
});
const token = (position: number, kind: "prompt" | "generated", s: TokenStats | null = null): Token => ({
  position,
  id: position,
  text: "x",
  label: "x",
  kind,
  special: false,
  stats: s,
});

describe("applyPromptStats", () => {
  it("fills the announced tokens and leaves the rest alone", () => {
    const generated = stats(0.9);
    const tokens = [token(0, "prompt"), token(1, "prompt"), token(2, "generated", generated)];
    applyPromptStats(tokens, { type: "prompt_stats", run_id: "r", stats: [null, stats(0.25)] });
    expect(tokens[0].stats).toBeNull();
    expect(tokens[1].stats?.raw_prob).toBe(0.25);
    expect(tokens[2].stats).toBe(generated);
  });

  it("ignores entries past the tokens it knows", () => {
    const tokens = [token(0, "prompt")];
    applyPromptStats(tokens, { type: "prompt_stats", run_id: "r", stats: [null, stats(0.5), stats(0.6)] });
    expect(tokens).toHaveLength(1);
  });
});
