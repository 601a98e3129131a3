/** Small view results shaped like the server's, for the chart-builder tests (and charts/warmUp.ts). */
import type { SweepResult, Token, WhatIfResult } from "../api/types";
import type {
  ActivationsView,
  AttentionView,
  AttributionView,
  ContributionGraphView,
  EmbeddingView,
  ExpertsView,
  HeadContributionsView,
  HeadEntropyView,
  HeadHealthView,
  LayerSimilarityView,
  LogitLensView,
  MultiHeadView,
  NeuronContributionsView,
  ResidualStreamView,
  TokensView,
} from "../api/views";

export const token: Token = {
  position: 5,
  id: 42,
  text: " Paris",
  label: "␣Paris",
  kind: "generated",
  special: false,
  stats: {
    raw_prob: 0.6,
    sampled_prob: 0.7,
    rank: 0,
    raw_entropy: 1.2,
    sampled_entropy: 1.0,
    logit_gap: 2.5,
    gap_to_top1: 0,
    top: [
      { id: 42, label: "␣Paris", logit: 10, raw_prob: 0.6, sampled_prob: 0.7 },
      { id: 7, label: "␣Lyon", logit: 7.5, raw_prob: 0.2, sampled_prob: 0.3 },
      { id: 9, label: "<0x0A>", logit: 5, raw_prob: 0.05, sampled_prob: 0 },
    ],
  },
};

export const attention: AttentionView = {
  mode: "matrix",
  n_positions: 4,
  layers: 2,
  heads: 2,
  layer: 1,
  head: "mean",
  start: 0,
  end: 4,
  pooled: false,
  row_indices: [0, 1, 2, 3],
  col_indices: [0, 1, 2, 3],
  row_labels: ["a", "b", "c", "d"],
  col_labels: ["a", "b", "c", "d"],
  matrix: [
    [1, 0, 0, 0],
    [0.5, 0.5, 0, 0],
    [0.2, 0.3, 0.5, 0],
    [0.1, 0.2, 0.3, 0.4],
  ],
  position: null,
  rows: null,
};

export const attentionRow: AttentionView = {
  ...attention,
  mode: "row",
  layer: null,
  head: null,
  matrix: null,
  position: 3,
  rows: [
    [
      [0.1, 0.2, 0.3, 0.4],
      [0.25, 0.25, 0.25, 0.25],
    ],
    [
      [0.7, 0.1, 0.1, 0.1],
      [0, 0, 0, 1],
    ],
  ],
};

export const multiHead: MultiHeadView = {
  layer: 0,
  heads: 3,
  position: 2,
  n_positions: 3,
  pooled: false,
  row_indices: [0, 1, 2],
  col_indices: [0, 1, 2],
  matrices: [0, 1, 2].map(() => [
    [1, 0, 0],
    [0.5, 0.5, 0],
    [0.3, 0.3, 0.4],
  ]),
  row_keys: [0, 1, 2],
  row_key_labels: ["a", "b", "c"],
  rows: [
    [0.3, 0.3, 0.4],
    [0.2, 0.2, 0.6],
    [1, 0, 0],
  ],
};

export const headEntropy: HeadEntropyView = {
  mode: "average",
  position: null,
  layers: 2,
  heads: 3,
  positions_used: 10,
  sequence_length: 11,
  entropy: [
    [0.1, 0.5, 0.9],
    [0.2, 0.3, 0.4],
  ],
};

export const headHealth: HeadHealthView = {
  source: "run",
  layers: 1,
  heads: 2,
  sequence_length: 10,
  positions_used: 9,
  induction_positions: 0,
  thresholds: { sink: 0.5 },
  scores: [
    { layer: 0, head: 0, sink: 0.9, previous: 0.05, induction: null, entropy: 0.1, label: "sink" },
    { layer: 0, head: 1, sink: 0.1, previous: 0.8, induction: 0.01, entropy: 0.2, label: "previous-token" },
  ],
};

