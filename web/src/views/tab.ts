/**
 * Base of a right-panel tab: a controls row, a status line and chart slots. A tab refreshes
 * when it is visible and its inputs changed (run, selection, its own controls, theme,
 * language); a newer refresh aborts the older one's requests.
 */
import { ApiError, api } from "../api/client";
import type { ViewName, ViewParams, ViewResult } from "../api/views";
import type { Option } from "../charts/common";
import { themeByName, type Theme } from "../charts/theme";
import { type Key, t } from "../i18n";
import { isRemote } from "../remote";
import { app, emit, type Run } from "../state";
import { Chart, sameInputs } from "./chartHost";
import { clear, h } from "./dom";
import { FOLLOW_AFTER_MS, FOLLOW_EVERY_MS, progressText } from "./progress";

/** View results already fetched (a view is a pure function of the run and its params). */
const cache = new Map<string, unknown>();
const CACHE_ENTRIES = 64;

export abstract class Tab {
  readonly el: HTMLElement;
  protected controls: HTMLElement;
  protected status: HTMLElement;
  /** a remark on what the charts show (e.g. that a method ignores the foil); cleared each refresh */
  protected note: HTMLElement;
  protected body: HTMLElement;
  protected charts = new Map<string, Chart>();
  private ctrl: AbortController | null = null;
  /** the views this tab waits for, in the order it asked (their progress shows in the status) */
  private pending: string[] = [];
  private following = false;
  private followed: { runId: string; signal: AbortSignal } = { runId: "", signal: new AbortController().signal };
  dirty = true;

  constructor(
    readonly id: string,
    readonly label: Key,
  ) {
    this.controls = h("div", { class: "tab-controls" });
    this.status = h("div", { class: "tab-status muted", "data-testid": `status-${id}` });
    this.note = h("div", { class: "tab-note", "data-testid": `note-${id}`, hidden: true });
    this.body = h("div", { class: "tab-body" });
    this.el = h(
      "div",
      { class: "tab-panel", "data-tab": id, hidden: true },
      this.controls,
      this.status,
      this.note,
      this.body,
    );
  }

  get theme(): Theme {
    return themeByName(app.theme);
  }

  /** Draw (or redraw) everything. Called only while the tab is visible. */
  abstract refresh(signal: AbortSignal): Promise<void> | void;

  /** Rebuild the controls (after a language change or a new model). */
  buildControls(): void {}

  /** Whether the loaded model can show this tab at all; the right panel hides its button when not. */
  available(): boolean {
    return true;
  }

  run(): void {
    this.dirty = false;
    this.ctrl?.abort();
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    this.setStatus("");
    this.setNote("");
    Promise.resolve(this.refresh(ctrl.signal)).catch((e: unknown) => {
      if ((e as Error).name === "AbortError" || ctrl.signal.aborted) return;
      const msg = e instanceof ApiError ? e.message : String(e);
      // 422 from a view that needs internals: this model cannot give it; say why where its chart would be.
      if (e instanceof ApiError && e.kind === "not_available") {
        this.reset(msg.replace(/^query: /, ""));
        return;
      }
      this.setStatus(`${t("err.view")}: ${msg}`, true);
      // 409: the view needs weights that are not loaded here (a remote run's, or another model's).
      if (e instanceof ApiError && e.status === 409) {
        const label = isRemote(app.run?.model) ? t("view.load_copy") : t("view.load_model");
        this.status.append(
          " ",
          h(
            "button",
            {
              type: "button",
              class: "btn small",
              "data-testid": `load-for-${this.id}`,
              onclick: () => emit("wantModel"),
            },
            label,
          ),
        );
      }
    });
  }

  setStatus(text: string, error = false): void {
    this.status.textContent = text;
    this.status.classList.toggle("err", error);
    this.status.hidden = text === "";
  }

  setNote(text: string): void {
    this.note.textContent = text;
    this.note.hidden = text === "";
  }

