/** The warm-up charts: built without error, and through the code paths a long run takes. */
import { describe, expect, it } from "vitest";
import type { Option } from "./common";
import { DARK, LIGHT } from "./theme";
import { warmUpOptions } from "./warmUp";

type Series = { type: string; data?: unknown[]; links?: unknown[] };
const series = (o: Option) => (o.series ?? []) as Series[];

describe("warm-up charts", () => {
  it("every chart has data, in either theme", () => {
    for (const theme of [DARK, LIGHT]) {
      const options = warmUpOptions(theme);
      expect(options.length).toBeGreaterThan(10);
      for (const o of options) expect(series(o).some((s) => (s.data?.length ?? 0) > 0)).toBe(true);
    }
  });

  it("takes the long run's paths: painted matrices, a zoomed row, a graph with edges", () => {
    const options = warmUpOptions(DARK);
    const types = options.flatMap((o) => series(o).map((s) => s.type));
    expect(types.filter((t) => t === "custom").length).toBeGreaterThanOrEqual(3); // painted heatmaps
    expect(options.some((o) => Array.isArray(o.dataZoom) && o.dataZoom.length > 0)).toBe(true);
    const graph = options.flatMap(series).find((s) => s.type === "graph");
    expect(graph?.links?.length).toBeGreaterThan(10);
  });
});
