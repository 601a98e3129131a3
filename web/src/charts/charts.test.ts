/**
 * Every chart builder: the series hold the view's data, axes carry token labels, tooltips
 * show exact values, and the save-as-PNG button is there.
 */
import { describe, expect, it } from "vitest";
import { activationStatsOption, activationsOption } from "./activations";
import { attentionOption, attentionRowOption, binRange } from "./attention";
import { attributionOption } from "./attribution";
import { fmt, type Option, posLabel, short } from "./common";
import { embeddingOption } from "./embedding";
import {
  expertPartsOption,
  expertsGridOption,
  expertsLoadOption,
  expertsReport,
  expertsTokenOption,
  loadShares,
} from "./experts";
import * as fx from "./fixtures";
import { headEntropyOption } from "./headEntropy";
import { headHealthOption } from "./headHealth";
import {
  type CellGeometry,
  cellAt,
  cells,
  cellValues,
  colorRamp,
  heatmapOption,
  IMAGE_CELLS,
  paintCells,
  pointer,
  quantile,
} from "./heatmap";
import { layerSimilarityOption } from "./layerSimilarity";
import { logitLensOption } from "./logitLens";
import { gridShape, multiHeadOption } from "./multiHead";
import { residualStreamOption } from "./residualStream";
import { sampledTitle } from "./sampledTitle";
import { DARK, LIGHT } from "./theme";
import { savedViewOption } from "../views/savedViews";
import { topCandidatesOption } from "./topCandidates";
import { entropyCurveOption } from "./uncertainty";

type Series = { type: string; data: unknown[]; name?: string };
const series = (o: Option) => o.series as Series[];
const tooltip = (o: Option, arg: unknown) => (o.tooltip as { formatter: (p: unknown) => string }).formatter(arg);
const axisData = (o: Option, axis: "xAxis" | "yAxis") => (o[axis] as { data: string[] }).data;

function hasPng(o: Option) {
  const tb = o.toolbox as { feature: { saveAsImage: { name: string } } };
  expect(tb.feature.saveAsImage.name).toMatch(/^llmvis-/);
}

describe("common", () => {
  it("formats numbers and labels", () => {
    expect(fmt(0.1 + 0.2)).toBe("0.3");
    expect(fmt(123456789)).toBe("1.23e+8");
    expect(fmt(null)).toBe("–");
    expect(short("a\nb", 12)).toBe("a↵b");
    expect(short("abcdefghijklmnop", 6)).toBe("abcde…");
    expect(posLabel(3, "the")).toBe("3 the");
  });
  it("heatmap cells skip zeros and nulls when asked", () => {
    expect(
      cells(
        [
          [1, 0],
          [null, 2],
        ],
        true,
      ),
    ).toEqual([
      [0, 0, 1],
      [1, 1, 2],
    ]);
    expect(cells([[1, 0]])).toHaveLength(2);
  });
});

