/**
 * The body of POST /api/runs/{id}/fork: one forced token as `token_id`, several as `token_ids`;
 * with interventions, the continuation is generated under them and no token need be forced.
 */
import type { ForkRequest, Intervention, SamplingParams } from "./api/types";

export function forkRequest(
  position: number,
  tokenIds: number[],
  params: SamplingParams | null,
  interventions: Intervention[] = [],
): ForkRequest {
  if (tokenIds.length === 0 && interventions.length === 0)
    throw new Error("a fork forces at least one token (or generates under interventions)");
  const plan = interventions.length ? { interventions: interventions.map((i) => ({ ...i })) } : {};
  if (tokenIds.length === 0) return { position, params, ...plan };
  return tokenIds.length === 1
    ? { position, token_id: tokenIds[0], params, ...plan }
    : { position, token_ids: [...tokenIds], params, ...plan };
}
