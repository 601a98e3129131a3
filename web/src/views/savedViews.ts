/**
 * Draw a view result saved with a run (the JSON bundle's `views`) with its chart's report
 * renderer. Used by the offline HTML report, which has no server to ask.
 */
import type { Intervention, Token } from "../api/types";
import type { ViewName, ViewResult } from "../api/views";
import { activationsReport } from "../charts/activations";
import { attentionReport } from "../charts/attention";
import { attributionReport } from "../charts/attribution";
import type { Option, ReportRenderer } from "../charts/common";
import { headContributionsReport, neuronContributionsReport } from "../charts/contributions";
import { contributionGraphReport } from "../charts/flowGraph";
import { embeddingReport } from "../charts/embedding";
import { expertsReport } from "../charts/experts";
import { headEntropyReport } from "../charts/headEntropy";
import { headHealthReport } from "../charts/headHealth";
import { layerSimilarityReport } from "../charts/layerSimilarity";
import { logitLensReport } from "../charts/logitLens";
import { multiHeadReport } from "../charts/multiHead";
import { residualStreamReport } from "../charts/residualStream";
import type { Theme } from "../charts/theme";
import { tokensReport } from "../charts/uncertainty";
import { describePlan, type ResultRenderer, sweepReport, whatIfReport } from "../charts/whatif";

/** Imported here, not registered by the chart modules, so the app bundle leaves them out. */
const renderers = new Map<string, ReportRenderer<ViewName>>(
  [
    tokensReport,
    attentionReport,
    multiHeadReport,
    headEntropyReport,
    headHealthReport,
    layerSimilarityReport,
    residualStreamReport,
    logitLensReport,
    activationsReport,
    embeddingReport,
    attributionReport,
    expertsReport,
    headContributionsReport,
    neuronContributionsReport,
    contributionGraphReport,
  ].map((r) => [r.view, r]),
);

/** Saved results that are not views (POST routes saved with the run): what-if and sweeps. */
const results = new Map<string, ResultRenderer<unknown>>([whatIfReport, sweepReport].map((r) => [r.view, r]));

export interface SavedView {
  view: string;
  params: Record<string, unknown>;
  result: Record<string, unknown>;
}

const params = (p: Record<string, unknown>) =>
  Object.entries(p)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");

/** The chart option for a saved view, or null for views without a chart here. */
export function savedViewOption(saved: SavedView, tokens: Token[], theme: Theme): Option | null {
  const result = results.get(saved.view);
  if (result) {
    // their params hold interventions (a steering vector: hundreds of numbers): said in words
    const { interventions, ...rest } = saved.params;
    const plan = interventions ? describePlan(interventions as Intervention[]) : "";
    const more = params(Object.fromEntries(Object.entries(rest).filter(([, v]) => !Array.isArray(v) || v.length < 8)));
    const title = `${saved.view} (${[plan, more].filter(Boolean).join(", ")})`;
    return result.render(saved.result, tokens, theme, title);
  }
  const renderer = renderers.get(saved.view);
  if (!renderer) return null;
  const title = `${saved.view}${Object.keys(saved.params).length ? ` (${params(saved.params)})` : ""}`;
  // The bundle stores each result with its view's name: it is that view's model.
  return renderer.render(saved.result as ViewResult<ViewName>, tokens, theme, title);
}
