/**
 * The status line of a view the server is still computing: what it waits for, or how far it is
 * (GET /api/runs/{id}/progress), so that a wait of seconds (a long run's first rollout) says what
 * it is waiting for rather than "Computing…" alone.
 */
import type { ViewActivity } from "../api/types";
import { type Key, t } from "../i18n";

const STEPS: Record<string, Key> = {
  waiting: "view.progress.waiting",
  computing: "view.progress.computing",
  rollout: "view.progress.rollout",
  graph: "view.progress.graph",
  rows: "view.progress.rows",
  steps: "view.progress.steps",
};

/** Wait this long before asking the server, then ask this often, while a view is pending. */
export const FOLLOW_AFTER_MS = 1000;
export const FOLLOW_EVERY_MS = 500;

/** The status of the first of `views` (those a tab waits for, in the order it asked) that the
 * server is computing: its longest-running request; null when the server lists none of them. */
export function progressText(views: readonly string[], activities: readonly ViewActivity[]): string | null {
  for (const view of views) {
    const mine = activities.filter((a) => a.view === view).sort((a, b) => b.seconds - a.seconds)[0];
    if (!mine) continue;
    const key = STEPS[mine.step] ?? "view.progress.computing"; // (a step this page does not know yet)
    return t(key, { done: mine.done, total: mine.total, s: Math.round(mine.seconds) });
  }
  return null;
}
