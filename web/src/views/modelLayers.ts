/** Which layers of the computing model each kind of view can show (from its load-time report). */
import type { ModelInfo } from "../api/types";
import { isRemote } from "../remote";
import { app } from "../state";

/** The model the views are computed with: a remote engine's local copy, else the loaded model. */
export function computingModel(): ModelInfo | null {
  return isRemote(app.model) ? app.localModel : app.model;
}

/** Layers with softmax attention: all of them unless a report (the run's model's, else the
 * computing model's) names fewer, as a hybrid model's does. */
export function attentionLayers(): number[] {
  for (const m of [app.run?.model, computingModel()]) {
    const known = m?.internals?.attention_layers;
    if (known?.length) return known;
  }
  const layers = (app.run?.model ?? computingModel())?.layers ?? 1;
  return Array.from({ length: layers }, (_, i) => i);
}
