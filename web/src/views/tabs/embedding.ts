/** Embedding tab: hidden states of one layer projected to 2D/3D (PCA, UMAP, t-SNE). */
import type { ViewParams } from "../../api/views";
import { embeddingOption } from "../../charts/embedding";
import { t } from "../../i18n";
import { app, select } from "../../state";
import { loadGl } from "../gl";
import { h, segmented, selectBox } from "../dom";
import { Tab } from "../tab";

type Method = NonNullable<ViewParams<"embedding">["method"]>;

export class EmbeddingTab extends Tab {
  layer = 0;
  method: Method = "pca";
  dims: 2 | 3 = 2;

  constructor() {
    super("embedding", "tab.embedding");
  }

  buildControls(): void {
    const layers = (app.run?.model ?? app.model)?.layers ?? 0;
    if (this.layer > layers) this.layer = 0;
    this.controls.replaceChildren(
      h(
        "label",
        {},
        t("ctl.layer"),
        selectBox(
          Array.from({ length: layers + 1 }, (_, i) => [String(i), i === 0 ? "0 (embed)" : String(i)]),
          String(this.layer),
          (v) => {
            this.layer = Number(v);
            this.run();
          },
          "emb-layer",
        ),
      ),
      h(
        "label",
        {},
        t("ctl.method"),
        selectBox(
          [
            ["pca", "PCA"],
            ["umap", "UMAP"],
            ["tsne", "t-SNE"],
          ],
          this.method,
          (v) => {
            this.method = v as Method;
            this.run();
          },
          "emb-method",
        ),
      ),
      h(
        "label",
        {},
        t("ctl.dims"),
        segmented(
          [
            ["2", "2D"],
            ["3", "3D"],
          ],
          String(this.dims),
          (v) => {
            this.dims = Number(v) as 2 | 3;
            // A 2D chart cannot become 3D in place: start a fresh instance.
            this.reset();
            this.run();
          },
          "emb-dims",
        ),
      ),
    );
  }

  async refresh(signal: AbortSignal): Promise<void> {
    if (!this.finishedRun()) return;
    const nonlinear = this.method !== "pca";
    if (nonlinear) this.setNote(t("emb.nonlinear_note"));
    const [view] = await Promise.all([
      this.view("embedding", { layer: this.layer, method: this.method, dims: this.dims }, signal),
      this.dims === 3 ? loadGl() : Promise.resolve(),
    ]);
    if (signal.aborted) return;
    if (nonlinear) this.setNote("");
    this.clearPlaceholder();
    const c = this.draw(
      "scatter",
      embeddingOption(
        view,
        this.theme,
        `${t("chart.embedding")} · L${view.layer} · ${view.method.toUpperCase()} ${view.dims}D`,
        app.selected,
      ),
      "tall",
    );
    c.inst.off("click");
    c.inst.on("click", (p) => {
      const pos = Array.isArray(p.value) ? Number(p.value[view.dims]) : NaN;
      if (Number.isInteger(pos)) select(pos);
    });
  }
}
