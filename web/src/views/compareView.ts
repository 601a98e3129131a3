/**
 * Compare two runs (after a fork, or two picked in History): the shared prefix once, then
 * the two continuations side by side from the diverging point, their entropy and confidence
 * curves overlaid, and the positions where they differ most. Clicking a token opens that
 * run at that position (to inspect it or fork again).
 */
import type { Token, Trace } from "../api/types";
import { api } from "../api/client";
import { compareCurvesOption } from "../charts/compareCurves";
import { fmt } from "../charts/common";
import { themeByName } from "../charts/theme";
import { chipColor } from "../colors";
import { biggestDifferences, divergence } from "../compare";
import { openTrace } from "../controller";
import { t } from "../i18n";
import { app, select, showError } from "../state";
import { Chart } from "./chartHost";
import { chipText } from "./conversation";
import { h } from "./dom";

let overlay: HTMLElement | null = null;
let chart: Chart | null = null;

export function closeCompare(): void {
  chart?.dispose();
  chart = null;
  overlay?.remove();
  overlay = null;
}

function chips(tokens: Token[], from: number, to: number, trace: Trace): HTMLElement {
  const box = h("div", { class: "turn cmp-tokens" });
  const dark = app.theme === "dark";
  for (let i = from; i < to; i++) {
    const tok = tokens[i];
    const chip = h(
      "span",
      { class: `tok ${tok.kind}${tok.special ? " special" : ""}`, "data-p": i, title: `${i} · ${tok.label}` },
      chipText(tok),
    );
    const bg = chipColor(tok, app.colorMode, dark);
    if (bg) chip.style.background = bg;
    box.append(chip);
  }
  box.addEventListener("click", (e) => {
    const chip = (e.target as HTMLElement).closest<HTMLElement>(".tok");
    if (!chip) return;
    closeCompare();
    openTrace(trace);
    select(Number(chip.dataset.p));
  });
  return box;
}

function name(tr: Trace, other: Trace): string {
  if (tr.parent_id && tr.parent_id === other.id) return `${t("fork.forked")} @${tr.fork_position}`;
  if (other.parent_id && other.parent_id === tr.id) return t("fork.original");
  return tr.title || (tr.id ?? "").slice(0, 8);
}

export function showCompare(a: Trace, b: Trace): void {
  closeCompare();
  const ta = a.tokens ?? [];
  const tb = b.tokens ?? [];
  const d = divergence(ta, tb);
  const names: [string, string] = [name(a, b), name(b, a)];
  const chartEl = h("div", { class: "chart-box" });
  const diffs = biggestDifferences(ta, tb, 12);
  const prefixFrom = Math.max(0, d - 40);
  overlay = h(
    "div",
    { class: "overlay", "data-testid": "compare" },
    h(
      "div",
      { class: "overlay-head" },
      h("b", {}, `${t("tab.compare")}: ${names[0]} ↔ ${names[1]}`),
      h("span", { class: "muted small" }, `${t("tip.position")} ${d}`),
      h(
        "button",
        { type: "button", class: "btn ghost small", "data-testid": "compare-close", onclick: closeCompare },
        "×",
      ),
    ),
    h(
      "div",
      { class: "overlay-body" },
      h(
        "div",
        { class: "cmp-prefix" },
        prefixFrom > 0 ? h("span", { class: "muted" }, "… ") : null,
        chips(ta, prefixFrom, d, a),
      ),
      h(
        "div",
        { class: "cmp-cols" },
        h(
          "div",
          { class: "cmp-col", "data-testid": "compare-a" },
          h("div", { class: "turn-role" }, names[0]),
          chips(ta, d, ta.length, a),
        ),
        h(
          "div",
          { class: "cmp-col", "data-testid": "compare-b" },
          h("div", { class: "turn-role" }, names[1]),
          chips(tb, d, tb.length, b),
        ),
      ),
      chartEl,
      h("h3", { class: "muted small" }, t("compare.diff")),
      h(
        "div",
        { class: "list", "data-testid": "compare-diffs" },
        ...diffs.map((x) =>
          h(
            "div",
            { class: "list-item" },
            h("span", { class: "mono" }, String(x.position)),
            h("span", { class: "mono grow" }, `${x.a.label}  |  ${x.b.label}`),
            h("span", { class: "mono" }, `ΔH ${fmt(x.dEntropy, 3)}`),
            h("span", { class: "mono" }, `Δp ${fmt(x.dProb, 3)}`),
          ),
        ),
      ),
    ),
  );
  document.querySelector(".shell")!.append(overlay);
  chart = new Chart("compare.curves", chartEl);
  chart.set(
    compareCurvesOption(ta, tb, names, d, themeByName(app.theme), t("chart.entropy") + " · " + t("chart.confidence")),
  );
}

/** Compare two saved runs by id. */
export async function compareRuns(idA: string, idB: string): Promise<void> {
  try {
    const [a, b] = await Promise.all([api.run(idA), api.run(idB)]);
    showCompare(a, b);
  } catch (e) {
    showError(t("tab.compare"), (e as Error).message);
  }
}

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && overlay) closeCompare();
});
