/**
 * The foil and the Contributions tab's charts: head effects, a head's attention row, the
 * neuron ranking, the contribution graph and its edge's heads, the rank trajectories.
 */
import { describe, expect, it } from "vitest";
import { explains, type Option, versus } from "./common";
import {
  headContributionsReport,
  headEffectsOption,
  headRowOption,
  neuronRows,
  neuronsOption,
  topHead,
} from "./contributions";
import * as fx from "./fixtures";
import {
  EDGE_MIN,
  EDGE_SCALE,
  edgeHeadsOption,
  edgeWidth,
  flowColumns,
  flowGraphOption,
  nodeSize,
  topAttentionEdge,
} from "./flowGraph";
import { logitLensOption } from "./logitLens";
import { rankAxisMax, rankTrajectoryOption } from "./ranks";
import { residualStreamOption } from "./residualStream";
import { DARK, LIGHT } from "./theme";
import { topCandidatesOption } from "./topCandidates";
import { savedViewOption } from "../views/savedViews";

type Series = { type: string; data: unknown[]; name?: string; links?: Link[]; yAxisIndex?: number };
type Link = {
  source: number;
  target: number;
  value: number;
  lineStyle: { width: number; color: string; curveness: number };
};
type Node = { name: string; value: [number, number]; symbolSize: number };
const series = (o: Option) => o.series as Series[];
const title = (o: Option) => (o.title as { text: string }).text;
const tip = (o: Option, arg: unknown) => (o.tooltip as { formatter: (p: unknown) => string }).formatter(arg);
const axis = (o: Option, a: "xAxis" | "yAxis") => (o[a] as { data: string[] }).data;
const png = (o: Option) => (o.toolbox as { feature: { saveAsImage: { name: string } } }).feature.saveAsImage.name;
/** A heatmap cell's [col, row, value], whether drawn as an array or as an item with a style. */
const cell = (d: unknown) => (Array.isArray(d) ? d : (d as { value: number[] }).value) as [number, number, number];

describe("foil in titles", () => {
  it("says what is explained", () => {
    expect(versus("Paris", "Lyon")).toBe("'Paris' vs 'Lyon'");
    expect(explains("Paris", "Lyon")).toBe(": 'Paris' vs 'Lyon'");
    expect(explains("Paris", null)).toBe(" → 'Paris'");
  });
  it("the candidates chart marks the foil and the watched tokens", () => {
    const text = { title: "", raw: "raw", sampled: "sampled", chosen: "chosen" };
    const o = topCandidatesOption(fx.token, DARK, text, { foil: 7, watched: [9] });
    expect(axis(o, "yAxis")).toEqual(["◦ <0x0A>", "vs ␣Lyon", "▶ ␣Paris"]);
    expect(tip(o, [{ dataIndex: 1 }])).toContain("foil");
    expect(axis(topCandidatesOption(fx.token, DARK, text), "yAxis")).toEqual(["<0x0A>", "␣Lyon", "▶ ␣Paris"]);
  });
  it("the logit lens gets a column for the foil", () => {
    const o = logitLensOption(fx.logitLensFoil, DARK, "lens");
    expect(axis(o, "xAxis")).toEqual(["#1", "#2", "▶ d", "vs y"]);
    expect(series(o)[0].data).toHaveLength(12);
    const foilCells = (series(o)[0].data as { value: number[] }[]).filter((d) => d.value[0] === 3);
    expect(foilCells.map((d) => d.value[2])).toEqual(fx.logitLensFoil.layers.map((l) => l.foil_prob));
    expect(tip(o, { dataIndex: 3 })).toContain("logit gap (chosen − foil) <b>-1</b>");
    // without a foil: no extra column
    expect(axis(logitLensOption(fx.logitLens, DARK, "lens"), "xAxis")).toHaveLength(3);
  });
  it("the residual stream names its bars as effects on the difference", () => {
    const o = residualStreamOption({ ...fx.residual, foil_id: 7, foil_label: "y" }, DARK, "r");
    expect(series(o).map((s) => s.name)).toContain("attn → logit diff");
    expect(series(residualStreamOption(fx.residual, DARK, "r")).map((s) => s.name)).toContain("attn → logit");
  });
});

