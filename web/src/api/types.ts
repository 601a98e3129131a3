/**
 * The data shapes the app reads, named as in the server's pydantic models (trace.py,
 * generation/events.py). Hand-written until the generated OpenAPI types land; then each
 * alias points at `components["schemas"][...]` in schema.d.ts.
 */

export type Role = "system" | "user" | "assistant" | "tool";
export type Mode = "chat" | "completion";
export type FinishReason = "eos" | "stop" | "length" | "cancelled" | "error";

export interface Candidate {
  id: number;
  label: string;
  logit: number;
  raw_prob: number;
  sampled_prob?: number | null;
}

export interface TokenStats {
  raw_prob: number;
  sampled_prob?: number | null;
  rank: number;
  raw_entropy: number;
  sampled_entropy?: number | null;
  logit_gap: number;
  gap_to_top1: number;
  top?: Candidate[];
}

export interface Token {
  position: number;
  id: number;
  text: string;
  label: string;
  kind: "prompt" | "generated";
  role?: Role | null;
  stats?: TokenStats | null;
}

export interface SamplingParams {
  temperature?: number;
  top_k?: number | null;
  top_p?: number;
  max_new_tokens?: number;
  seed?: number | null;
  top_n?: number;
  stop?: string[];
}

export interface ChatMessage {
  role: Role;
  content: string;
}

export interface GenerationRequest {
  mode?: Mode;
  prompt?: string;
  messages?: ChatMessage[];
  system?: string | null;
  params?: SamplingParams;
  forced_tokens?: number[];
}

export interface ModelInfo {
  name: string;
  source: string;
  path: string;
  architecture: string;
  model_type: string;
  layers: number;
  heads: number;
  kv_heads: number;
  head_dim: number;
  hidden_size: number;
  intermediate_size?: number | null;
  vocab_size: number;
  context_length: number;
  dtype: string;
  device: string;
  parameters: number;
  has_chat_template: boolean;
}

export interface Timings {
  prefill_s?: number;
  first_token_s?: number;
  decode_s?: number;
  total_s?: number;
  tokens_per_s?: number;
}

export interface Trace {
  version?: number;
  id: string;
  created: number;
  title?: string;
  request: GenerationRequest;
  params: SamplingParams;
  model: ModelInfo;
  tokens: Token[];
  prompt_len: number;
  finish_reason?: FinishReason;
  error?: string | null;
  timings?: Timings;
  parent_id?: string | null;
  fork_position?: number | null;
}

export interface StartEvent {
  type?: "start";
  run_id: string;
  prompt_tokens: Token[];
  params: SamplingParams;
  model: ModelInfo;
}

export interface TokenEvent {
  type?: "token";
  token: Token;
}

export interface DoneEvent {
  type?: "done";
  run_id: string;
  finish_reason: FinishReason;
  timings: Timings;
  text: string;
}
