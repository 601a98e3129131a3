/**
 * Small charts of every kind the Contributions, Layers, Heads and Attention tabs draw, built by
 * their own builders from the test fixtures. The page draws them once off screen while it is
 * idle (views/chartHost.ts, warmUpCharts): the first chart of a kind cost two to three times
 * what the next one did (the browser compiling ECharts' code for it), and that first time was
 * a user's first click on a tab.
 */
import type { AttentionView, ContributionGraphView, FlowEdge, MultiHeadView } from "../api/views";
import { attentionOption, attentionRowOption } from "./attention";
import type { Option } from "./common";
import { headEffectsOption, headRowOption, neuronsOption } from "./contributions";
import * as fx from "./fixtures";
import { edgeHeadsOption, flowGraphOption } from "./flowGraph";
import { headEntropyOption } from "./headEntropy";
import { headHealthOption } from "./headHealth";
import { IMAGE_CELLS } from "./heatmap";
import { layerSimilarityOption } from "./layerSimilarity";
import { logitLensOption } from "./logitLens";
import { multiHeadOption } from "./multiHead";
import { rankTrajectoryOption } from "./ranks";
import { residualStreamOption } from "./residualStream";
import type { Theme } from "./theme";

/** An attention matrix of n positions: more than IMAGE_CELLS cells (painted) and more than 80
 * keys (the head row's zoom), the code paths of a long run. */
function longAttention(n: number): AttentionView {
  const positions = Array.from({ length: n }, (_, i) => i);
  const labels = positions.map((i) => `t${i}`);
  const matrix = positions.map((r) => positions.map((c) => (c <= r ? 1 / (r + 1) : 0)));
  return {
    ...fx.attention,
    n_positions: n,
    end: n,
    row_indices: positions,
    col_indices: positions,
    row_labels: labels,
    col_labels: labels,
    matrix,
  };
}

/** A graph of every position's stream through `layers` layers, each attending to the one before. */
function denseGraph(layers: number, positions: number): ContributionGraphView {
  const ps = Array.from({ length: positions }, (_, p) => p);
  const ls = Array.from({ length: layers + 1 }, (_, l) => l);
  const nodes = ls.flatMap((layer) =>
    ps.map((position) => ({ layer, position, importance: 0.5, mlp_share: 0.1, unattributed: 0 })),
  );
  const edges: FlowEdge[] = ls
    .slice(1)
    .flatMap((l) =>
      ps.flatMap((p) => [
        { layer: l - 1, source: p, target: p, kind: "residual", weight: 0.6, heads: null },
        ...(p ? [{ layer: l - 1, source: p - 1, target: p, kind: "attention", weight: 0.3, heads: [0.5, 0.5] }] : []),
      ]),
    );
  const labels = Object.fromEntries(ps.map((p) => [p, `t${p}`]));
  return { ...fx.contributionGraph, layers, position: positions, source_position: positions - 1, labels, nodes, edges };
}

/** One chart option of each kind, in the order the tabs come. */
export function warmUpOptions(theme: Theme): Option[] {
  const long = longAttention(Math.ceil(Math.sqrt(IMAGE_CELLS)) + 10);
  const { matrix, row_indices, col_indices } = long;
  // the row view of one layer whose heads are the matrix's rows
  const row: AttentionView = { ...long, mode: "row", matrix: null, position: long.end - 1, rows: [matrix!] };
  const heads: MultiHeadView = { ...fx.multiHead, heads: 2, matrices: [matrix!, matrix!], row_indices, col_indices };
  const graph = denseGraph(12, 8);
  const edge = graph.edges.find((e) => e.kind === "attention")!;
  const head = { layer: 0, head: 0 };
  return [
    flowGraphOption(graph, theme, { title: "", attention: "", residual: "" }, edge),
    edgeHeadsOption(edge, theme, ""),
    headEffectsOption(fx.headContributions, theme, "", head),
    headRowOption(row, head, theme, ""),
    neuronsOption(fx.neuronContributions, theme, ""),
    logitLensOption(fx.logitLensFoil, theme, ""),
    rankTrajectoryOption(fx.logitLensFoil, theme, { title: "", rank: "", gap: "" }),
    residualStreamOption(fx.residual, theme, ""),
    layerSimilarityOption(fx.layerSimilarity, false, theme, ""),
    multiHeadOption(heads, theme, ""),
    headEntropyOption(fx.headEntropy, theme, ""),
    headHealthOption(fx.headHealth, theme, ""),
    attentionOption(long, theme, ""),
    attentionRowOption(row, theme, ""),
  ];
}
