/**
 * The offline HTML report: one self-contained file (scripts and styles inlined at build time)
 * that shows a run without a server: the conversation with its colour modes, the top-N
 * candidates of any clicked token, and every view the user had opened.
 *
 * Data: the run bundle (export.RunBundle JSON) inside
 * `<script type="application/json" id="llmvis-data">`, filled in by the server / CLI.
 */
import "./styles.css";
import type { Trace } from "./api/types";
import { themeByName } from "./charts/theme";
import { defaultLang, onLangChange, setLang, t, translate } from "./i18n";
import { app, emit, runFromTrace, select } from "./state";
import { chartPixel, chartSummary } from "./views/chartHost";
import { conversation } from "./views/conversation";
import { h, topBar } from "./views/dom";
import { rightPanel } from "./views/rightPanel";
import { type SavedView, savedViewOption } from "./views/savedViews";
import { splitter } from "./views/splitter";
import { Tab } from "./views/tab";
import { TokensTab } from "./views/tabs/tokens";

interface Bundle {
  format: string;
  trace: Trace;
  views?: SavedView[];
}

class SavedViewsTab extends Tab {
  constructor(private views: SavedView[]) {
    super("saved", "report.views");
  }

  refresh(): void {
    const tokens = app.run?.tokens ?? [];
    if (!this.views.length) {
      this.reset(t("report.no_views"));
      return;
    }
    this.views.forEach((v, i) => {
      const option = savedViewOption(v, tokens, this.theme);
      if (option) this.draw(`v${i}`, option, "tall");
    });
  }
}

function readBundle(): Bundle | null {
  const text = document.getElementById("llmvis-data")?.textContent?.trim();
  if (!text) return null;
  const data = JSON.parse(text) as Bundle;
  return data.trace ? data : null;
}

const root = document.getElementById("app")!;
app.offline = true;
// The page that embeds the report may ask for a theme and a first tab (a notebook does).
const asked = document.documentElement.dataset;
app.theme = asked.theme === "light" ? "light" : "dark";
setLang(defaultLang(null, navigator.languages ?? [navigator.language]));
const bundle = readBundle();
if (!bundle) {
  root.append(h("div", { class: "empty", "data-testid": "report-empty" }, t("report.empty")));
} else {
  const trace = bundle.trace;
  document.title = `llmvis · ${trace.title || trace.model.name}`;
  const themeBtn = h("button", { type: "button", class: "btn ghost small", "data-testid": "theme" });
  themeBtn.addEventListener("click", () => {
    app.theme = app.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = app.theme;
    emit("theme");
  });
  const langBtn = h("button", { type: "button", class: "btn ghost small", "data-testid": "lang" });
  langBtn.addEventListener("click", () => setLang(t("lang") === "English" ? "en" : "zh"));
  const p = trace.params;
  const when = new Date((trace.created ?? 0) * 1000).toLocaleString();
  const sampling = `T=${p.temperature} top-k=${p.top_k ?? "off"} top-p=${p.top_p} seed=${p.seed ?? "–"}`;
  const meta = `${trace.title ? `${trace.title} · ` : ""}${trace.model.name} · ${sampling} · ${when}`;
  const tagline = h("span", { class: "muted tagline", "data-testid": "report-meta" }, meta);
  const header = topBar(tagline, themeBtn, langBtn);
  const shell = h("div", { class: "shell report" });
  shell.append(
    conversation(),
    splitter(shell),
    rightPanel([new TokensTab(), new SavedViewsTab(bundle.views ?? [])], asked.tab),
  );
  root.append(header, shell);
  const relabel = () => {
    translate(document);
    themeBtn.textContent = app.theme === "dark" ? t("theme.light") : t("theme.dark");
    langBtn.textContent = t("lang");
  };
  onLangChange(relabel);
  relabel();
  app.run = runFromTrace(trace);
  emit("run");
  emit("status");
  select(trace.prompt_len < (trace.tokens ?? []).length ? trace.prompt_len : 0);
  (window as unknown as { __llmvis: unknown }).__llmvis = {
    app,
    charts: chartSummary,
    chartPixel,
    theme: () => themeByName(app.theme),
  };
}
