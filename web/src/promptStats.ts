import type { PromptStatsEvent, Token } from "./api/types";

/**
 * The prompt's statistics arrive in their own event, between two generated tokens or after the
 * last (the server projects the prompt positions onto the vocabulary beside the decode steps, so
 * that tokens stream as fast as plain generation): fill them in.
 */
export function applyPromptStats(tokens: Token[], event: PromptStatsEvent): void {
  event.stats.forEach((stats, i) => {
    const token = tokens[i];
    if (token && stats) token.stats = stats;
  });
}
