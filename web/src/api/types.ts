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