describe("image heatmap", () => {
  it("a colour ramp interpolates its stops and clamps", () => {
    const ramp = colorRamp(["#000000", "#ff8000", "#ffffff"]);
    expect(ramp(0)).toEqual([0, 0, 0]);
    expect(ramp(0.5)).toEqual([255, 128, 0]);
    expect(ramp(0.75)).toEqual([255, 192, 128]);
    expect(ramp(2)).toEqual([255, 255, 255]);
    expect(ramp(Number.NaN)).toEqual([0, 0, 0]);
  });
  it("cells are found under a pixel, rows top-down or bottom-up", () => {
    const g = { x0: 10, y0: 20, cw: 5, ch: 4, cols: 3, rows: 2 };
    expect(cellAt(g, 10, 20)).toEqual([0, 0]);
    expect(cellAt(g, 24.9, 27.9)).toEqual([1, 2]);
    expect(cellAt(g, 25, 20)).toBeNull();
    expect(cellAt(g, 9, 20)).toBeNull();
    const up = { ...g, y0: 28, ch: -4 }; // row 0 at the bottom
    expect(cellAt(up, 10, 27)).toEqual([0, 0]);
    expect(cellAt(up, 10, 21)).toEqual([1, 0]);
  });
  it("paints each pixel with its cell's colour, nothing where a cell is skipped", () => {
    const g = { x0: 0, y0: 0, cw: 2, ch: 1, cols: 2, rows: 2 };
    const grey = (v: number) => [v, v, v] as [number, number, number];
    const px = paintCells(
      [
        [10, 0],
        [null, 40],
      ],
      g,
      0,
      0,
      4,
      2,
      grey,
      true,
    );
    const at = (x: number, y: number) => Array.from(px.slice((y * 4 + x) * 4, (y * 4 + x) * 4 + 4));
    expect(at(0, 0)).toEqual([10, 10, 10, 255]);
    expect(at(1, 0)).toEqual([10, 10, 10, 255]);
    expect(at(2, 0)).toEqual([0, 0, 0, 0]); // a zero, skipped
    expect(at(0, 1)).toEqual([0, 0, 0, 0]); // null
    expect(at(3, 1)).toEqual([40, 40, 40, 255]);
  });
  it("paints what a pixel-by-pixel painter paints, cells several pixels wide and tall, either way up", () => {
    // a seeded matrix with zeros, nulls and NaN; a colour that depends on the value
    let seed = 7;
    const rand = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const matrix = Array.from({ length: 9 }, () =>
      Array.from({ length: 7 }, () => {
        const u = rand();
        return u < 0.1 ? null : u < 0.15 ? Number.NaN : u < 0.3 ? 0 : Math.round(u * 255);
      }),
    );
    const color = (v: number) => [v, 255 - v, (v * 7) % 256] as [number, number, number];
    const naive = (g: CellGeometry, left: number, top: number, w: number, h: number, skip: boolean) => {
      const px = new Uint8ClampedArray(w * h * 4);
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const r = Math.floor((top + y + 0.5 - g.y0) / g.ch);
          const c = Math.floor((left + x + 0.5 - g.x0) / g.cw);
          const v = r >= 0 && r < g.rows && c >= 0 && c < g.cols ? matrix[r][c] : null;
          if (v === null || Number.isNaN(v) || (skip && v === 0)) continue;
          px.set([...color(v), 255], (y * w + x) * 4);
        }
      return px;
    };
    const down = { x0: 3.2, y0: -1.7, cw: 2.6, ch: 3.3, cols: 7, rows: 9 };
    const up = { ...down, y0: 31.4, ch: -3.3 };
    for (const g of [down, up])
      for (const skip of [false, true])
        for (const [left, top, w, h] of [
          [0, 0, 24, 33],
          [5, 7, 11, 13],
        ])
          expect(paintCells(matrix, g, left, top, w, h, color, skip)).toEqual(naive(g, left, top, w, h, skip));
  });
  it("cellValues lists the values cells lists; quantile reads arrays and typed arrays", () => {
    const m = [
      [0.5, 0, null],
      [Number.NaN, 2, -1],
    ];
    for (const skip of [false, true]) expect(Array.from(cellValues(m, skip))).toEqual(cells(m, skip).map((d) => d[2]));
    expect(quantile(new Float64Array([5, 1, 3, 2, 4]), 0.5)).toBe(3);
    expect(quantile([10, -2, 7, 1e-3], 1)).toBe(10);
    expect(quantile([10, -2, 7, 1e-3], 0)).toBe(-2);
  });
  it("a large matrix becomes one painted image, with the same scale and tooltips", () => {
    const n = Math.ceil(Math.sqrt(IMAGE_CELLS)) + 1;
    const matrix = Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => (c <= r ? r + c : 0)));
    const labels = Array.from({ length: n }, (_, i) => `t${i}`);
    const spec = { title: "big", file: "f", matrix, xLabels: labels, yLabels: labels, skipZeros: true };
    const o = heatmapOption(spec, DARK);
    const [image, scale] = series(o);
    expect(image.type).toBe("custom");
    expect(scale.type).toBe("heatmap");
    expect((o.visualMap as { max: number }).max).toBe(2 * (n - 1));
    expect(axisData(o, "yAxis")).toEqual(labels);
    // the geometry comes from the painted layout: ECharts' api, here by hand
    const renderItem = (image as unknown as { renderItem: (p: unknown, api: unknown) => unknown }).renderItem;
    globalThis.document ??= { createElement: () => ({ getContext: () => null }) } as unknown as Document;
    const api = { coord: ([c, r]: number[]) => [100 + c * 4, 50 + r * 3], size: () => [4, 3] };
    renderItem({ coordSys: { x: 98, y: 48, width: 4 * n, height: 3 * n } }, api);
    const cellAtPixel = (o as { cellAt: (x: number, y: number) => [number, number] | null }).cellAt;
    expect(cellAtPixel(100 + 2 * 4, 50 + 5 * 3)).toEqual([5, 2]);
    pointer.x = 100 + 2 * 4;
    pointer.y = 50 + 5 * 3;
    const tip = (o.tooltip as { formatter: () => string }).formatter();
    expect(tip).toContain("t5 → t2");
    const heads = heatmapOption({ ...spec, cellByCell: true }, DARK); // styled and clicked cell by cell
    expect(series(heads).map((x) => x.type)).toEqual(["heatmap"]);
    pointer.x = 100 + 7 * 4; // above the diagonal: a skipped zero
    expect((o.tooltip as { formatter: () => string }).formatter()).toBe("");
  });
  it("a small matrix stays drawn cell by cell", () => {
    const o = heatmapOption({ title: "", file: "f", matrix: [[1, 2]], xLabels: ["a", "b"], yLabels: ["r"] }, DARK);
    expect(series(o)).toHaveLength(1);
    expect(series(o)[0].type).toBe("heatmap");
  });
});