describe("rank trajectories", () => {
  it("one line per followed token, from the watched ranks (+1: #1 is top-1)", () => {
    const o = rankTrajectoryOption(fx.logitLensFoil, DARK, { title: "ranks", rank: "rank", gap: "gap" });
    const lines = series(o).filter((s) => s.type === "line" && s.yAxisIndex !== 1);
    expect(lines.map((s) => s.name)).toEqual(["▶ d", "vs y", "z"]);
    expect(lines.map((s) => s.data)).toEqual(fx.logitLensFoil.watched!.map((w) => w.ranks.map((r) => r + 1)));
    expect(axis(o, "xAxis")).toEqual(["emb", "L1", "L2"]);
    const y = (o.yAxis as { type: string; inverse?: boolean; max?: number }[])[0];
    expect(y.type).toBe("log");
    expect(y.inverse).toBe(true); // top-1 on top
    expect(y.max).toBe(1000); // rank 150 → #151 → the next power of ten
    expect(tip(o, [{ dataIndex: 2 }])).toContain("z: #3 · p 5%");
  });
  it("with a foil, the logit gap per layer on a second axis", () => {
    const o = rankTrajectoryOption(fx.logitLensFoil, DARK, { title: "", rank: "rank", gap: "gap" });
    const gap = series(o).find((s) => s.yAxisIndex === 1)!;
    expect(gap.name).toBe("gap");
    expect(gap.data).toEqual([-1, 0, 1]);
    expect(o.yAxis).toHaveLength(2);
    expect(tip(o, [{ dataIndex: 0 }])).toContain("gap: <b>-1</b>");
    const plain = { ...fx.logitLens, watched: [fx.logitLensFoil.watched![0]] };
    const p = rankTrajectoryOption(plain, LIGHT, { title: "", rank: "rank", gap: "gap" });
    expect(series(p)).toHaveLength(1);
    expect(p.yAxis).toHaveLength(1);
  });
  it("log axis tops", () => {
    expect(rankAxisMax(1)).toBe(10);
    expect(rankAxisMax(10)).toBe(10);
    expect(rankAxisMax(11)).toBe(100);
    expect(rankAxisMax(49152)).toBe(100000);
  });
});

