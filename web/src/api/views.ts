/** Result models of the views (src/llmvis/analyses/*.py), from the generated OpenAPI schema. */
import type { components, paths } from "./schema";

type S = components["schemas"];

export type TokensView = S["TokensView"];
export type UncertaintyView = S["UncertaintyView"];
export type Hotspot = S["Hotspot"];
export type AttentionView = S["AttentionView"];
export type MultiHeadView = S["MultiHeadView"];
export type HeadEntropyView = S["HeadEntropyView"];
export type HeadHealthView = S["HeadHealthView"];
export type HeadScore = S["HeadScore"];
export type ActivationsView = S["ActivationsView"];
export type Distributions = S["Distributions"];
export type EmbeddingView = S["EmbeddingView"];
export type AttributionView = S["AttributionView"];
export type LayerSimilarityView = S["LayerSimilarityView"];
export type ResidualStreamView = S["ResidualStreamView"];
export type LogitLensView = S["LogitLensView"];
export type WatchedToken = S["WatchedToken"];
export type HeadContributionsView = S["HeadContributionsView"];
export type NeuronContributionsView = S["NeuronContributionsView"];
export type NeuronLayer = S["NeuronLayer"];
export type ContributionTarget = S["Target"];
export type ContributionGraphView = S["ContributionGraphView"];
export type FlowNode = S["FlowNode"];
export type FlowEdge = S["FlowEdge"];
export type ExpertsView = S["ExpertsView"];
export type TokenRouting = S["TokenRouting"];
export type LayerLoad = S["LayerLoad"];
export type ExpertPart = S["ExpertPart"];

/** A view's query parameters ({} when it takes none) and its 200 response's model. */
type ViewOf<Op> = Op extends {
  parameters: { query?: infer Q };
  responses: { 200: { content: { "application/json": infer R } } };
}
  ? { params: [NonNullable<Q>] extends [never] ? Record<string, never> : NonNullable<Q>; result: R }
  : never;

/**
 * Every view the server serves, by name: `GET /api/runs/{run_id}/views/<name>` in the schema.
 * A view added on the server shows up here after `npm run gen-api`.
 */
export type Views = {
  [P in keyof paths as P extends `/api/runs/{run_id}/views/${infer N}` ? N : never]: ViewOf<paths[P]["get"]>;
};

export type ViewName = keyof Views;
export type ViewParams<N extends ViewName> = Views[N]["params"];
export type ViewResult<N extends ViewName> = Views[N]["result"];