describe("topCandidates", () => {
  const o = topCandidatesOption(fx.token, DARK, { title: "Top", raw: "raw", sampled: "sampled", chosen: "chosen" });
  it("draws raw and sampled bars, highest first, chosen marked", () => {
    expect(series(o).map((s) => s.data.length)).toEqual([3, 3]);
    const labels = axisData(o, "yAxis");
    expect(labels[labels.length - 1]).toBe("▶ ␣Paris");
    const raw = series(o)[0].data as { value: number; itemStyle: { borderWidth?: number } }[];
    expect(raw[2].value).toBe(0.6);
    expect(raw[2].itemStyle.borderWidth).toBe(2);
    expect(raw[0].itemStyle.borderWidth).toBeUndefined();
    hasPng(o);
  });
  it("tooltip shows exact probabilities", () => {
    const text = tooltip(o, [{ dataIndex: 1 }]);
    expect(text).toContain("␣Lyon");
    expect(text).toContain("20%");
    expect(text).toContain("logit: 7.5");
  });
  it("prompt tokens (no sampled probabilities) get one series", () => {
    const prompt = {
      ...fx.token,
      kind: "prompt" as const,
      stats: { ...fx.token.stats!, top: fx.token.stats!.top!.map((c) => ({ ...c, sampled_prob: null })) },
    };
    expect(series(topCandidatesOption(prompt, LIGHT, { title: "", raw: "r", sampled: "s", chosen: "c" }))).toHaveLength(
      1,
    );
  });
});

