/**
 * Fork (issue 6): in the Tokens tab, after clicking a candidate bar, "continue with this
 * token" starts a new run that keeps the prefix and forces that token at the position.
 */
import { fork, isRunning } from "../controller";
import { t } from "../i18n";
import { app } from "../state";
import { compareRuns } from "./compareView";
import { h } from "./dom";

export function forkBox(pos: number, tokenId: number | null): HTMLElement {
  const run = app.run;
  const tok = run?.tokens[pos];
  const cand = tok?.stats?.top?.find((c) => c.id === tokenId);
  if (!run?.id || !tok || pos < 1 || app.offline) return h("div");
  if (!cand) return h("div", { class: "fork-box muted" }, t("fork.hint"));
  const btn = h("button", { type: "button", class: "btn primary small", "data-testid": "fork", disabled: isRunning() || run.status === "streaming" }, `${t("fork.title")}: “${cand.label}”`);
  btn.addEventListener("click", () => {
    btn.disabled = true;
    btn.textContent = t("fork.running");
    void fork(pos, cand.id, null).then((res) => {
      if (res?.child?.id && res.child.status !== "error") void compareRuns(res.parent.id!, res.child.id);
    });
  });
  return h("div", { class: "fork-box" }, h("span", { class: "muted" }, `${t("tip.position")} ${pos}:`), h("span", { class: "mono" }, `${tok.label} → ${cand.label}`), btn);
}
