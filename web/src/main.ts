/** Entry: build the three panels, wire theme/language, watch the server's health. */
import "./styles.css";
import { api } from "./api/client";
import { themeByName } from "./charts/theme";
import { warmUpOptions } from "./charts/warmUp";
import { openTrace } from "./controller";
import { defaultLang, lang, type Lang, onLangChange, setLang, t, translate } from "./i18n";
import { app, emit, on, select } from "./state";
import { chartPixel, chartSummary, warmUpCharts } from "./views/chartHost";
import { conversation } from "./views/conversation";
import { h, topBar } from "./views/dom";
import { historyDrawer } from "./views/history";
import { leftPanel } from "./views/leftPanel";
import { rightPanel } from "./views/rightPanel";
import { splitter } from "./views/splitter";
import { allTabs } from "./views/tabs";

const root = document.getElementById("app")!;

// --- theme and language -------------------------------------------------------------------
app.theme = localStorage.getItem("llmvis.theme") === "light" ? "light" : "dark";
document.documentElement.dataset.theme = app.theme;
setLang(defaultLang(localStorage.getItem("llmvis.lang"), navigator.languages ?? [navigator.language]));

const themeBtn = h("button", { type: "button", class: "btn ghost small", "data-testid": "theme" });
themeBtn.addEventListener("click", () => {
  app.theme = app.theme === "dark" ? "light" : "dark";
  localStorage.setItem("llmvis.theme", app.theme);
  document.documentElement.dataset.theme = app.theme;
  themeBtn.textContent = app.theme === "dark" ? t("theme.light") : t("theme.dark");
  emit("theme");
});
const langBtn = h("button", { type: "button", class: "btn ghost small", "data-testid": "lang" });
const history = historyDrawer();
const historyBtn = h("button", {
  type: "button",
  class: "btn ghost small",
  "data-testid": "history-toggle",
  onclick: () => history.toggle(),
});
langBtn.addEventListener("click", () => {
  const next: Lang = lang() === "en" ? "zh" : "en";
  localStorage.setItem("llmvis.lang", next);
  setLang(next);
});

// --- errors: shown until dismissed; the lost-server banner clears itself ------------------
const errors = h("div", { class: "errors", "data-testid": "errors", "aria-live": "polite" });
on("error", () => {
  const e = app.errors.shift();
  if (!e) return;
  const item = h(
    "div",
    { class: "error", role: "alert" },
    h("strong", {}, e.title),
    h("span", {}, e.message),
    h("button", { type: "button", class: "btn ghost small", onclick: () => item.remove() }, "×"),
  );
  errors.append(item);
  while (errors.children.length > 4) errors.firstElementChild?.remove();
});
const lost = h("div", { class: "error lost", role: "alert", hidden: true, "data-testid": "lost-server" });
async function watchHealth() {
  try {
    await api.health(AbortSignal.timeout(4000));
    lost.hidden = true;
  } catch {
    lost.textContent = `${t("err.lost")} — retrying…`;
    lost.hidden = false;
  }
  setTimeout(watchHealth, lost.hidden ? 5000 : 2000);
}

// --- layout -------------------------------------------------------------------------------
const tagline = h("span", { class: "muted tagline", "data-i18n": "app.tagline" });
const header = topBar(tagline, historyBtn, themeBtn, langBtn);
const shell = h("div", { class: "shell" });
shell.append(leftPanel(), conversation(), splitter(shell), rightPanel(allTabs()), history.el);
root.append(header, h("div", { class: "banners" }, lost, errors), shell);

const relabel = () => {
  translate(document);
  themeBtn.textContent = app.theme === "dark" ? t("theme.light") : t("theme.dark");
  langBtn.textContent = t("lang");
  historyBtn.textContent = t("tab.history");
};
relabel();
onLangChange(relabel);
void watchHealth();
warmUpCharts(() => warmUpOptions(themeByName(app.theme)));

// For the browser tests: what each live chart holds.
(window as unknown as { __llmvis: unknown }).__llmvis = { charts: chartSummary, chartPixel, app, openTrace, select };
