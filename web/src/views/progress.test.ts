import { describe, expect, it } from "vitest";
import type { ViewActivity } from "../api/types";
import { progressText } from "./progress";

const act = (view: string, step: string, done: number, total: number, seconds: number): ViewActivity => ({
  view,
  step,
  done,
  total,
  seconds,
});

describe("progressText", () => {
  it("says how far a counted step is", () => {
    expect(progressText(["attribution"], [act("attribution", "rollout", 12, 30, 7.6)])).toBe(
      "Computing… attention rollout, 12 of 30 layers (8 s)",
    );
    expect(progressText(["attention"], [act("attention", "rows", 4096, 8000, 2)])).toBe(
      "Computing… attention, 4096 of 8000 query rows (2 s)",
    );
    expect(progressText(["attribution"], [act("attribution", "steps", 6, 32, 40.2)])).toBe(
      "Computing… integrated gradients, 6 of 32 steps (40 s)",
    );
  });
  it("says when a view waits for the model, and falls back for steps it does not know", () => {
    expect(progressText(["contribution_graph"], [act("contribution_graph", "waiting", 0, 0, 1.2)])).toBe(
      "Computing… waiting for the model (1 s)",
    );
    expect(progressText(["x"], [act("x", "something new", 3, 9, 3)])).toBe("Computing… (3 s)");
    expect(progressText(["x"], [act("x", "computing", 0, 0, 4)])).toBe("Computing… (4 s)");
  });
  it("follows the tab's own views in its order, the longest-running request of one", () => {
    const list = [
      act("embedding", "rows", 1, 2, 9),
      act("contribution_graph", "graph", 3, 30, 1),
      act("contribution_graph", "graph", 20, 30, 2),
      act("head_contributions", "computing", 0, 0, 5),
    ];
    expect(progressText(["contribution_graph", "head_contributions"], list)).toBe(
      "Computing… contribution graph, 20 of 30 layers (2 s)",
    );
    expect(progressText(["neuron_contributions"], list)).toBeNull();
  });
});
