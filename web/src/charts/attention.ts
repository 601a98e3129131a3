/**
 * Attention tab: one layer's attention matrix (a head, or mean/max over heads) for a window
 * of positions, max-pooled by the server when the window is larger than the chart; zooming
 * asks for the zoomed window again at full resolution (see views/tabs/attention.ts).
 */
import type { AttentionView } from "../api/views";
import { esc, fmt, posLabel } from "./common";
import { heatmapOption } from "./heatmap";
import type { Theme } from "./theme";
import type { Option, ReportRenderer } from "./common";

/** "12–15" for a pooled bin, "12" for a single position. */
export function binRange(starts: number[], i: number, end: number): [number, number] {
  const a = starts[i];
  const b = (i + 1 < starts.length ? starts[i + 1] : end) - 1;
  return [a, b];
}

export function attentionOption(view: AttentionView, theme: Theme, title: string): Option {
  const matrix = view.matrix ?? [];
  const xl = view.col_indices.map((p, i) => posLabel(p, view.col_labels[i] ?? ""));
  const yl = view.row_indices.map((p, i) => posLabel(p, view.row_labels[i] ?? ""));
  const describe = (starts: number[], labels: string[], i: number) => {
    const [a, b] = binRange(starts, i, view.end);
    return a === b ? `${a} ${esc(labels[i] ?? "")}` : `${a}–${b} (max of ${b - a + 1})`;
  };
  return heatmapOption(
    {
      title,
      file: `llmvis-attention-L${view.layer}-${view.head}`,
      matrix,
      xLabels: xl,
      yLabels: yl,
      xName: "",
      min: 0,
      skipZeros: true,
      zoom: true,
      clipQuantile: 0.99,
      cellText: (r, c, v) =>
        [
          `query ${describe(view.row_indices, view.row_labels, r)}`,
          `key ${describe(view.col_indices, view.col_labels, c)}`,
          `attention <b>${fmt(v)}</b>`,
        ].join("<br>"),
    },
    theme,
  );
}

/** Row mode: one query position's attention over earlier keys, every layer × head. */
export function attentionRowOption(view: AttentionView, theme: Theme, title: string): Option {
  const rows = view.rows ?? [];
  const matrix: number[][] = [];
  const yl: string[] = [];
  // a hybrid model's layers without attention (null) have no rows
  rows.forEach((layer, l) =>
    layer?.forEach((head, h) => {
      matrix.push(head);
      yl.push(`L${l} H${h}`);
    }),
  );
  const xl = view.col_indices.map((p, i) => posLabel(p, view.col_labels[i] ?? ""));
  const missing = Object.keys(view.missing_layers ?? {});
  return heatmapOption(
    {
      title: missing.length ? `${title} · no attention in ${missing.map((l) => `L${l}`).join(", ")}` : title,
      file: `llmvis-attention-row-${view.position}`,
      matrix,
      xLabels: xl,
      yLabels: yl,
      min: 0,
      clipQuantile: 0.99,
      cellText: (r, c, v) => `${yl[r]} · key ${esc(xl[c])}<br>attention <b>${fmt(v)}</b>`,
    },
    theme,
  );
}

export const attentionReport: ReportRenderer<"attention"> = {
  view: "attention",
  render: (view, _tokens, theme, title) =>
    view.mode === "row" ? attentionRowOption(view, theme, title) : attentionOption(view, theme, title),
};
