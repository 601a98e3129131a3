/** Result models of the views (analyses/*.py), from the generated OpenAPI schema. */
import type { components } from "./schema";

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
