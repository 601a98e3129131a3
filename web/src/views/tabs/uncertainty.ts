/** Uncertainty tab: the entropy curve (sortable), confidence, and the hotspot list. */
import { fmt, pct } from "../../charts/common";
import { entropyCurveOption } from "../../charts/uncertainty";
import { t } from "../../i18n";
import { app, select } from "../../state";
import { h, segmented } from "../dom";
import { Tab } from "../tab";

export class UncertaintyTab extends Tab {
  sort: "position" | "entropy" = "position";
  private list = h("div", { class: "list", "data-testid": "hotspots" });

  constructor() {
    super("uncertainty", "tab.uncertainty");
  }

  buildControls(): void {
    this.controls.replaceChildren(
      h(
        "label",
        {},
        t("ctl.sort"),
        segmented(
          [
            ["position", t("ctl.sort_position")],
            ["entropy", t("ctl.sort_entropy")],
          ],
          this.sort,
          (v) => {
            this.sort = v as "position" | "entropy";
            this.run();
          },
          "unc-sort",
        ),
      ),
    );
  }

  async refresh(signal: AbortSignal): Promise<void> {
    const run = this.finishedRun();
    if (!run) return;
    const [tokens, unc] = await Promise.all([
      this.view("tokens", { sort: this.sort, top_n: 1 }, signal),
      this.view("uncertainty", { limit: 12 }, signal),
    ]);
    this.clearPlaceholder();
    const labels = run.tokens.map((tk) => tk.label);
    this.draw(
      "curve",
      entropyCurveOption(
        tokens,
        labels,
        this.sort === "entropy",
        this.theme,
        {
          title: t("chart.entropy"),
          entropy: t("tip.entropy"),
          confidence: t("chart.confidence"),
          upper: t("chart.entropy_upper"),
        },
        app.selected,
      ),
    );
    this.list.replaceChildren(
      h(
        "h3",
        { class: "muted small" },
        `${t("chart.hotspots")} · mean ${fmt(unc.mean_entropy)} nats · ${unc.not_top1_count} ≠ top-1`,
      ),
      ...unc.hotspots.map((hs) => {
        const item = h(
          "div",
          { class: "list-item" },
          h("span", { class: "mono" }, String(hs.position)),
          h("span", { class: "mono" }, hs.label),
          h("span", { class: "grow muted" }, hs.detail),
          h("span", { class: "mono" }, pct(hs.probability)),
        );
        item.addEventListener("click", () => select(hs.position));
        return item;
      }),
    );
    this.body.append(this.list);
  }
}