const dist = (kind: "mlp" | "attn") => ({
  kind,
  what: kind,
  edges: [-1, 0, 1, 2],
  layers: [0, 1].map((layer) => ({
    layer,
    n: 10,
    counts: [2, 5, 3],
    underflow: 0,
    overflow: 0,
    mean: 0.1,
    std: 0.5,
    min: -1,
    max: 2,
    abs_max: 2,
    kurtosis: 0.3,
  })),
});
export const activations: ActivationsView = { position: 3, tokens: 1, mlp: dist("mlp"), attn: dist("attn") };

export const embedding2: EmbeddingView = {
  layer: 1,
  source: "residual",
  method: "pca",
  dims: 2,
  solver: "svd",
  prompt_len: 2,
  positions: [0, 1, 2, 3],
  labels: ["a", "b", "c", "d"],
  coords: [
    [0, 0],
    [1, 1],
    [2, 0],
    [3, 1],
  ],
  explained_variance_ratio: [0.6, 0.3],
  scree: [0.6, 0.3, 0.1],
};
export const embedding3: EmbeddingView = {
  ...embedding2,
  dims: 3,
  coords: [
    [0, 0, 0],
    [1, 1, 1],
    [2, 0, 1],
    [3, 1, 0],
  ],
  explained_variance_ratio: [0.5, 0.3, 0.2],
};

export const tokensView: TokensView = {
  position: 2,
  prompt_len: 2,
  chosen: {
    id: 1,
    label: "c",
    kind: "generated",
    raw_prob: 0.5,
    sampled_prob: 0.6,
    rank: 0,
    logit: 3,
    raw_entropy: 1,
    sampled_entropy: 0.9,
    logit_gap: 1,
    in_top: true,
  },
  candidates: [],
  confidence: [null, 0.2, 0.5, 0.9],
  sampled_confidence: [null, null, 0.6, 0.95],
  entropy: [null, 3, 1, 0.2],
  entropy_upper: [null, null, null, null],
  sort: "entropy",
  order: [1, 2, 3, 0],
};

export const attribution: AttributionView = {
  method: "grad_x_input",
  objective: "logit",
  position: 3,
  target_id: 5,
  target_label: "d",
  positions: [0, 1, 2],
  labels: ["a", "b", "c"],
  scores: [0.5, -0.2, 0.3],
  share: [0.5, 0.2, 0.3],
  output: 3,
  baseline_output: null,
  delta: null,
  steps: null,
  kept_first: false,
};

export const layerSimilarity: LayerSimilarityView = {
  position: 3,
  layers: 2,
  consecutive: [0.9, 0.8],
  consecutive_mean: [0.85, 0.8],
  vs_last: [0.2, 0.8, 1],
  vs_last_mean: [0.3, 0.7, 1],
  matrix: [
    [1, 0.9, 0.2],
    [0.9, 1, 0.8],
    [0.2, 0.8, 1],
  ],
  matrix_mean: [
    [1, 0.8, 0.3],
    [0.8, 1, 0.7],
    [0.3, 0.7, 1],
  ],
};

export const residual: ResidualStreamView = {
  position: 3,
  source_position: 2,
  token_id: 5,
  token_label: "d",
  objective: "logit('d')",
  embedding_norm: 1,
  embedding_logit: 0.1,
  final_norm: 3,
  logit: 2,
  layers: [
    { layer: 0, residual_norm: 1, attn_norm: 0.5, mlp_norm: 0.7, attn_logit: 0.3, mlp_logit: 0.4 },
    { layer: 1, residual_norm: 2, attn_norm: 0.6, mlp_norm: 1.1, attn_logit: -0.1, mlp_logit: 1.3 },
  ],
  linearisation: "final norm scale frozen",
};

export const logitLens: LogitLensView = {
  position: 3,
  source_position: 2,
  token_id: 5,
  token_label: "d",
  layers: [0, 1, 2].map((layer) => ({
    layer,
    entropy: 2 - layer * 0.5,
    target_prob: 0.1 + layer * 0.3,
    target_rank: 2 - layer,
    top: [
      { id: 1, label: "x", prob: 0.4 },
      { id: 5, label: "d", prob: 0.1 + layer * 0.3 },
    ],
  })),
};

