/** Layers tab: layer similarity, the residual stream and the logit lens at the selected token. */
import { layerSimilarityOption } from "../../charts/layerSimilarity";
import { explains } from "../../charts/common";
import { logitLensOption } from "../../charts/logitLens";
import { rankTrajectoryOption } from "../../charts/ranks";
import { residualStreamOption } from "../../charts/residualStream";
import { t } from "../../i18n";
import { app, followedAt, foilAt } from "../../state";
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
    // With a foil they explain logit(token) − logit(foil) (not when the token is the foil).
    const foil = foilAt(pos);
    if (app.foil && !foil) this.setNote(t("focus.foil_is_target", { pos, label: app.foil.label }));
    const vs = foil ? { foil: foil.id } : {};
    const followed = followedAt(pos, foil);
    const [lens, resid, sim] = await Promise.all([
      this.view("logit_lens", { position: pos, top_k: 5, ...vs, watch: followed.ids }, signal),
      this.view("residual_stream", { position: pos, ...vs }, signal),
      this.view("layer_similarity", { position: pos }, signal),
    ]);
    this.clearPlaceholder();
    const lensFoil = lens.foil_id !== null && lens.foil_id !== undefined ? lens.foil_label : null;
    this.draw(
      "lens",
      logitLensOption(
        lens,
        this.theme,
        t("chart.logit_lens", { pos }) + (lensFoil ? explains(lens.token_label, lensFoil) : ""),
      ),
      "tall",
    );
    this.draw(
      "ranks",
      rankTrajectoryOption(lens, this.theme, {
        title: t("chart.ranks", { pos }) + explains(lens.token_label, lensFoil),
        subtitle: followed.auto && followed.ids.length ? t("chart.ranks_auto") : undefined,
        rank: t("chart.rank_axis"),
        gap: t("chart.logit_gap"),
      }),
    );
    const residFoil = resid.foil_id !== null && resid.foil_id !== undefined ? resid.foil_label : null;
    this.draw(
      "resid",
      residualStreamOption(
        resid,
        this.theme,
        t("chart.residual_stream", { pos: resid.source_position }) + explains(resid.token_label, residFoil),
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
