/** Heads tab: every head of a layer for the selected query, head entropy L×H, head health. */
import { headEntropyOption } from "../../charts/headEntropy";
import { headHealthOption } from "../../charts/headHealth";
import { multiHeadOption } from "../../charts/multiHead";
import { sampledTitle } from "../../charts/sampledTitle";
import { t } from "../../i18n";
import { app } from "../../state";
import { h, selectBox } from "../dom";
import { attentionLayers } from "../modelLayers";
import { Tab } from "../tab";

export class HeadsTab extends Tab {
  layer = 0;

  constructor() {
    super("heads", "tab.heads");
  }

  buildControls(): void {
    const layers = attentionLayers();
    if (!layers.includes(this.layer)) this.layer = layers[0] ?? 0;
    this.controls.replaceChildren(
      h(
        "label",
        {},
        t("ctl.layer"),
        selectBox(
          layers.map((i) => [String(i), String(i)]),
          String(this.layer),
          (v) => {
            this.layer = Number(v);
            this.run();
          },
          "heads-layer",
        ),
      ),
    );
  }

  async refresh(signal: AbortSignal): Promise<void> {
    const run = this.finishedRun();
    if (!run) return;
    const pos = app.selected ?? run.tokens.length - 1;
    const [mh, ent, health] = await Promise.all([
      this.view("multi_head", { layer: this.layer, position: pos }, signal),
      this.view("head_entropy", {}, signal),
      this.view("head_health", {}, signal),
    ]);
    this.clearPlaceholder();
    this.draw(
      "grid",
      multiHeadOption(mh, this.theme, t("chart.multi_head", { layer: this.layer, pos: mh.position })),
      "tall",
    );
    // These two show the whole run, not the selected token: kept as drawn while only that changes.
    const theme = this.theme;
    const entTitle = sampledTitle("chart.head_entropy", ent.positions_used, ent.sequence_length);
    const healthTitle = sampledTitle("chart.head_health", health.positions_used, health.sequence_length);
    this.drawMemo("entropy", [ent, theme, entTitle], () => headEntropyOption(ent, theme, entTitle));
    this.drawMemo("health", [health, theme, healthTitle], () => headHealthOption(health, theme, healthTitle));
  }
}
