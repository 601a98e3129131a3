/**
 * Experts tab (mixture-of-experts models): a MoE layer's router probabilities per token, the
 * expert load of every MoE layer, and the selected token's routing and expert outputs.
 * Hidden when the loaded model is known to have no MoE layer.
 */
import { expertPartsOption, expertsGridOption, expertsLoadOption, expertsTokenOption } from "../../charts/experts";
import { t } from "../../i18n";
import { app } from "../../state";
import { h, selectBox } from "../dom";
import { computingModel } from "../modelLayers";
import { Tab } from "../tab";

export class ExpertsTab extends Tab {
  /** the MoE layer of the token grid; null: the first */
  layer: number | null = null;
  /** MoE layers the last result for run `seenRun` named (when the model's report does not say) */
  private seen: number[] = [];
  private seenRun: string | null = null;

  constructor() {
    super("experts", "tab.experts");
  }

  /** The MoE layers: from the model's load-time report, else the run's model, else the last result. */
  private moeLayers(): number[] {
    for (const m of [computingModel(), app.run?.model]) {
      const layers = m?.internals?.moe_layers;
      if (layers?.length) return layers;
    }
    return app.run?.id && app.run.id === this.seenRun ? this.seen : [];
  }

  available(): boolean {
    const report = computingModel()?.internals;
    return !report || (report.moe_layers ?? []).length > 0;
  }

  buildControls(): void {
    const layers = this.moeLayers();
    if (this.layer !== null && !layers.includes(this.layer)) this.layer = null;
    const value = this.layer ?? layers[0];
    this.controls.replaceChildren(
      h(
        "label",
        {},
        t("ctl.layer"),
        selectBox(
          layers.map((l) => [String(l), String(l)]),
          value === undefined ? "" : String(value),
          (v) => {
            this.layer = Number(v);
            this.run();
          },
          "experts-layer",
        ),
      ),
    );
  }

  async refresh(signal: AbortSignal): Promise<void> {
    const run = this.finishedRun();
    if (!run) return;
    const layer = this.layer ?? this.moeLayers()[0] ?? null;
    const view = await this.view("experts", { layer, position: app.selected }, signal);
    if (run.id !== this.seenRun || view.moe_layers.join() !== this.seen.join()) {
      const before = this.moeLayers().join();
      this.seen = view.moe_layers;
      this.seenRun = run.id;
      if (this.moeLayers().join() !== before) this.buildControls();
    }
    this.clearPlaceholder();
    const labels = run.tokens.map((tk) => tk.label);
    const where = { layer: view.layer, pos: view.position };
    this.draw(
      "grid",
      expertsGridOption(
        view,
        labels,
        this.theme,
        `${t("chart.experts_grid", where)} · top-${view.top_k} / ${view.n_experts} · ${view.router}`,
        view.position,
      ),
      "tall",
    );
    this.draw("load", expertsLoadOption(view, this.theme, t("chart.experts_load")));
    this.draw("token", expertsTokenOption(view, this.theme, t("chart.experts_token", where)));
    this.draw(
      "parts",
      expertPartsOption(view, this.theme, t("chart.experts_parts", where), t("chart.experts_shared")),
      "short",
    );
  }
}
