/**
 * Runs on a remote engine (`llmvis serve --backend openai`): the engine returns only its top-N
 * candidates, so a token's entropy is known within bounds (`raw_entropy` ≤ H ≤ `entropy_upper`),
 * `missing_mass` is the probability outside them, and `rank == top.length` means "not among
 * them". These helpers format such statistics; local statistics read as they always did.
 */
import type { ModelInfo, TokenStats } from "./api/types";
import { fmt, pct } from "./charts/common";

/** Statistics from a remote engine: only the top-N is known. */
export function isBounded(s: TokenStats): boolean {
  return s.missing_mass !== null && s.missing_mass !== undefined;
}

/** "1.234 nats", or "≥ 1.234 nats (≤ 2.5)" when only bounds are known. */
export function entropyText(s: TokenStats): string {
  const upper = s.entropy_upper;
  if (upper === null || upper === undefined) return `${fmt(s.raw_entropy)} nats`;
  return `≥ ${fmt(s.raw_entropy)} nats (≤ ${fmt(upper)})`;
}

/** The rank (0 = top choice), or "≥ N" for a token outside a remote engine's top-N. */
export function rankText(s: TokenStats): string {
  const n = s.top?.length ?? 0;
  return isBounded(s) && s.rank >= n ? `≥ ${n}` : String(s.rank);
}

/** N and the probability outside the top-N, for remote statistics only. */
export function missingMass(s: TokenStats): { n: number; text: string } | null {
  if (!isBounded(s)) return null;
  return { n: s.top?.length ?? 0, text: pct(s.missing_mass) };
}

export function isRemote(m: ModelInfo | null | undefined): boolean {
  return m?.source === "remote";
}

/** A model name to show: a filesystem path (llama.cpp names its model by its file) becomes its
 * basename; hub ids ("org/name") and plain names stay as they are. */
export function shortName(name: string): string {
  if (!/^([/~.]|[A-Za-z]:[\\/])/.test(name) && !name.includes("\\")) return name;
  const parts = name.split(/[\\/]+/).filter(Boolean);
  return parts[parts.length - 1] ?? name;
}

/** What to type in the load box to get `m`'s weights here: for a remote model the local spec the
 * server took its tokenizer from (`hint`, from GET /api/model), else the engine's model name;
 * for a local model the spec that loaded it. */
export function loadSpec(m: ModelInfo, hint: string | null = null): string {
  if (m.source === "remote") return hint || m.name;
  return m.source === "bundled" ? "smollm2" : m.path || m.name;
}