export const experts: ExpertsView = {
  n_experts: 4,
  top_k: 2,
  router: "softmax over the experts",
  moe_layers: [1, 3],
  dense_layers: [0, 2],
  layer: 1,
  bin_size: 1,
  bin_starts: [0, 1, 2, 3, 4],
  probs: [
    [0.5, 0.3, 0.1, 0.1],
    [0.1, 0.6, 0.2, 0.1],
    [0.25, 0.25, 0.4, 0.1],
    [0.05, 0.15, 0.3, 0.5],
    [0.7, 0.1, 0.1, 0.1],
  ],
  routing: [
    { experts: [0, 1], weights: [0.625, 0.375] },
    { experts: [1, 2], weights: [0.75, 0.25] },
    { experts: [2, 0], weights: [0.6154, 0.3846] },
    { experts: [3, 2], weights: [0.625, 0.375] },
    { experts: [0, 1], weights: [0.875, 0.125] },
  ],
  loads: [
    { layer: 1, tokens: [3, 3, 3, 1], weight: [1.8846, 1.25, 1.2404, 0.625], balance: 0.9406 },
    { layer: 3, tokens: [5, 2, 2, 1], weight: [3, 0.8, 0.9, 0.3], balance: 0.8805 },
  ],
  position: 3,
  position_probs: [
    [0.05, 0.15, 0.3, 0.5],
    [0.6, 0.1, 0.2, 0.1],
  ],
  position_routing: [
    { experts: [3, 2], weights: [0.625, 0.375] },
    { experts: [0, 2], weights: [0.75, 0.25] },
  ],
  parts: [
    { expert: 3, weight: 0.625, norm: 1.5 },
    { expert: 2, weight: 0.375, norm: 0.8 },
    { expert: null, weight: null, norm: 2.1 },
  ],
};

/** The logit lens with a foil (id 7) and one watched token (id 9): ranks for hidden states 0..2. */
export const logitLensFoil: LogitLensView = {
  ...logitLens,
  foil_id: 7,
  foil_label: "y",
  layers: logitLens.layers.map((l, i) => ({ ...l, foil_prob: 0.3 - i * 0.1, foil_rank: i * 4, logit_gap: -1 + i })),
  watched: [
    { id: 5, label: "d", ranks: [2, 1, 0], probs: [0.1, 0.4, 0.7] },
    { id: 7, label: "y", ranks: [0, 4, 8], probs: [0.3, 0.2, 0.1] },
    { id: 9, label: "z", ranks: [150, 30, 2], probs: [0.001, 0.01, 0.05] },
  ],
};

const target = {
  position: 3,
  source_position: 2,
  token_id: 5,
  token_label: "d",
  foil_id: 7,
  foil_label: "y",
  objective: "logit('d') − logit('y')",
};

/** 3 layers × 2 heads; layer 1 is a hybrid's recurrent layer (no heads). */
export const headContributions: HeadContributionsView = {
  target,
  layers: 3,
  heads: 2,
  effects: [[0.5, -0.25], null, [-1.5, 0.75]],
  norms: [[1, 2], null, [3, 4]],
  rest: [0.01, null, 0],
  block: [0.26, null, -0.75],
  missing_layers: { 1: "Mamba mixer" },
  linearisation: "final RMSNorm linearised at the final residual",
};

export const neuronContributions: NeuronContributionsView = {
  target,
  linearisation: "final RMSNorm linearised at the final residual",
  layers: [
    {
      layer: 0,
      kind: "gated",
      mlp_effect: 0.4,
      rest_effect: 0,
      neurons_effect: 0.4,
      neurons: 128,
      top: [
        { neuron: 21, activation: -0.5, effect: -0.9, norm: 0.1 },
        { neuron: 7, activation: 0.2, effect: 0.3, norm: 0.05 },
      ],
      experts: [],
    },
    {
      layer: 1,
      kind: "experts",
      mlp_effect: 1.2,
      rest_effect: 0.1,
      neurons_effect: null,
      neurons: null,
      top: [],
      experts: [
        { expert: 3, weight: 0.6, effect: 1.1 },
        { expert: null, weight: null, effect: -0.05 },
      ],
    },
  ],
};