describe("attention", () => {
  it("matrix: causal cells only, labelled by position, zoomable", () => {
    const o = attentionOption(fx.attention, DARK, "Attention");
    expect(series(o)[0].data).toHaveLength(10); // lower triangle of 4×4
    expect(axisData(o, "xAxis")).toEqual(["0 a", "1 b", "2 c", "3 d"]);
    expect((o.dataZoom as unknown[]).length).toBeGreaterThan(0);
    expect(tooltip(o, { value: [1, 2, 0.3] })).toContain("query 2 c<br>key 1 b<br>attention <b>0.3</b>");
    hasPng(o);
  });
  it("pooled bins describe their range", () => {
    expect(binRange([0, 4, 8], 1, 10)).toEqual([4, 7]);
    expect(binRange([0, 4, 8], 2, 10)).toEqual([8, 9]);
    const pooled = { ...fx.attention, pooled: true, end: 8, row_indices: [0, 2, 4, 6], col_indices: [0, 2, 4, 6] };
    expect(tooltip(attentionOption(pooled, DARK, ""), { value: [0, 3, 0.9] })).toContain("6–7 (max of 2)");
  });
  it("row mode: one row per layer × head", () => {
    const o = attentionRowOption(fx.attentionRow, DARK, "row");
    expect(axisData(o, "yAxis")).toEqual(["L0 H0", "L0 H1", "L1 H0", "L1 H1"]);
    expect(series(o)[0].data).toHaveLength(16);
  });
  it("row mode of a hybrid: a layer without attention has no rows", () => {
    const hybrid = { ...fx.attentionRow, rows: [null, fx.attentionRow.rows![1]], missing_layers: { 0: "Mamba" } };
    const o = attentionRowOption(hybrid, DARK, "row");
    expect(axisData(o, "yAxis")).toEqual(["L1 H0", "L1 H1"]);
    expect(series(o)[0].data).toHaveLength(8);
    expect((o.title as { text: string }).text).toBe("row · no attention in L0");
  });
});

describe("heads", () => {
  it("multi-head: one small heatmap per head in a grid", () => {
    expect(gridShape(9)).toEqual([3, 3]);
    expect(gridShape(14)).toEqual([4, 4]);
    const o = multiHeadOption(fx.multiHead, DARK, "heads");
    expect(series(o)).toHaveLength(3);
    expect((o.grid as unknown[]).length).toBe(3);
    expect(series(o)[0].data).toHaveLength(6);
    expect(
      (o.tooltip as { formatter: (p: unknown) => string }).formatter({ seriesName: "H1", value: [0, 2, 0.3] }),
    ).toContain("H1 · query 2 → key 0");
    hasPng(o);
  });
  it("multi-head: many cells are painted, a head per image, with the cell under the mouse", () => {
    const n = 30; // 9 heads × 30 × 30 > IMAGE_CELLS
    const causal = Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => (c <= r ? 1 / (r + 1) : 0)));
    const view = { ...fx.multiHead, heads: 9, matrices: Array.from({ length: 9 }, () => causal) };
    view.row_indices = view.col_indices = Array.from({ length: n }, (_, i) => i);
    const o = multiHeadOption(view, DARK, "heads");
    expect(series(o).map((x) => x.type)).toEqual(Array(9).fill("custom"));
    expect((series(o)[4] as unknown as { paintedCells: number }).paintedCells).toBe((n * (n + 1)) / 2);
    const renderItem = (series(o)[4] as unknown as { renderItem: (p: unknown, api: unknown) => unknown }).renderItem;
    globalThis.document ??= { createElement: () => ({ getContext: () => null }) } as unknown as Document;
    renderItem(
      { coordSys: { x: 0, y: 0, width: 60, height: 60 } },
      { coord: ([c, r]: number[]) => [1 + 2 * c, 1 + 2 * r], size: () => [2, 2] },
    );
    pointer.x = 2 * 3 + 1;
    pointer.y = 2 * 7 + 1;
    const tip = (o.tooltip as { formatter: (p: unknown) => string }).formatter({
      seriesName: "H4",
      seriesIndex: 4,
      value: [0, 0],
    });
    expect(tip).toContain("H4 · query 7 → key 3");
    expect(tip).toContain("attention <b>0.125</b>");
  });
  it("head entropy: L×H cells in 0..1", () => {
    const o = headEntropyOption(fx.headEntropy, DARK, "entropy");
    expect(series(o)[0].data).toHaveLength(6);
    expect(axisData(o, "xAxis")).toEqual(["H0", "H1", "H2"]);
    expect(axisData(o, "yAxis")).toEqual(["L0", "L1"]);
    expect(tooltip(o, { value: [2, 0, 0.9] })).toContain("layer 0, head 2");
  });
  it("head entropy of a hybrid: the layer without attention is empty and named", () => {
    const hybrid = { ...fx.headEntropy, entropy: [null, [0.2, 0.3, 0.4]], missing_layers: { 0: "Mamba" } };
    const o = headEntropyOption(hybrid, DARK, "entropy");
    expect(series(o)[0].data).toHaveLength(3);
    expect(axisData(o, "yAxis")).toEqual(["L0 (no attention)", "L1"]);
  });
  it("head health: one cell per head, categorised", () => {
    const o = headHealthOption(fx.headHealth, DARK, "health");
    expect(series(o)[0].data).toEqual([
      [0, 0, 0],
      [1, 0, 1],
    ]);
    expect(tooltip(o, { value: [1, 0, 1] })).toContain("previous-token");
  });
  it("head statistics' titles say how many queries a sampled mean read", () => {
    expect(sampledTitle("chart.head_health", 9, 10)).toBe("Head health");
    expect(sampledTitle("chart.head_entropy", 121, 4224)).toBe(
      "Attention entropy per head, mean over 121 of 4,223 query positions",
    );
    expect(sampledTitle("chart.head_health", 64, 8192)).toBe("Head health, mean over 64 of 8,191 query positions");
  });
});

