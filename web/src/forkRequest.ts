/** The body of POST /api/runs/{id}/fork: one forced token as `token_id`, several as `token_ids`. */
import type { ForkRequest, SamplingParams } from "./api/types";

export function forkRequest(position: number, tokenIds: number[], params: SamplingParams | null): ForkRequest {
  if (tokenIds.length === 0) throw new Error("a fork forces at least one token");
  return tokenIds.length === 1
    ? { position, token_id: tokenIds[0], params }
    : { position, token_ids: [...tokenIds], params };
}
