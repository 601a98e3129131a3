import type { PromptStatsEvent, Token } from "./api/types";

/**
 * The prompt's statistics arrive after the last generated token (the server defers the
 * vocabulary projection of every prompt position so that tokens stream sooner): fill them in.
 */
export function applyPromptStats(tokens: Token[], event: PromptStatsEvent): void {
  event.stats.forEach((stats, i) => {
    const token = tokens[i];
    if (token && stats) token.stats = stats;
  });
}
