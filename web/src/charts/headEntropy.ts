/** Heads tab: normalised attention entropy per layer × head (0 = one key, 1 = uniform). */
import type { HeadEntropyView } from "../api/views";
import { fmt, type Option, type ReportRenderer } from "./common";
import { heatmapOption } from "./heatmap";
import type { Theme } from "./theme";

export function headEntropyOption(view: HeadEntropyView, theme: Theme, title: string): Option {
  const xl = Array.from({ length: view.heads }, (_, h) => `H${h}`);
  // a hybrid model's layers without attention (null rows) stay empty, labelled as such
  const missing = view.missing_layers ?? {};
  const yl = Array.from({ length: view.layers }, (_, l) => (l in missing ? `L${l} (no attention)` : `L${l}`));
  const matrix = view.entropy.map((row) => row ?? xl.map(() => null));
  return heatmapOption(
    {
      title,
      file: "llmvis-head-entropy",
      matrix,
      xLabels: xl,
      yLabels: yl,
      min: 0,
      max: 1,
      cellText: (r, c, v) => `layer ${r}, head ${c}<br>entropy <b>${fmt(v)}</b> (0 = one key, 1 = uniform)`,
    },
    theme,
  );
}

export const headEntropyReport: ReportRenderer<"head_entropy"> = {
  view: "head_entropy",
  render: (view, _tokens, theme, title) => headEntropyOption(view, theme, title),
};
