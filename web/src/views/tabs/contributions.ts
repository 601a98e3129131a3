/**
 * Contributions tab: what moved the prediction at the selected token, finer than a block.
 * Every head's direct effect (L × H; click a head for its attention row at the source
 * position), the contribution graph (the routes information took into the prediction; click
 * an attention edge for the heads that carried it) and the MLP neurons (or experts) with the
 * largest effect. Heads and neurons explain logit(token), or logit(token) − logit(foil).
 */
import { ApiError } from "../../api/client";
import type { AttentionView, ContributionGraphView, FlowEdge, HeadContributionsView } from "../../api/views";
import { explains, messageOption, posLabel } from "../../charts/common";
import { type HeadRef, headEffectsOption, headRowOption, neuronsOption, topHead } from "../../charts/contributions";
import { edgeHeadsOption, flowGraphOption, sameEdge, topAttentionEdge } from "../../charts/flowGraph";
import { t } from "../../i18n";
import { app, foilAt } from "../../state";
import { h, selectBox } from "../dom";
import { Tab } from "../tab";

const THRESHOLDS = [0.01, 0.02, 0.04, 0.08, 0.15, 0.3];
const TOP_KS = [2, 3, 4, 6, 8, 12];
/** Rows of the merged neuron ranking. */
const NEURON_ROWS = 24;

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };
const settle = <T>(p: Promise<T>): Promise<Settled<T>> =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
const notAvailable = (e: unknown) => e instanceof ApiError && e.kind === "not_available";
const reason = (e: unknown) => (e as Error).message.replace(/^query: /, "");

export class ContributionsTab extends Tab {
  threshold = 0.04;
  topK = 6;
  /** the head whose attention row is shown (clicked); null: the largest |effect| */
  private head: HeadRef | null = null;
  /** the attention edge whose heads are shown (clicked); null: the one carrying the most */
  private edge: FlowEdge | null = null;
  private heads: HeadContributionsView | null = null;
  private row: AttentionView | null = null;
  private graph: ContributionGraphView | null = null;

  constructor() {
    super("contributions", "tab.contributions");
  }

  buildControls(): void {
    this.controls.replaceChildren(
      h(
        "label",
        { title: t("ctl.threshold_tip") },
        t("ctl.threshold"),
        selectBox(
          THRESHOLDS.map((v) => [String(v), String(v)]),
          String(this.threshold),
          (v) => {
            this.threshold = Number(v);
            this.run();
          },
          "flow-threshold",
        ),
      ),
      h(
        "label",
        { title: t("ctl.top_k_tip") },
        t("ctl.top_k_edges"),
        selectBox(
          TOP_KS.map((v) => [String(v), String(v)]),
          String(this.topK),
          (v) => {
            this.topK = Number(v);
            this.run();
          },
          "flow-topk",
        ),
      ),
    );
  }

