/** Activations tab: per-layer distributions of MLP activations and attention outputs. */
import { activationStatsOption, activationsOption } from "../../charts/activations";
import { t } from "../../i18n";
import { app } from "../../state";
import { h, segmented } from "../dom";
import { Tab } from "../tab";

export class ActivationsTab extends Tab {
  kind: "mlp" | "attn" = "mlp";
  scope: "token" | "all" = "token";

  constructor() {
    super("activations", "tab.activations");
  }

  buildControls(): void {
    this.controls.replaceChildren(
      h(
        "label",
        {},
        t("ctl.kind"),
        segmented(
          [
            ["mlp", "MLP"],
            ["attn", "attention"],
          ],
          this.kind,
          (v) => {
            this.kind = v as "mlp" | "attn";
            this.run();
          },
          "act-kind",
        ),
      ),
      segmented(
        [
          ["token", t("tip.position")],
          ["all", "all tokens"],
        ],
        this.scope,
        (v) => {
          this.scope = v as "token" | "all";
          this.run();
        },
        "act-scope",
      ),
    );
  }

  async refresh(signal: AbortSignal): Promise<void> {
    if (!this.finishedRun()) return;
    const pos = this.scope === "token" ? app.selected : null;
    const view = await this.view("activations", { position: pos }, signal);
    this.clearPlaceholder();
    const d = this.kind === "mlp" ? view.mlp : view.attn;
    const where =
      view.position === null || view.position === undefined
        ? `${view.tokens} tokens`
        : `${t("tip.position")} ${view.position}`;
    const name = this.kind === "mlp" ? "MLP" : "attention output";
    this.draw(
      "hist",
      activationsOption(
        d,
        this.theme,
        `${t("chart.activations", { layer: "0…" + (d.layers.length - 1) })} · ${name} · ${where} (log₁₀ count)`,
      ),
      "tall",
    );
    this.draw("stats", activationStatsOption(d, this.theme, `${name}: std, |max|`), "short");
  }
}
