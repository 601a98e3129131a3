/** Right panel: the tab bar and the active tab; refreshes only what is visible. */
import { store, stored } from "../storage";
import { onLangChange, t } from "../i18n";
import { on } from "../state";
import { h } from "./dom";
import { focusBar } from "./focus";
import type { Tab } from "./tab";

const TAB_KEY = "llmvis.tab";

/** `initial`: the tab to open first when no preference is kept (the report in a notebook). */
export function rightPanel(tabs: Tab[], initial?: string): HTMLElement {
  const bar = h("nav", { class: "tabs", role: "tablist", "data-testid": "tabs" });
  const panels = h("div", { class: "tab-panels" });
  // the foil and watched tokens, shown above every tab: they apply to all of them
  const focus = focusBar();
  const wanted = stored(TAB_KEY) ?? initial;
  let active = tabs.find((tb) => tb.id === wanted) ?? tabs[0];

  const buttons = tabs.map((tab) => {
    const b = h("button", { type: "button", role: "tab", "data-tab": tab.id, "data-testid": `tab-${tab.id}` });
    b.addEventListener("click", () => show(tab));
    bar.append(b);
    panels.append(tab.el);
    return b;
  });

  const show = (tab: Tab) => {
    active = tab;
    store(TAB_KEY, tab.id);
    tabs.forEach((tb, i) => {
      tb.el.hidden = tb !== tab;
      buttons[i].setAttribute("aria-selected", String(tb === tab));
    });
    if (tab.dirty) tab.run();
  };

  // Coalesced per frame: holding an arrow key moves the selection without redrawing each step.
  let pending = false;
  const invalidate = () => {
    for (const tab of tabs) tab.dirty = true;
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      if (active.dirty) active.run();
    });
  };

  /** Hide the buttons of tabs the loaded model cannot show (e.g. Experts without MoE layers). */
  const hideUnavailable = () => tabs.forEach((tab, i) => (buttons[i].hidden = !tab.available()));

  const relabel = () => {
    buttons.forEach((b, i) => (b.textContent = t(tabs[i].label)));
    for (const tab of tabs) tab.buildControls();
    focus.render();
    invalidate();
  };

  on("run", () => {
    for (const tab of tabs) tab.buildControls();
    focus.render();
    invalidate();
  });
  on("select", () => {
    focus.render();
    invalidate();
  });
  // a new foil or watched token: every view that explains a logit changes
  on("foil", () => {
    focus.render();
    invalidate();
  });
  on("theme", invalidate);
  // A new model (or a remote run's local copy) can compute views that failed before.
  on("model", () => {
    for (const tab of tabs) tab.buildControls();
    hideUnavailable();
    invalidate();
    if (!active.available()) show(tabs[0]);
  });
  // While streaming, tabs that show the whole run refresh when the run ends.
  on("status", invalidate);
  onLangChange(relabel);

  for (const tab of tabs) tab.buildControls();
  buttons.forEach((b, i) => (b.textContent = t(tabs[i].label)));
  hideUnavailable();
  queueMicrotask(() => show(active.available() ? active : tabs[0]));
  focus.render();
  return h("section", { class: "right", "data-testid": "right-panel" }, bar, focus.el, panels);
}
