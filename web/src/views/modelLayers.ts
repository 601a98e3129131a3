/** Which layers of the computing model each kind of view can show (from its load-time report). */
import type { ModelInfo } from "../api/types";
import { isRemote } from "../remote";
import { app } from "../state";

/** The model the views are computed with: a remote engine's local copy, else the loaded model. */
export function computingModel(): ModelInfo | null {
  return isRemote(app.model) ? app.localModel : app.model;
}

/** Layers with softmax attention: all of them unless the report names fewer (a hybrid model's). */
export function attentionLayers(): number[] {
  const m = app.run?.model ?? computingModel();
  const known = computingModel()?.internals?.attention_layers;
  if (known?.length) return known;
  return Array.from({ length: m?.layers ?? 1 }, (_, i) => i);
}