describe("layers", () => {
  it("layer similarity: (L+1)² cells, per position or mean", () => {
    const o = layerSimilarityOption(fx.layerSimilarity, false, DARK, "sim");
    expect(series(o)[0].data).toHaveLength(9);
    expect(axisData(o, "xAxis")).toEqual(["emb", "L1", "L2"]);
    const mean = layerSimilarityOption(fx.layerSimilarity, true, DARK, "sim");
    expect((series(mean)[0].data as number[][])[1][2]).toBe(0.8);
  });
  it("residual stream: norms and logit effects per layer", () => {
    const o = residualStreamOption(fx.residual, DARK, "resid");
    expect(series(o).map((s) => s.data.length)).toEqual([2, 2, 2, 2, 2]);
    expect(series(o)[4].data).toEqual([0.4, 1.3]);
  });
  it("residual stream with a third part per layer: its norm and effects are drawn, named", () => {
    const layers = fx.residual.layers.map((l, i) => ({ ...l, extra_norm: 0.2 + i, extra_logit: -0.5 * i }));
    const o = residualStreamOption({ ...fx.residual, layers, extra_part: "per-layer input" }, DARK, "resid");
    expect(series(o).map((s) => s.name)).toContain("per-layer input → logit");
    expect(series(o)[6].data).toEqual([-0, -0.5]);
    expect(series(o)[5].data).toEqual([0.2, 1.2]);
  });
  it("logit lens: top-k per layer plus the chosen token's probability", () => {
    const o = logitLensOption(fx.logitLens, DARK, "lens");
    expect(series(o)[0].data).toHaveLength(9);
    expect(axisData(o, "yAxis")).toEqual(["emb", "L1", "L2"]);
    expect(tooltip(o, { dataIndex: 8 })).toContain("rank 0");
    hasPng(o);
  });
});

describe("activations", () => {
  it("histogram heatmap per layer and spread lines", () => {
    const o = activationsOption(fx.activations.mlp, DARK, "act");
    expect(series(o)[0].data).toHaveLength(6);
    expect(axisData(o, "yAxis")).toEqual(["L0", "L1"]);
    expect(tooltip(o, { value: [1, 0, Math.log10(5)] })).toContain("<b>5</b> of 10 values");
    const s = activationStatsOption(fx.activations.attn, DARK, "stats");
    expect(series(s).map((x) => x.data.length)).toEqual([2, 2]);
  });
});