describe("head effects", () => {
  const o = headEffectsOption(fx.headContributions, DARK, "heads", { layer: 2, head: 1 });
  it("an L × H map of the effects, on a scale symmetric around 0", () => {
    const data = series(o)[0].data.map(cell);
    expect(data).toHaveLength(4); // layers 0 and 2 × 2 heads; layer 1 has none
    for (const [c, r, v] of data) expect(v).toBe(fx.headContributions.effects[r]![c]);
    expect(axis(o, "xAxis")).toEqual(["H0", "H1"]);
    expect(axis(o, "yAxis")).toEqual(["L0", "L1 ✕", "L2"]);
    const vm = o.visualMap as { min: number; max: number; inRange: { color: string[] }; seriesIndex: number };
    expect([vm.min, vm.max]).toEqual([-1.5, 1.5]);
    expect(vm.inRange.color).toEqual(DARK.diverging);
    expect(png(o)).toMatch(/^llmvis-/);
  });
  it("a layer without heads is drawn empty, its reason in the tooltip", () => {
    const empty = series(o)[1];
    expect(empty.type).toBe("heatmap");
    expect(empty.data).toEqual([
      [0, 1, 0],
      [1, 1, 0],
    ]);
    expect((o.visualMap as { seriesIndex: number }).seriesIndex).toBe(0);
    expect(tip(o, { value: [0, 1, 0] })).toContain("Mamba mixer");
    const text = tip(o, { value: [1, 2, 0.75] });
    expect(text).toContain("layer 2, head 1");
    expect(text).toContain("logit(&#39;d&#39;) − logit(&#39;y&#39;)"); // escaped HTML
    expect(text).toContain("<b>0.75</b>");
    // a model with every layer: no empty series
    const dense = {
      ...fx.headContributions,
      effects: [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      missing_layers: {},
    };
    expect(series(headEffectsOption(dense, DARK, ""))).toHaveLength(1);
  });
  it("the shown head is outlined; the default is the largest |effect|", () => {
    const picked = series(o)[0].data.filter((d) => !Array.isArray(d)) as { value: number[] }[];
    expect(picked.map((d) => d.value)).toEqual([[1, 2, 0.75]]);
    expect(topHead(fx.headContributions)).toEqual({ layer: 2, head: 0 });
  });
  it("a head's attention row: its bars over the key bins", () => {
    const row = headRowOption(fx.attentionRow, { layer: 1, head: 0 }, DARK, "row");
    expect(series(row)[0].data).toEqual([0.7, 0.1, 0.1, 0.1]);
    expect(axis(row, "xAxis")).toEqual(["0 a", "1 b", "2 c", "3 d"]);
    expect(tip(row, [{ dataIndex: 0 }])).toContain("L1 H0 attention <b>0.7</b>");
  });
  it("the offline report draws it", () => {
    const saved = savedViewOption(
      { view: "head_contributions", params: { position: 3 }, result: fx.headContributions },
      [],
      DARK,
    );
    expect(headContributionsReport.view).toBe("head_contributions");
    expect(title(saved!)).toContain("logit('d') − logit('y')");
  });
});

describe("neurons", () => {
  it("every layer's neurons and experts merged, largest |effect| first", () => {
    const rows = neuronRows(fx.neuronContributions);
    expect(rows.map((r) => r.name)).toEqual(["L1 E3", "L0 n21", "L0 n7", "L1 shared"]);
    expect(rows.map((r) => r.effect)).toEqual([1.1, -0.9, 0.3, -0.05]);
    expect(neuronRows(fx.neuronContributions, 2)).toHaveLength(2);
  });
  it("bars read top-down, coloured by sign", () => {
    const o = neuronsOption(fx.neuronContributions, DARK, "neurons");
    expect(axis(o, "yAxis")).toEqual(["L1 shared", "L0 n7", "L0 n21", "L1 E3"]);
    const bars = series(o)[0].data as { value: number; itemStyle: { color: string } }[];
    expect(bars.map((b) => b.value)).toEqual([-0.05, 0.3, -0.9, 1.1]);
    expect(bars[3].itemStyle.color).toBe(DARK.diverging[2]);
    expect(bars[2].itemStyle.color).toBe(DARK.diverging[0]);
    const text = tip(o, [{ dataIndex: 2 }]);
    expect(text).toContain("activation -0.5");
    expect(text).toContain("Σ of its 128 neurons 0.4");
    expect(tip(o, [{ dataIndex: 3 }])).toContain("router weight 0.6");
  });
});

describe("contribution graph", () => {
  const text = { title: "flow", attention: "attention", residual: "residual" };
  const o = flowGraphOption(fx.contributionGraph, DARK, text);
  const g = series(o)[0];
  const nodes = g.data as Node[];
  const links = g.links!;

  it("a compact x axis: only positions with nodes, in order; hidden states up the y axis", () => {
    expect(flowColumns(fx.contributionGraph).positions).toEqual([0, 1, 3]);
    expect(axis(o, "xAxis")).toEqual(["0 a", "1 b", "▶ 3 d"]);
    expect(axis(o, "yAxis")).toEqual(["emb", "L1", "L2"]);
    expect(g.type).toBe("graph");
    expect((g as unknown as { coordinateSystem: string }).coordinateSystem).toBe("cartesian2d");
  });
  it("every node at (its position's column, its layer), area growing with importance", () => {
    expect(nodes).toHaveLength(fx.contributionGraph.nodes.length);
    expect(nodes.map((n) => n.value)).toEqual([
      [0, 0],
      [2, 0],
      [0, 1],
      [1, 1],
      [2, 1],
      [2, 2],
    ]);
    const sizes = nodes.map((n) => n.symbolSize);
    expect(sizes[5]).toBe(nodeSize(1));
    expect(nodeSize(0.25) - nodeSize(0)).toBeCloseTo((nodeSize(1) - nodeSize(0)) / 2, 10); // ∝ √importance
    expect(sizes[1]).toBeGreaterThan(sizes[0]);
  });
  it("every edge drawn between its nodes, width ∝ weight, attention coloured apart from residual", () => {
    expect(links).toHaveLength(fx.contributionGraph.edges.length); // none dropped
    fx.contributionGraph.edges.forEach((e, i) => {
      const l = links[i];
      expect(nodes[l.source].name).toBe(`${e.layer}:${e.source}`);
      expect(nodes[l.target].name).toBe(`${e.layer + 1}:${e.target}`);
      expect(l.value).toBe(e.weight);
      expect(l.lineStyle.width).toBe(edgeWidth(e.weight));
      expect(l.lineStyle.color).toBe(e.kind === "attention" ? DARK.accent : DARK.muted);
    });
    // above the floor, width is proportional to weight
    expect(links[0].lineStyle.width / links[1].lineStyle.width).toBeCloseTo(0.7 / 0.25, 10);
    expect(edgeWidth(0.01)).toBe(EDGE_MIN);
    expect(edgeWidth(0.5)).toBe(EDGE_SCALE * 0.5);
    // a token's attention to itself bends away from its residual edge
    expect(links[5].lineStyle.curveness).toBeGreaterThan(0);
    expect(links[3].lineStyle.curveness).toBe(0);
    expect(title(o)).toBe("flow");
    const sub = (o.title as { subtext: string }).subtext;
    expect(sub).toContain("7 edges (4 attn)");
    expect(sub).toContain("3 dropped");
    expect(sub).not.toContain("without nodes");
  });
  it("an edge without a node is counted, not hidden", () => {
    const broken = {
      ...fx.contributionGraph,
      edges: [...fx.contributionGraph.edges, { layer: 0, source: 1, target: 1, kind: "residual", weight: 0.3 }],
    };
    const b = flowGraphOption(broken, DARK, text);
    expect(series(b)[0].links).toHaveLength(7);
    expect((b.title as { subtext: string }).subtext).toContain("1 without nodes");
  });
  it("tooltips: a node's numbers, an edge's share and its heads", () => {
    const n = tip(o, { dataType: "node", data: nodes[4] });
    expect(n).toContain("3 d");
    expect(n).toContain("importance <b>0.7</b>");
    expect(n).toContain("MLP share of its update 5%");
    const e = tip(o, { dataType: "edge", data: links[1] });
    expect(e).toContain("0 a → 3 d");
    expect(e).toContain("attention · layer 1");
    expect(e).toContain("share of the node it feeds <b>0.25</b>");
    expect(e).toContain("heads: H0 80%, H1 20%");
  });
  it("the selected edge is highlighted; the default is the one carrying the most", () => {
    const top = topAttentionEdge(fx.contributionGraph)!;
    expect([top.layer, top.source, top.target]).toEqual([1, 0, 3]); // 0.25 × 1 > 0.2 × 0.7
    const sel = series(flowGraphOption(fx.contributionGraph, DARK, text, fx.contributionGraph.edges[2])!)[0].links!;
    expect(sel[2].lineStyle.color).toBe(DARK.warn);
    expect(sel[1].lineStyle.color).toBe(DARK.accent);
  });
  it("an edge's heads: one bar per head holding its share", () => {
    const h = edgeHeadsOption(fx.contributionGraph.edges[2], DARK, "heads");
    expect(axis(h, "xAxis")).toEqual(["H0", "H1"]);
    expect(series(h)[0].data).toEqual([0.1, 0.9]);
    expect(tip(h, [{ dataIndex: 1 }])).toContain("90%");
    expect(png(h)).toMatch(/^llmvis-flow-heads/);
  });
  it("the offline report draws a saved graph", () => {
    const saved = savedViewOption({ view: "contribution_graph", params: {}, result: fx.contributionGraph }, [], DARK);
    expect(series(saved!)[0].links).toHaveLength(7);
  });
});