  async refresh(signal: AbortSignal): Promise<void> {
    const run = this.finishedRun();
    if (!run) return;
    if (run.tokens.length < 2) {
      this.reset(`${t("tip.position")} 0: —`);
      return;
    }
    // The prediction of the token at `pos`, read at pos − 1 (as the Layers tab's views).
    const pos = Math.max(1, app.selected ?? run.tokens.length - 1);
    const foil = foilAt(pos);
    if (app.foil && !foil) this.setNote(t("focus.foil_is_target", { pos, label: app.foil.label }));
    const vs = foil ? { foil: foil.id } : {};
    // Heads, their attention row and the neurons are asked at once and drawn when they come; the
    // graph, which costs the most, is asked once the first of them is answered: the server
    // computes views one at a time in the order they wait, so the cheap charts are not kept
    // behind it, and the graph waits behind them without a round trip of its own.
    const cheap = [
      settle(this.view("head_contributions", { position: pos, ...vs }, signal)),
      settle(this.view("attention", { position: pos - 1, max_cells: 256 }, signal)),
      settle(this.view("neuron_contributions", { position: pos, top_k: 10, ...vs }, signal)),
    ] as const;
    const early = Promise.all(cheap);
    const asked = { position: pos, threshold: this.threshold, top_k: this.topK };
    const graphAsked = Promise.race(cheap).then(() => settle(this.view("contribution_graph", asked, signal)));
    const [heads, row, neurons] = await early;
    // A failure other than "this model cannot give it" (409, lost server, aborted) is the tab's;
    // so is every view being unavailable (a model without internals). One unavailable view is
    // said where its chart would be.
    const fatal = (s: Settled<unknown>) => !s.ok && !notAvailable(s.error);
    for (const s of [heads, row, neurons]) if (fatal(s)) throw (s as { error: unknown }).error;
    if (!heads.ok && !row.ok && !neurons.ok) {
      const g = await graphAsked;
      if (!g.ok) throw heads.error;
    }
    this.clearPlaceholder();
    const theme = this.theme;

    this.heads = heads.ok ? heads.value : null;
    this.row = row.ok ? row.value : null;
    this.charts.get("heads")?.inst.off("click");
    this.charts.get("graph")?.inst.off("click");
    if (heads.ok) {
      const v = heads.value;
      this.drawHeads();
      const chart = this.charts.get("heads")!;
      chart.inst.off("click");
      chart.inst.on("click", (p) => {
        if (p.seriesIndex !== 0 || !Array.isArray(p.value)) return;
        const [head, layer] = p.value as number[];
        if (!v.effects[layer]) return;
        this.head = { layer, head };
        this.drawHeads();
        this.drawHeadRow();
      });
    } else this.draw("heads", messageOption(theme, t("chart.head_effects", { pos }), reason(heads.error)));
    this.drawHeadRow();

    const graphTitle = t("chart.flow", { pos });
    if (!this.graph || this.graph.position !== pos) {
      this.graph = null;
      this.draw("graph", messageOption(theme, graphTitle, t("view.loading")), "xtall");
      this.drawEdgeHeads();
    }

    if (neurons.ok) {
      const v = neurons.value;
      this.draw(
        "neurons",
        neuronsOption(
          v,
          theme,
          t("chart.neurons", { pos: v.target.position }) + explains(v.target.token_label, v.target.foil_label),
          NEURON_ROWS,
        ),
        "tall",
      );
    } else this.draw("neurons", messageOption(theme, t("chart.neurons", { pos }), reason(neurons.error)));

    const graph = await graphAsked;
    if (signal.aborted) return;
    if (fatal(graph)) throw (graph as { error: unknown }).error;
    this.graph = graph.ok ? graph.value : null;
    if (graph.ok) {
      if (this.edge && !graph.value.edges.some((e) => sameEdge(e, this.edge))) this.edge = null;
      this.drawGraph();
      const chart = this.charts.get("graph")!;
      chart.inst.off("click");
      chart.inst.on("click", (p) => {
        const edge = (p.data as { edge?: FlowEdge } | undefined)?.edge;
        if (p.dataType !== "edge" || !edge || edge.kind !== "attention" || !edge.heads?.length) return;
        this.edge = edge;
        this.drawGraph();
        this.drawEdgeHeads();
      });
    } else this.draw("graph", messageOption(theme, graphTitle, reason(graph.error)));
    this.drawEdgeHeads();
  }

  private shownHead(): HeadRef | null {
    const v = this.heads;
    if (!v) return null;
    const h = this.head;
    return h && v.effects[h.layer] && h.head < v.heads ? h : topHead(v);
  }

  private drawHeads(): void {
    const v = this.heads;
    if (!v) return;
    const title =
      t("chart.head_effects", { pos: v.target.position }) + explains(v.target.token_label, v.target.foil_label);
    this.draw("heads", headEffectsOption(v, this.theme, title, this.shownHead()));
  }

  private drawHeadRow(): void {
    const ref = this.shownHead();
    const row = this.row;
    const src = this.heads?.target.source_position ?? (app.selected ?? 1) - 1;
    const label = app.run?.tokens[src]?.label ?? "";
    if (!ref || !row?.rows?.[ref.layer]) {
      this.draw("headrow", messageOption(this.theme, t("chart.head_row_none"), t("chart.head_row_hint")));
      return;
    }
    const title =
      t("chart.head_row", { layer: ref.layer, head: ref.head, pos: posLabel(src, label, 12) }) +
      (this.head ? "" : ` · ${t("chart.largest")}`);
    this.draw("headrow", headRowOption(row, ref, this.theme, title));
  }

  private shownEdge(): FlowEdge | null {
    const g = this.graph;
    if (!g) return null;
    return (this.edge && g.edges.find((e) => sameEdge(e, this.edge))) || topAttentionEdge(g);
  }

  private drawGraph(): void {
    const g = this.graph;
    if (!g) return;
    const deep = g.layers > 16;
    const chart = this.draw(
      "graph",
      flowGraphOption(
        g,
        this.theme,
        {
          title: t("chart.flow", { pos: g.position }),
          attention: t("chart.flow_attention"),
          residual: t("chart.flow_residual"),
        },
        this.shownEdge(),
      ),
      deep ? "xtall" : "tall",
    );
    // a deep model's layers need more height (the class is set when the slot is made)
    chart.el.classList.toggle("xtall", deep);
    chart.el.classList.toggle("tall", !deep);
  }

  private drawEdgeHeads(): void {
    const g = this.graph;
    const edge = this.shownEdge();
    if (!g || !edge) {
      this.draw(
        "edgeheads",
        messageOption(this.theme, t("chart.edge_heads_none"), t("chart.edge_heads_hint")),
        "short",
      );
      return;
    }
    const label = (p: number) => posLabel(p, g.labels[p] ?? "", 12);
    const title =
      t("chart.edge_heads", { source: label(edge.source), target: label(edge.target), layer: edge.layer }) +
      (this.edge ? "" : ` · ${t("chart.largest_flow")}`);
    this.draw("edgeheads", edgeHeadsOption(edge, this.theme, title), "short");
  }
}
