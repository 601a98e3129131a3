/** Layers tab: cosine similarity between hidden states of every pair of layers (0 = embeddings). */
import type { LayerSimilarityView } from "../api/views";
import { fmt, type Option, type ReportRenderer } from "./common";
import { heatmapOption } from "./heatmap";
import type { Theme } from "./theme";

export function layerSimilarityOption(view: LayerSimilarityView, mean: boolean, theme: Theme, title: string): Option {
  const m = mean ? view.matrix_mean : view.matrix;
  const labels = m.map((_, i) => (i === 0 ? "emb" : `L${i}`));
  return heatmapOption(
    {
      title,
      file: `llmvis-layer-similarity-${mean ? "mean" : view.position}`,
      matrix: m,
      xLabels: labels,
      yLabels: labels,
      min: Math.min(0, ...m.flat()),
      max: 1,
      cellText: (r, c, v) => `cos(h${r}, h${c}) = <b>${fmt(v)}</b>`,
    },
    theme,
  );
}

export const layerSimilarityReport: ReportRenderer<"layer_similarity"> = {
  view: "layer_similarity",
  render: (view, _tokens, theme, title) => layerSimilarityOption(view, false, theme, title),
};
