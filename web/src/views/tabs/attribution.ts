/** Attribution tab: which earlier tokens the selected token depends on, by a chosen method. */
import type { ViewParams } from "../../api/views";
import { attributionOption } from "../../charts/attribution";
import { explains, fmt } from "../../charts/common";
import { t } from "../../i18n";
import { app, foilAt } from "../../state";
import { h, selectBox } from "../dom";
import { Tab } from "../tab";

type Method = NonNullable<ViewParams<"attribution">["method"]>;

export class AttributionTab extends Tab {
  method: Method = "rollout";
  hideFirst = true;

  constructor() {
    super("attribution", "tab.attribution");
  }

  buildControls(): void {
    this.controls.replaceChildren(
      h(
        "label",
        {},
        t("ctl.method"),
        selectBox(
          [
            ["rollout", "attention rollout"],
            ["grad_x_input", "gradient × input"],
            ["integrated_gradients", "integrated gradients"],
          ],
          this.method,
          (v) => {
            this.method = v as Method;
            this.run();
          },
          "attr-method",
        ),
      ),
      this.hideFirstBox(),
    );
  }

  private hideFirstBox(): HTMLElement {
    const box = h("input", { type: "checkbox", checked: this.hideFirst, "data-testid": "attr-hide-first" });
    box.addEventListener("change", () => {
      this.hideFirst = box.checked;
      this.run();
    });
    return h("label", {}, box, t("ctl.hide_first"));
  }

  async refresh(signal: AbortSignal): Promise<void> {
    if (!this.finishedRun()) return;
    const pos = this.needSelection();
    if (pos === null) return;
    if (pos < 1) {
      this.reset(`${t("tip.position")} 0: —`);
      return;
    }
    // Gradient methods explain objective(token) − objective(foil); rollout follows attention
    // only, so a foil is not sent (the server refuses it) and a note says so.
    const foil = foilAt(pos);
    if (app.foil && !foil) this.setNote(t("focus.foil_is_target", { pos, label: app.foil.label }));
    else if (foil && this.method === "rollout") this.setNote(t("focus.rollout_ignores", { label: foil.label }));
    const vs = foil && this.method !== "rollout" ? { foil: foil.id } : {};
    const view = await this.view("attribution", { position: pos, method: this.method, ...vs }, signal);
    this.clearPlaceholder();
    const extra = view.delta !== null && view.delta !== undefined ? ` · Δ ${fmt(view.delta)}` : "";
    const against =
      view.foil_id !== null && view.foil_id !== undefined ? explains(view.target_label, view.foil_label) : "";
    this.draw(
      "bars",
      attributionOption(
        view,
        this.theme,
        against
          ? `${t("chart.attribution", { pos })}${against} (${view.objective})${extra}`
          : `${t("chart.attribution", { pos })} → ${view.target_label} (${view.objective})${extra}`,
        this.hideFirst,
      ),
      "tall",
    );
  }
}
