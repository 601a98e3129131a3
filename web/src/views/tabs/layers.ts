/** Layers tab: layer similarity, the residual stream and the logit lens at the selected token. */
import { layerSimilarityOption } from "../../charts/layerSimilarity";
import { logitLensOption } from "../../charts/logitLens";
import { residualStreamOption } from "../../charts/residualStream";
import { t } from "../../i18n";
import { app } from "../../state";
import { h, segmented } from "../dom";
import { Tab } from "../tab";

export class LayersTab extends Tab {
  mean = false;

  constructor() {
    super("layers", "tab.layers");
  }

  buildControls(): void {
    this.controls.replaceChildren(
      h(
        "label",
        {},
        "cos",
        segmented(
          [
            ["pos", t("tip.position")],
            ["mean", t("ctl.mean")],
          ],
          this.mean ? "mean" : "pos",
          (v) => {
            this.mean = v === "mean";
            this.run();
          },
          "layers-mean",
        ),
      ),
    );
  }

  async refresh(signal: AbortSignal): Promise<void> {
    const run = this.finishedRun();
    if (!run) return;
    // Lens and residual stream explain the token at `pos`, read from position pos-1.
    const pos = Math.max(1, app.selected ?? run.tokens.length - 1);
    const [lens, resid, sim] = await Promise.all([
      this.view("logit_lens", { position: pos, top_k: 5 }, signal),
      this.view("residual_stream", { position: pos }, signal),
      this.view("layer_similarity", { position: pos }, signal),
    ]);
    this.clearPlaceholder();
    this.draw("lens", logitLensOption(lens, this.theme, t("chart.logit_lens", { pos })), "tall");
    this.draw(
      "resid",
      residualStreamOption(
        resid,
        this.theme,
        `${t("chart.residual_stream", { pos: resid.source_position })} → ${resid.token_label}`,
      ),
    );
    this.draw(
      "sim",
      layerSimilarityOption(
        sim,
        this.mean,
        this.theme,
        t("chart.layer_similarity") + (this.mean ? ` · ${t("ctl.mean")}` : ` · ${t("tip.position")} ${sim.position}`),
      ),
    );
  }
}