  /** A chart slot `name` (created on first use) set to `option`. */
  draw(name: string, option: Option, cls = ""): Chart {
    const c = this.slot(name, cls);
    c.set(option);
    return c;
  }

  /**
   * Like draw(), for a chart costly to build and render (a big heatmap) that a refresh often
   * leaves unchanged (e.g. one that does not show the selected token): when `inputs`, all
   * that `build` reads, are the same values (===) as at its last draw, the chart is kept.
   */
  drawMemo(name: string, inputs: readonly unknown[], build: () => Option, cls = ""): Chart {
    const c = this.slot(name, cls);
    if (sameInputs(c.inputs, inputs)) c.keep();
    else c.set(build(), inputs);
    return c;
  }

  private slot(name: string, cls: string): Chart {
    let c = this.charts.get(name);
    if (!c) {
      const el = h("div", { class: `chart-box ${cls}` });
      this.body.append(el);
      c = new Chart(`${this.id}.${name}`, el);
      this.charts.set(name, c);
    }
    return c;
  }

  /** Drop all charts and other content (e.g. nothing selected). */
  reset(message?: string): void {
    for (const c of this.charts.values()) c.dispose();
    this.charts.clear();
    clear(this.body);
    if (message) this.body.append(h("div", { class: "placeholder" }, message));
  }

  /** Fetch a view of the current run; shows "computing" while it takes a moment. */
  async view<N extends ViewName>(name: N, params: ViewParams<N>, signal: AbortSignal): Promise<ViewResult<N>> {
    const id = app.run?.id;
    if (!id) throw new Error(t("view.no_run"));
    const key = `${id}/${name}?${JSON.stringify(params)}`;
    if (cache.has(key)) return cache.get(key) as ViewResult<N>;
    const timer = setTimeout(() => this.setStatus(t("view.loading")), 150);
    this.pending.push(name);
    this.follow(id, signal);
    try {
      const result = await api.view(id, name, params, signal);
      cache.set(key, result);
      if (cache.size > CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
      return result;
    } finally {
      clearTimeout(timer);
      this.pending.splice(this.pending.indexOf(name), 1);
      const loading = this.status.textContent?.startsWith(t("view.loading"));
      if (!signal.aborted && loading && !this.pending.length) this.setStatus("");
    }
  }

  /** While views are pending past a second, show what the server says they are doing (one
   * poller per tab, not per request: the page's connections are few). */
  private follow(runId: string, signal: AbortSignal): void {
    this.followed = { runId, signal }; // the newest refresh's (an older one's is aborted)
    if (this.following) return;
    this.following = true;
    const live = () => this.pending.length > 0 && !this.followed.signal.aborted && app.run?.id === this.followed.runId;
    const poll = async () => {
      await new Promise((resolve) => setTimeout(resolve, FOLLOW_AFTER_MS));
      while (live()) {
        const { runId, signal } = this.followed;
        try {
          const text = progressText(this.pending, (await api.progress(runId, signal)).views);
          if (text && live()) this.setStatus(text);
        } catch {
          // a missed poll only leaves the status as it was
        }
        await new Promise((resolve) => setTimeout(resolve, FOLLOW_EVERY_MS));
      }
      this.following = false;
    };
    void poll();
  }

  /**
   * The current run once it is saved and finished (views are computed from the stored run);
   * otherwise null, with "no run" or "loading" in the body.
   */
  protected finishedRun(): Run | null {
    const run = app.run;
    if (!run?.id || run.status === "streaming") {
      this.reset(t(run ? "view.loading" : "view.no_run"));
      return null;
    }
    return run;
  }

  /** The selected position, or a message in the body when none is selected. */
  needSelection(): number | null {
    if (!app.run) {
      this.reset(t("view.no_run"));
      return null;
    }
    if (app.selected === null) {
      this.reset(t("view.select_token"));
      return null;
    }
    return app.selected;
  }

  /** Remove the placeholder text once charts are drawn. */
  protected clearPlaceholder(): void {
    this.body.querySelectorAll(".placeholder").forEach((p) => p.remove());
  }
}
