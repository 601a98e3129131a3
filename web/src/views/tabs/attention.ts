/**
 * Attention tab: a layer × (head | mean | max) matrix over a window of positions. Zooming
 * (wheel/drag or the sliders) fetches the zoomed window again, so a 1,500-token run shows
 * pooled bins first and exact cells once the window fits the chart. Below it, the selected
 * token's attention row across every layer and head.
 */
import { attentionOption, attentionRowOption } from "../../charts/attention";
import type { AttentionView } from "../../api/views";
import { t } from "../../i18n";
import { app, select } from "../../state";
import { clickedCell } from "../chartHost";
import { h, selectBox } from "../dom";
import { attentionLayers } from "../modelLayers";
import { Tab } from "../tab";

export class AttentionTab extends Tab {
  layer = 0;
  head: number | "mean" | "max" = "mean";
  window: [number, number] | null = null;
  private last: AttentionView | null = null;
  private zoomTimer = 0;

  constructor() {
    super("attention", "tab.attention");
  }

  buildControls(): void {
    const m = app.run?.model ?? app.model;
    const layers = attentionLayers();
    const heads = m?.heads ?? 1;
    if (!layers.includes(this.layer)) this.layer = layers[0] ?? 0;
    const layerSel = selectBox(
      layers.map((i) => [String(i), String(i)]),
      String(this.layer),
      (v) => {
        this.layer = Number(v);
        this.run();
      },
      "attn-layer",
    );
    const headSel = selectBox(
      [
        ["mean", t("ctl.mean")],
        ["max", t("ctl.max")],
        ...Array.from({ length: heads }, (_, i): [string, string] => [String(i), `${t("ctl.head")} ${i}`]),
      ],
      String(this.head),
      (v) => {
        this.head = v === "mean" || v === "max" ? v : Number(v);
        this.run();
      },
      "attn-head",
    );
    const reset = h(
      "button",
      { type: "button", class: "btn small ghost", "data-testid": "attn-reset" },
      t("ctl.reset_zoom"),
    );
    reset.addEventListener("click", () => {
      this.window = null;
      this.run();
    });
    this.controls.replaceChildren(
      h("label", {}, t("ctl.layer"), layerSel),
      h("label", {}, t("ctl.head"), headSel),
      reset,
    );
  }

  async refresh(signal: AbortSignal): Promise<void> {
    const run = this.finishedRun();
    if (!run) return;
    if (run.tokens.length < 2) return;
    const [start, end] = this.window ?? [0, run.tokens.length];
    // The row is asked for at once, so the server computes it while the matrix is drawn; its
    // failure is seen where it is awaited (the no-op catch only keeps it from going unhandled
    // when the matrix fails first).
    const pos = app.selected;
    const rowReq = pos !== null && pos > 0 ? this.view("attention", { position: pos, max_cells: 128 }, signal) : null;
    rowReq?.catch(() => {});
    const view = await this.view(
      "attention",
      { layer: this.layer, head: this.head, start, end, max_cells: 256 },
      signal,
    );
    this.last = view;
    this.clearPlaceholder();
    const headName =
      typeof this.head === "number" ? `${t("ctl.head")} ${this.head}` : t(this.head === "max" ? "ctl.max" : "ctl.mean");
    const win =
      view.start > 0 || view.end < view.n_positions ? ` · ${t("ctl.window")} ${view.start}–${view.end - 1}` : "";
    const title = t("chart.attention", { layer: this.layer, head: headName }) + win;
    // The matrix does not depend on the selected token: an arrow key keeps it as drawn.
    const theme = this.theme;
    const chart = this.drawMemo("matrix", [view, theme, title], () => attentionOption(view, theme, title), "tall");
    chart.inst.off("datazoom");
    chart.inst.on("datazoom", () => this.onZoom());
    chart.inst.off("click");
    chart.inst.on("click", (p) => {
      // a cell of the matrix drawn cell by cell, or of the painted image (long runs)
      const painted = clickedCell(chart, p.event as { offsetX?: number; offsetY?: number } | undefined);
      const row = painted ? painted[0] : Array.isArray(p.value) ? Number(p.value[1]) : undefined;
      const q = row === undefined ? undefined : view.row_indices[row];
      if (q !== undefined) select(q);
    });

    if (rowReq) {
      const row = await rowReq;
      this.draw(
        "row",
        attentionRowOption(row, this.theme, `${t("tab.attention")} · ${t("tip.position")} ${pos} · L×H`),
        "tall",
      );
    } else {
      this.charts.get("row")?.dispose();
      this.charts.delete("row");
      this.body.querySelectorAll('[data-chart="attention.row"]').forEach((e) => e.remove());
    }
  }

  /** After zooming settles, fetch the visible window at (up to) full resolution. */
  private onZoom(): void {
    clearTimeout(this.zoomTimer);
    this.zoomTimer = window.setTimeout(() => {
      const view = this.last;
      const chart = this.charts.get("matrix");
      if (!view || !chart) return;
      const opt = chart.inst.getOption() as { dataZoom?: { startValue?: number; endValue?: number }[] };
      const dz = opt.dataZoom ?? [];
      const xs = dz[0];
      const ys = dz[1];
      const lo = Math.min(xs?.startValue ?? 0, ys?.startValue ?? 0);
      const hi = Math.max(xs?.endValue ?? view.col_indices.length - 1, ys?.endValue ?? view.row_indices.length - 1);
      const start = view.col_indices[Math.max(0, lo)] ?? view.start;
      const endIdx = Math.min(hi + 1, view.col_indices.length);
      const end = endIdx < view.col_indices.length ? view.col_indices[endIdx] : view.end;
      if (end - start < 2) return;
      if (start === view.start && end === view.end) return; // already showing this window
      this.window = [start, end];
      this.run();
    }, 350);
  }
}
