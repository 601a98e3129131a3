/**
 * Draw a view result saved with a run (the JSON bundle's `views`): view name → chart builder.
 * Used by the offline HTML report, which has no server to ask.
 */
import type { Token } from "../api/types";
import type {
  ActivationsView, AttentionView, AttributionView, EmbeddingView, HeadEntropyView, HeadHealthView,
  LayerSimilarityView, LogitLensView, MultiHeadView, ResidualStreamView, TokensView,
} from "../api/views";
import { activationsOption } from "../charts/activations";
import { attentionOption, attentionRowOption } from "../charts/attention";
import { attributionOption } from "../charts/attribution";
import type { Option } from "../charts/common";
import { embeddingOption } from "../charts/embedding";
import { headEntropyOption } from "../charts/headEntropy";
import { headHealthOption } from "../charts/headHealth";
import { layerSimilarityOption } from "../charts/layerSimilarity";
import { logitLensOption } from "../charts/logitLens";
import { multiHeadOption } from "../charts/multiHead";
import { residualStreamOption } from "../charts/residualStream";
import type { Theme } from "../charts/theme";
import { entropyCurveOption } from "../charts/uncertainty";

export interface SavedView {
  view: string;
  params: Record<string, unknown>;
  result: Record<string, unknown>;
}

const params = (p: Record<string, unknown>) =>
  Object.entries(p).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${k}=${v}`).join(", ");

/** The chart option for a saved view, or null for views without a chart here. */
export function savedViewOption(saved: SavedView, tokens: Token[], theme: Theme): Option | null {
  const r = saved.result as unknown;
  const title = `${saved.view}${Object.keys(saved.params).length ? ` (${params(saved.params)})` : ""}`;
  switch (saved.view) {
    case "tokens":
      return entropyCurveOption(r as TokensView, tokens.map((t) => t.label), (r as TokensView).sort === "entropy", theme, { title, entropy: "entropy", confidence: "confidence", upper: "entropy ≤" }, null);
    case "attention":
      return (r as AttentionView).mode === "row" ? attentionRowOption(r as AttentionView, theme, title) : attentionOption(r as AttentionView, theme, title);
    case "multi_head":
      return multiHeadOption(r as MultiHeadView, theme, title);
    case "head_entropy":
      return headEntropyOption(r as HeadEntropyView, theme, title);
    case "head_health":
      return headHealthOption(r as HeadHealthView, theme, title);
    case "layer_similarity":
      return layerSimilarityOption(r as LayerSimilarityView, false, theme, title);
    case "residual_stream":
      return residualStreamOption(r as ResidualStreamView, theme, title);
    case "logit_lens":
      return logitLensOption(r as LogitLensView, theme, title);
    case "activations":
      return activationsOption((r as ActivationsView).mlp, theme, title);
    case "embedding": {
      // No WebGL library in the report: draw the first two axes of a 3D projection.
      const e = r as EmbeddingView;
      return embeddingOption({ ...e, dims: 2, coords: e.coords.map((c) => c.slice(0, 2)) }, theme, title, null);
    }
    case "attribution":
      return attributionOption(r as AttributionView, theme, title, true);
    default:
      return null;
  }
}