/** 2 layers: hidden states 0..2; the top node is (2, position 3). */
export const contributionGraph: ContributionGraphView = {
  position: 4,
  source_position: 3,
  layers: 2,
  heads: 2,
  threshold: 0.04,
  top_k: 6,
  labels: { 0: "a", 1: "b", 3: "d" },
  nodes: [
    { layer: 0, position: 0, importance: 0.2, mlp_share: null, unattributed: null },
    { layer: 0, position: 3, importance: 0.6, mlp_share: null, unattributed: null },
    { layer: 1, position: 0, importance: 0.25, mlp_share: 0.1, unattributed: 0 },
    { layer: 1, position: 1, importance: 0.05, mlp_share: 0.2, unattributed: 0 },
    { layer: 1, position: 3, importance: 0.7, mlp_share: 0.05, unattributed: 0.01 },
    { layer: 2, position: 3, importance: 1, mlp_share: 0.1, unattributed: 0 },
  ],
  edges: [
    { layer: 1, source: 3, target: 3, kind: "residual", weight: 0.7, heads: null },
    { layer: 1, source: 0, target: 3, kind: "attention", weight: 0.25, heads: [0.8, 0.2] },
    { layer: 1, source: 1, target: 3, kind: "attention", weight: 0.05, heads: [0.1, 0.9] },
    { layer: 0, source: 3, target: 3, kind: "residual", weight: 0.6, heads: null },
    { layer: 0, source: 0, target: 3, kind: "attention", weight: 0.1, heads: [0.5, 0.5] },
    { layer: 0, source: 3, target: 3, kind: "attention", weight: 0.2, heads: [0.3, 0.7] },
    { layer: 0, source: 0, target: 0, kind: "residual", weight: 1, heads: null },
  ],
  dropped_edges: 3,
  missing_layers: {},
};

/** A what-if of a 5-token run: a head zeroed, explained at position 3 against a foil. */
export const whatIf: WhatIfResult = {
  position: 3,
  token_id: 7,
  token_label: " Paris",
  foil_id: 9,
  foil_label: " Lyon",
  before: {
    prob: 0.6,
    logit: 5,
    rank: 0,
    gap: 2,
    top: [
      { id: 7, label: " Paris", prob: 0.6 },
      { id: 9, label: " Lyon", prob: 0.2 },
      { id: 4, label: " the", prob: 0.1 },
    ],
  },
  after: {
    prob: 0.3,
    logit: 4,
    rank: 1,
    gap: -0.5,
    top: [
      { id: 9, label: " Lyon", prob: 0.4 },
      { id: 7, label: " Paris", prob: 0.3 },
      { id: 5, label: " a", prob: 0.05 },
    ],
  },
  positions: [1, 2, 3, 4],
  prob_before: [0.1, 0.5, 0.6, 0.9],
  prob_after: [0.1, 0.45, 0.3, 0.95],
  kl: [0, 0.01, 0.4, 0.02],
  interventions: [{ site: "head", layer: 1, head: 2, op: "zero" }],
};

/** A sweep of a 4-token run read at 3: residual (exact and fast) and heads (exact). */
export const sweep: SweepResult = {
  position: 3,
  target_id: 7,
  target_label: " Paris",
  foil_id: 9,
  foil_label: " Rome",
  clean_diff: 3,
  corrupted_diff: -1,
  metric: "normalised logit difference",
  maps: [
    {
      site: "residual",
      rows: [0, 1],
      cols: [0, 1, 2],
      exact: [
        [0, 1, 0.1],
        [0, 0.4, 0.6],
      ],
      fast: [
        [0, 0.8, 0.2],
        [0.1, 0.5, 0.5],
      ],
      max_error: 0.2,
      correlation: 0.97,
    },
    {
      site: "heads",
      rows: [0, 1],
      cols: [0, 1],
      exact: [
        [0.2, -1.5],
        [0.3, 0],
      ],
    },
  ],
  forwards: 10,
};