describe("embedding", () => {
  it("2D: scatter split into prompt and generated, position in the value", () => {
    const o = embeddingOption(fx.embedding2, DARK, "emb", 3);
    expect(series(o).map((s) => s.type)).toEqual(["scatter", "scatter"]);
    expect(series(o)[0].data).toEqual([
      [0, 0, 0],
      [1, 1, 1],
    ]);
    expect(series(o)[1].data).toHaveLength(2);
    expect((o.xAxis as { name: string }).name).toContain("60%");
    expect(tooltip(o, { dataIndex: 1, seriesIndex: 1, value: [] })).toContain("3 d");
  });
  it("3D: scatter3D with three coordinates", () => {
    const o = embeddingOption(fx.embedding3, DARK, "emb", null);
    expect(series(o).map((s) => s.type)).toEqual(["scatter3D", "scatter3D"]);
    expect((series(o)[1].data as number[][])[0]).toEqual([2, 0, 1, 2]);
    expect(o.grid3D).toBeDefined();
  });
});

describe("uncertainty", () => {
  const text = { title: "Entropy", entropy: "entropy", confidence: "confidence", upper: "entropy ≤" };
  it("position order skips positions without statistics", () => {
    const o = entropyCurveOption(fx.tokensView, ["a", "b", "c", "d"], false, DARK, text, 2);
    expect(axisData(o, "xAxis")).toEqual(["1 b", "2 c", "3 d"]);
    expect(series(o)[0].data).toEqual([3, 1, 0.2]);
    expect(series(o)[1].data).toEqual([0.2, 0.5, 0.9]);
    expect(tooltip(o, [{ dataIndex: 2 }])).toContain("95%");
  });
  it("a remote engine's bounds: the upper one dashed, the tooltip says ≥", () => {
    const remote = { ...fx.tokensView, entropy_upper: [null, 4.5, 2, 0.2] };
    const o = entropyCurveOption(remote, ["a", "b", "c", "d"], false, DARK, text, null);
    expect(series(o).map((s) => s.name)).toEqual(["entropy", "entropy ≤", "confidence"]);
    expect(series(o)[1].data).toEqual([4.5, 2, 0.2]);
    expect(tooltip(o, [{ dataIndex: 0 }])).toContain("≥ 3");
    expect(series(entropyCurveOption(fx.tokensView, ["a", "b", "c", "d"], false, DARK, text, null))).toHaveLength(2);
  });
  it("sorted by entropy draws bars, highest first", () => {
    const o = entropyCurveOption(fx.tokensView, ["a", "b", "c", "d"], true, DARK, text, null);
    expect(series(o)[0].type).toBe("bar");
    expect(series(o)[0].data).toEqual([3, 1, 0.2]);
  });
});

describe("attribution", () => {
  it("signed bars per source token", () => {
    const o = attributionOption(fx.attribution, DARK, "attr");
    expect(series(o)[0].data).toHaveLength(3);
    expect(axisData(o, "xAxis")).toEqual(["0 a", "1 b", "2 c"]);
    const bars = series(o)[0].data as { itemStyle: { color: string } }[];
    expect(bars[1].itemStyle.color).not.toEqual(bars[0].itemStyle.color);
    expect(tooltip(o, [{ dataIndex: 1 }])).toContain("score -0.2");
  });
});

