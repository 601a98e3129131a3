/**
 * Fork: in the Tokens tab, continue the run from the selected position with another
 * token forced there: a clicked candidate bar, or typed text (all of its tokens are forced,
 * shown with their ids before the user confirms), with the run's params or the left panel's.
 */
import type { SamplingParams } from "../api/types";
import { fork, isRunning } from "../controller";
import { t } from "../i18n";
import { app } from "../state";
import { compareRuns } from "./compareView";
import { h, selectBox } from "./dom";
import { typedText, watchTyped } from "./typedTokens";

// Kept across re-renders of the Tokens tab (a click on a bar, a new selection).
const typed = typedText();
let useLeftParams = false;

function paramsText(p: SamplingParams | null): string {
  if (!p) return "";
  return [
    `${t("params.temperature")} ${p.temperature}`,
    `${t("params.top_k")} ${p.top_k ?? t("params.top_k_off")}`,
    `${t("params.top_p")} ${p.top_p}`,
    `${t("params.max_tokens")} ${p.max_new_tokens}`,
    `${t("params.seed")} ${p.seed ?? t("params.seed_random")}`,
  ].join(" · ");
}

export function forkBox(pos: number, tokenId: number | null): HTMLElement {
  const run = app.run;
  const tok = run?.tokens[pos];
  if (!run?.id || !tok || pos < 1 || tok.kind === "prompt" || app.offline) return h("div");
  const busy = isRunning() || run.status === "streaming";

  const start = (ids: number[], btn: HTMLButtonElement) => {
    btn.disabled = true;
    btn.textContent = t("fork.running");
    const params = useLeftParams ? app.params : null;
    void fork(pos, ids, params).then((res) => {
      if (res?.child?.id && res.child.status !== "error") void compareRuns(res.parent.id!, res.child.id);
    });
  };

  // A clicked candidate.
  const cand = tok.stats?.top?.find((c) => c.id === tokenId);
  let candRow: HTMLElement;
  if (cand) {
    const btn = h(
      "button",
      { type: "button", class: "btn primary small", "data-testid": "fork", disabled: busy },
      `${t("fork.title")}: “${cand.label}”`,
    );
    btn.addEventListener("click", () => start([cand.id], btn));
    candRow = h(
      "div",
      { class: "fork-row" },
      h("span", { class: "muted" }, `${t("tip.position")} ${pos}:`),
      h("span", { class: "mono" }, `${tok.label} → ${cand.label}`),
      btn,
    );
  } else candRow = h("div", { class: "fork-row muted" }, t("fork.hint"));

  // Typed text: tokenized by the server as the user types.
  const input = h("input", {
    type: "text",
    class: "text",
    maxlength: 200,
    spellcheck: false,
    "data-testid": "fork-text",
    placeholder: t("fork.type_placeholder"),
  });
  const preview = h("span", { class: "mono", "data-testid": "fork-typed-tokens" });
  const typedBtn = h("button", { type: "button", class: "btn primary small", "data-testid": "fork-typed" });
  const key = () => `${(app.model ?? run.model)?.path ?? ""}\n${typed.typed}`; // tokens depend on the model
  const showTyped = (error = "") => {
    const tokens = typedNow();
    preview.replaceChildren(
      ...(error
        ? [h("span", { class: "muted" }, error)]
        : tokens.map((p) => h("span", { class: "fork-piece", title: `id ${p.id}` }, `“${p.label}” ${p.id}`))),
    );
    typedBtn.textContent = t("fork.typed_go", { n: tokens.length });
    typedBtn.disabled = busy || tokens.length === 0;
  };
  const typedNow = watchTyped(input, typed, key, showTyped);
  typedBtn.addEventListener("click", () => {
    const tokens = typedNow();
    if (tokens.length)
      start(
        tokens.map((p) => p.id),
        typedBtn,
      );
  });
  showTyped();

  // Params: the run's own (the server reuses them) or the left panel's, read when forking.
  const summary = h("span", { class: "muted", "data-testid": "fork-params-summary" });
  const showParams = () => {
    summary.textContent = paramsText(useLeftParams ? app.params : run.params);
  };
  const choice = selectBox(
    [
      ["same", t("fork.params_same")],
      ["left", t("fork.params_left")],
    ],
    useLeftParams ? "left" : "same",
    (v) => {
      useLeftParams = v === "left";
      showParams();
    },
    "fork-params",
  );
  showParams();

  return h(
    "div",
    { class: "fork-box" },
    candRow,
    h("div", { class: "fork-row" }, h("span", { class: "muted" }, t("fork.type")), input, preview, typedBtn),
    h("div", { class: "fork-row" }, h("span", { class: "muted" }, t("fork.params")), choice, summary),
  );
}
