/**
 * The data shapes the app reads, generated from the server's OpenAPI schema
 * (`npm run gen-api` → schema.d.ts), so a renamed field on the server is a type error here.
 */
import type { components } from "./schema";

type S = components["schemas"];

export type TokenStats = S["TokenStats"];
/** A top-N candidate of a token's statistics (read through TokenStats: the schema may qualify
 * the name "Candidate" when another model of the server has the same one). */
export type Candidate = NonNullable<TokenStats["top"]>[number];
export type Token = S["Token"];
export type SamplingParams = S["SamplingParams"];
export type ChatMessage = S["ChatMessage"];
export type GenerationRequest = S["GenerationRequest"];
export type ModelInfo = S["ModelInfo"];
export type Trace = S["Trace"];
export type StartEvent = S["StartEvent"];
export type TokenEvent = S["TokenEvent"];
export type PromptStatsEvent = S["PromptStatsEvent"];
export type DoneEvent = S["DoneEvent"];
export type Health = S["Health"];
export type ModelState = S["ModelState"];
export type RunRow = S["RunRow"];
export type RunList = S["RunList"];
export type Deleted = S["Deleted"];
export type ForkRequest = S["ForkRequest"];
export type Tokenized = S["Tokenized"];
export type TokenPiece = S["TokenPiece"];
export type RunProgress = S["RunProgress"];
export type ViewActivity = S["ViewActivity"];

// What-if (src/llmvis/interventions.py, sweep.py, server/routes_whatif.py)
export type Intervention = S["Intervention"];
export type InterventionSite = Intervention["site"];
export type InterventionOp = Intervention["op"];
export type WhatIfRequest = S["WhatIfRequest"];
export type WhatIfResult = S["WhatIfResult"];
export type Outcome = S["Outcome"];
export type WhatIfCandidate = S["WhatIfCandidate"];
export type SteeringRequest = S["SteeringRequest"];
export type SteeringVector = S["SteeringVector"];
export type SweepRequest = S["SweepRequest"];
export type SweepSite = NonNullable<SweepRequest["sites"]>[number];

/**
 * The sweep's SSE events (`progress`, `result`, `error`). The route streams them as plain
 * ServerSentEvents, so the OpenAPI schema does not carry their models yet: the generated ones
 * are used as soon as it does, these stand-ins (sweep.py's SweepMap / SweepResult) until then.
 */
type Generated<K extends string, Fallback> = K extends keyof S ? S[K] : Fallback;
export type SweepMap = Generated<
  "SweepMap",
  {
    site: SweepSite;
    rows: number[];
    cols: number[];
    exact?: number[][] | null;
    fast?: number[][] | null;
    max_error?: number | null;
    correlation?: number | null;
  }
>;
export type SweepResult = Generated<
  "SweepResult",
  {
    position: number;
    target_id: number;
    target_label: string;
    foil_id: number;
    foil_label: string;
    clean_diff: number;
    corrupted_diff: number;
    metric: string;
    maps: SweepMap[];
    forwards: number;
  }
>;
export type SweepProgress = Generated<"SweepProgress", { done: number; total: number }>;