describe("heatmap scale", () => {
  it("clips the colour scale at a quantile so sinks do not wash out the rest", async () => {
    const { labelInterval, heatmapOption } = await import("./heatmap");
    expect(quantile([5, 1, 3, 2, 4], 0.5)).toBe(3);
    expect(labelInterval(10, 24)).toBe(0);
    expect(labelInterval(100, 24)).toBe(4);
    const m = [
      [1, 0],
      [0.1, 0.2],
    ];
    const o = heatmapOption(
      { title: "", file: "llmvis-x", matrix: m, xLabels: ["a", "b"], yLabels: ["a", "b"], min: 0, clipQuantile: 0.5 },
      DARK,
    );
    expect((o.visualMap as { max: number }).max).toBe(0.2);
  });
});

describe("attribution without position 0", () => {
  it("drops the sink bar when asked", () => {
    const o = attributionOption(fx.attribution, DARK, "attr", true);
    expect(axisData(o, "xAxis")).toEqual(["1 b", "2 c"]);
    expect(series(o)[0].data).toHaveLength(2);
  });
});

describe("compare curves", () => {
  it("overlays both runs' entropy and confidence, divergence marked", async () => {
    const { compareCurvesOption } = await import("./compareCurves");
    const a = [fx.token, { ...fx.token, position: 1 }];
    const b = [fx.token, { ...fx.token, position: 1 }, { ...fx.token, position: 2 }];
    const o = compareCurvesOption(a, b, ["A", "B"], 1, DARK, "cmp");
    expect(series(o).map((s) => s.data.length)).toEqual([3, 3, 3, 3]);
    expect(series(o)[0].data[2]).toBeNull();
    expect(series(o)[3].data[2]).toBe(0.7);
    expect(tooltip(o, [{ dataIndex: 2 }])).toContain("A: –");
    hasPng(o);
  });
});

