/** Tokens tab: the selected token's top-N candidates (raw vs sampled) and its numbers. */
import { fmt, pct } from "../../charts/common";
import { topCandidatesOption } from "../../charts/topCandidates";
import { t } from "../../i18n";
import { entropyText, missingMass, rankText } from "../../remote";
import { app } from "../../state";
import { h } from "../dom";
import { Tab } from "../tab";
import { forkBox } from "../fork";
import { focusBox } from "../focus";

export class TokensTab extends Tab {
  private facts = h("div", { class: "facts" });
  private fork = h("div", {});
  private focus = h("div", {});
  private picked: number | null = null;

  constructor() {
    super("tokens", "tab.tokens");
  }

  refresh(): void {
    const pos = this.needSelection();
    if (pos === null) return;
    const tok = app.run!.tokens[pos];
    this.clearPlaceholder();
    if (!this.body.contains(this.facts)) this.body.prepend(this.facts);
    const s = tok.stats;
    const missing = s && missingMass(s);
    const fact = (k: string, v: string) =>
      h("div", { class: "fact" }, h("div", { class: "k" }, k), h("div", { class: "v" }, v));
    this.facts.replaceChildren(
      fact(t("tip.position"), `${pos} · ${tok.kind === "prompt" ? t("conv.prompt") : "→"}`),
      fact("token", `${tok.label} (${tok.id})`),
      ...(s
        ? [
            fact(t("tip.raw_prob"), pct(s.raw_prob)),
            fact(t("tip.sampled_prob"), pct(s.sampled_prob)),
            fact(t("tip.rank"), rankText(s)),
            fact(t("tip.entropy"), entropyText(s)),
            ...(missing ? [fact(t("tip.missing", { n: missing.n }), missing.text)] : []),
            fact(t("tip.gap"), fmt(s.logit_gap)),
          ]
        : []),
    );
    if (!s?.top?.length) {
      for (const c of this.charts.values()) c.dispose();
      this.charts.clear();
      this.body.querySelectorAll(".chart-box").forEach((e) => e.remove());
      return;
    }
    const chart = this.draw(
      "top",
      topCandidatesOption(
        tok,
        this.theme,
        {
          title: t("chart.top_n", { pos }),
          raw: t("chart.raw"),
          sampled: t("chart.sampled"),
          chosen: t("chart.chosen"),
        },
        { foil: app.foil?.id ?? null, watched: app.watched.map((w) => w.id) },
      ),
    );
    // Fork: click a candidate bar, then continue with it.
    const rows = [...s.top].reverse();
    // A click anywhere on a candidate's row picks it (not only on its thin bars).
    const zr = chart.inst.getZr();
    zr.off("click");
    zr.on("click", (e: { offsetX: number; offsetY: number }) => {
      if (!chart.inst.containPixel({ gridIndex: 0 }, [e.offsetX, e.offsetY])) return;
      const at = chart.inst.convertFromPixel({ gridIndex: 0 }, [e.offsetX, e.offsetY]) as number[];
      const row = rows[Math.round(at[1])];
      if (!row) return;
      this.picked = row.id;
      this.showFork(pos);
    });
    if (this.picked !== null && !s.top.some((c) => c.id === this.picked)) this.picked = null;
    this.showFork(pos);
    this.body.append(this.focus, this.fork);
  }

  /** The picked candidate's actions: contrast with it or watch it (focus), continue with it (fork). */
  private showFork(pos: number): void {
    this.focus.replaceChildren(focusBox(pos, this.picked));
    this.fork.replaceChildren(forkBox(pos, this.picked));
  }
}