describe("experts", () => {
  const labels = ["a", "b", "c", "d", "e"];
  const heat = (o: Option) => series(o)[0].data as [number, number, number][];
  const markers = (o: Option) => series(o)[1].data as [number, number, number][];
  /** "expert:row" of every routed cell. */
  const routed = (routes: { experts: number[] }[]) => routes.flatMap((r, row) => r.experts.map((e) => `${e}:${row}`));

  it("token grid: one cell per token and expert holding the router probability", () => {
    const o = expertsGridOption(fx.experts, labels, DARK, "grid", 3);
    expect(axisData(o, "xAxis")).toEqual(["E0", "E1", "E2", "E3"]);
    expect(axisData(o, "yAxis")).toEqual(["0 a", "1 b", "2 c", "3 d", "4 e"]);
    expect(heat(o)).toHaveLength(20);
    for (const [c, r, v] of heat(o)) expect(v).toBe(fx.experts.probs[r][c]);
    hasPng(o);
  });
  it("token grid: the markers are exactly the routed cells, weights in the tooltip", () => {
    const o = expertsGridOption(fx.experts, labels, DARK, "grid", 3);
    expect(series(o)[1].type).toBe("scatter");
    expect(
      markers(o)
        .map(([c, r]) => `${c}:${r}`)
        .sort(),
    ).toEqual(routed(fx.experts.routing).sort());
    expect((o.visualMap as { seriesIndex: number }).seriesIndex).toBe(0);
    const text = tooltip(o, { value: [2, 1, 0.2] });
    expect(text).toContain("1 b → E2");
    expect(text).toContain("probability <b>0.2</b>");
    expect(text).toContain("chosen #2 · weight <b>0.25</b>");
    expect(tooltip(o, { value: [3, 1, 0.1] })).not.toContain("chosen");
  });
  it("token grid: the selected row is marked", () => {
    const o = expertsGridOption(fx.experts, labels, DARK, "grid", 3);
    const line = (series(o)[0] as unknown as { markLine: { data: { yAxis: string }[] } }).markLine;
    expect(line.data).toEqual([{ yAxis: "3 d" }]);
    const fmtLabel = (o.yAxis as { axisLabel: { formatter: (v: string, i: number) => string } }).axisLabel.formatter;
    expect(fmtLabel("3 d", 3)).toContain("▶");
    expect(fmtLabel("2 c", 2)).toBe("2 c");
  });
  it("token grid: pooled rows have no markers and say what they pool", () => {
    const pooled = {
      ...fx.experts,
      bin_size: 2,
      bin_starts: [0, 2, 4],
      probs: [
        [0.5, 0.6, 0.2, 0.1],
        [0.25, 0.25, 0.4, 0.5],
        [0.7, 0.1, 0.1, 0.1],
      ],
    };
    const o = expertsGridOption(pooled, labels, DARK, "grid", 3);
    expect(heat(o)).toHaveLength(12);
    expect(markers(o)).toEqual([]);
    expect(axisData(o, "yAxis")).toEqual(["0 a", "2 c", "4 e"]);
    expect(tooltip(o, { value: [0, 1, 0.25] })).toContain("2–3 (max of 2)");
  });
  it("load: token shares per MoE layer sum to 1, counts and balance in the tooltip", () => {
    expect(loadShares([3, 1])).toEqual([0.75, 0.25]);
    expect(loadShares([0, 0])).toEqual([0, 0]);
    const o = expertsLoadOption(fx.experts, DARK, "load");
    expect(heat(o)).toHaveLength(8);
    expect(axisData(o, "yAxis")).toEqual(["L1 · 0.94", "L3 · 0.88"]);
    for (const row of [0, 1]) {
      const sum = heat(o)
        .filter(([, r]) => r === row)
        .reduce((a, [, , v]) => a + v, 0);
      expect(sum).toBeCloseTo(1, 10);
    }
    expect(heat(o).find(([c, r]) => c === 0 && r === 1)![2]).toBe(0.5);
    const text = tooltip(o, { value: [0, 1, 0.5] });
    expect(text).toContain("layer 3, E0");
    expect(text).toContain("5 of 5 tokens");
    expect(text).toContain("summed weight 3");
    expect(text).toContain("balance 0.8805");
  });
  it("token routing: MoE layers × experts, chosen experts marked with their weights", () => {
    const o = expertsTokenOption(fx.experts, DARK, "token");
    expect(axisData(o, "yAxis")).toEqual(["L1", "L3"]);
    for (const [c, r, v] of heat(o)) expect(v).toBe(fx.experts.position_probs[r][c]);
    expect(heat(o)).toHaveLength(8);
    expect(
      markers(o)
        .map(([c, r]) => `${c}:${r}`)
        .sort(),
    ).toEqual(routed(fx.experts.position_routing).sort());
    const text = tooltip(o, { value: [0, 1, 0.6] });
    expect(text).toContain("layer 3, E0");
    expect(text).toContain("chosen #1 · weight <b>0.75</b>");
  });
  it("parts: a bar per chosen expert and the shared one", () => {
    const o = expertPartsOption(fx.experts, DARK, "parts");
    expect(axisData(o, "xAxis")).toEqual(["E3", "E2", "shared"]);
    expect((series(o)[0].data as { value: number }[]).map((d) => d.value)).toEqual([1.5, 0.8, 2.1]);
    expect(tooltip(o, [{ dataIndex: 0 }])).toContain("weight 0.625");
    expect(tooltip(o, [{ dataIndex: 2 }])).toContain("shared");
    expect(axisData(expertPartsOption(fx.experts, DARK, "parts", "共享"), "xAxis")[2]).toBe("共享");
    hasPng(o);
  });
  it("the offline report draws a saved experts view", () => {
    expect(expertsReport.view).toBe("experts");
    const tokens = labels.map((label, position) => ({ ...fx.token, position, label }));
    const o = savedViewOption({ view: "experts", params: { layer: 1 }, result: fx.experts }, tokens, DARK);
    expect(o).not.toBeNull();
    expect((o!.title as { text: string }).text).toBe("experts (layer=1)");
    expect(axisData(o!, "yAxis")).toEqual(["0 a", "1 b", "2 c", "3 d", "4 e"]);
  });
});
