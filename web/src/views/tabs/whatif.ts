/**
 * What-if tab: change part of the model's computation and watch what the prediction does.
 *
 * - Ablate & look: build a list of interventions (a site — residual stream, attention or MLP
 *   output, a head, a neuron, attention edges — its layer/head/neuron, the positions it touches
 *   and an operation), or click a head in the head-effects map to zero it; Apply asks the server
 *   to force the run's tokens through the model with them (POST whatif) at the selected token,
 *   against the foil when one is set: before vs after (prob, logit, rank, gap), the top-N before
 *   vs after, and along the run each position's probability change and KL (click a position to
 *   select it; the before/after follows the selection while the interventions stay the same).
 * - Patching sweep: this run (clean) against another saved run of the same length (corrupted);
 *   streamed progress with Cancel (aborting the request cancels it on the server); the restored
 *   metric as heatmaps (layers × positions, heads × layers).
 * - Steering: a contrast pair typed by the user → a vector at a layer, added to the interventions
 *   with a coefficient.
 * "Continue with these" forks the run under the interventions; the compare view opens when it ends.
 */
import { ApiError, api, type RunRow } from "../../api/client";
import type {
  Intervention,
  InterventionOp,
  InterventionSite,
  SteeringVector,
  SweepProgress,
  SweepResult,
  SweepSite,
  WhatIfRequest,
  WhatIfResult,
} from "../../api/types";
import type { HeadContributionsView } from "../../api/views";
import { explains, type Option, posLabel } from "../../charts/common";
import {
  changeCurveOption,
  describeIntervention,
  describePlan,
  fastVsExact,
  headPickOption,
  parsePositions,
  outcomeRows,
  positionsText,
  sweepMapOption,
  sweepSummary,
  type SweepWhich,
  sweepValues,
  topChangeOption,
} from "../../charts/whatif";
import { fork, isRunning } from "../../controller";
import { type Key, t } from "../../i18n";
import { isRemote } from "../../remote";
import { app, emit, foilAt, on, type Run, select } from "../../state";
import { Chart } from "../chartHost";
import { compareRuns } from "../compareView";
import { h, segmented, selectBox } from "../dom";
import { Tab } from "../tab";

type Pane = "ablate" | "sweep" | "steer";
type PositionsMode = "all" | "selected" | "range" | "picked";
type ForkFrom = "selected" | "reply" | "end";

const SITES: InterventionSite[] = ["head", "residual", "attn_out", "mlp_out", "neuron", "attention_edges"];
const OPS: InterventionOp[] = ["zero", "mean", "scale", "add", "patch"];
const SWEEP_SITES: SweepSite[] = ["residual", "attn_out", "mlp_out", "heads"];
const TOP_N = 10;

const notAvailable = (e: unknown) => e instanceof ApiError && e.kind === "not_available";
const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/^query: /, "");
const same = (a: Intervention, b: Intervention) => JSON.stringify(a) === JSON.stringify(b);

export class WhatIfTab extends Tab {
  pane: Pane = "ablate";
  /** the interventions Apply and Continue use */
  plan: Intervention[] = [];

  // the site form
  private site: InterventionSite = "head";
  private layer = 0;
  private head = 0;
  private neuron = 0;
  private op: InterventionOp = "zero";
  private factor = 0.5;
  private posMode: PositionsMode = "all";
  private range = "";
  private keys = "0";
  private source = "";
  /** positions shift-clicked in the conversation */
  private picked = new Set<number>();
  private forkFrom: ForkFrom = "selected";

  // results
  private runId: string | null = null;
  private modelKey = "";
  private heads: HeadContributionsView | null = null;
  private result: WhatIfResult | null = null;
  /** the plan (as JSON) the result was computed with: it follows the selection while unchanged */
  private resultPlan = "";
  private applying: AbortController | null = null;

  // sweep
  private sameLength: RunRow[] = [];
  private corrupted = "";
  private sweepSites = new Set<SweepSite>(SWEEP_SITES);
  private sweepMode: "exact" | "fast" | "both" = "exact";
  private sweepFoil = false;
  private sweepShow: SweepWhich = "exact";
  private sweeping: AbortController | null = null;
  private sweepDone = 0;
  private sweepTotal = 0;
  private sweep: { runId: string; result: SweepResult } | null = null;

  // steering
  private positive = "";
  private negative = "";
  /** a saved run standing for a side instead of its text ("" = the typed text) */
  private positiveRun = "";
  private negativeRun = "";
  /** saved runs of this run's model: what a side of the steering pair can be */
  private modelRuns: RunRow[] = [];
  private steerLayer = 0;
  private coefficient = 4;
  private steering: SteeringVector | null = null;
  private steerBusy = false;

  // the DOM: a plan bar, then one pane per mode; charts live in their hosts
  private planBar = h("div", { class: "wi-plan", "data-testid": "wi-plan" });
  private panes: Record<Pane, HTMLElement> = {
    ablate: h("section", { class: "wi-pane", "data-testid": "wi-pane-ablate" }),
    sweep: h("section", { class: "wi-pane", "data-testid": "wi-pane-sweep" }),
    steer: h("section", { class: "wi-pane", "data-testid": "wi-pane-steer" }),
  };
  private siteForm = h("div", { class: "wi-form", "data-testid": "wi-site-form" });
  private ablateMsg = h("div", { class: "wi-msg", "data-testid": "wi-ablate-msg", hidden: true });
  private headsHost = h("div", { class: "wi-charts" });
  private outcome = h("div", { class: "wi-outcome", "data-testid": "wi-outcome" });
  private resultHost = h("div", { class: "wi-charts" });
  private sweepForm = h("div", { class: "wi-form", "data-testid": "wi-sweep-form" });
  private sweepBar = h("div", { class: "wi-progress", "data-testid": "wi-sweep-progress", hidden: true });
  private sweepMsg = h("div", { class: "wi-msg", "data-testid": "wi-sweep-msg", hidden: true });
  private sweepNotes = h("div", { class: "wi-notes muted small", "data-testid": "wi-sweep-notes" });
  private sweepHost = h("div", { class: "wi-charts" });
  private steerForm = h("div", { class: "wi-form", "data-testid": "wi-steer-form" });
  private steerMsg = h("div", { class: "wi-msg", "data-testid": "wi-steer-msg", hidden: true });
  private steerOut = h("div", { class: "wi-steer-out", "data-testid": "wi-steer-result" });

  constructor() {
    super("whatif", "tab.whatif");
    this.panes.ablate.append(this.siteForm, this.ablateMsg, this.headsHost, this.outcome, this.resultHost);
    this.panes.sweep.append(this.sweepForm, this.sweepBar, this.sweepMsg, this.sweepNotes, this.sweepHost);
    this.panes.steer.append(this.steerForm, this.steerMsg, this.steerOut);
    this.body.append(this.planBar, this.panes.ablate, this.panes.sweep, this.panes.steer);
    this.watchShiftClicks();
    on("status", () => this.syncButtons());
    on("select", () => this.renderSiteForm());
  }

  // --- the model's bounds ---------------------------------------------------------------------

  private get model() {
    return app.run?.model ?? app.model;
  }
  private get layers(): number {
    return this.model?.layers ?? 0;
  }
  private get nHeads(): number {
    return this.model?.heads ?? 0;
  }
  /** the run that actions use: saved and finished, else null */
  private get ready(): Run | null {
    const run = app.run;
    return run?.id && run.status !== "streaming" && !app.offline ? run : null;
  }
  /** the predicted position the tab explains: the selected token (≥ 1), else the last */
  private position(run: Run): number {
    return Math.max(1, app.selected ?? run.tokens.length - 1);
  }

  // --- controls -------------------------------------------------------------------------------

  buildControls(): void {
    this.controls.replaceChildren(
      segmented(
        [
          ["ablate", t("wi.pane_ablate")],
          ["sweep", t("wi.pane_sweep")],
          ["steer", t("wi.pane_steer")],
        ],
        this.pane,
        (v) => {
          this.pane = v as Pane;
          this.showPane();
          this.run();
        },
        "wi-pane",
      ),
    );
    this.checkRun();
    this.showPane();
    this.renderPlan();
    this.renderSiteForm();
    this.renderSweepForm();
    this.renderSteerForm();
  }

  private showPane(): void {
    for (const [k, el] of Object.entries(this.panes)) el.hidden = k !== this.pane;
    this.planBar.hidden = this.pane === "sweep";
  }

  /** A new run: results of the old one go; a model of another shape also drops the plan. */
  private checkRun(): void {
    const run = app.run;
    const m = run?.model;
    const key = m ? `${m.path}|${m.layers}|${m.heads}|${m.hidden_size}` : "";
    if (key !== this.modelKey) {
      if (this.modelKey !== "") this.plan = [];
      this.modelKey = key;
      this.layer = Math.min(this.layer, Math.max(0, this.layers - 1));
      this.head = Math.min(this.head, Math.max(0, this.nHeads - 1));
      this.steerLayer = Math.min(this.steerLayer, this.layers);
      if (this.steering && this.steering.vector.length !== m?.hidden_size) this.steering = null;
    }
    const id = run?.id ?? null;
    if (id !== this.runId) {
      this.runId = id;
      this.applying?.abort();
      this.result = null;
      this.resultPlan = "";
      this.heads = null;
      this.clearPicked();
      this.sameLength = [];
      this.corrupted = "";
      this.showMsg(this.ablateMsg, "");
      this.showMsg(this.sweepMsg, "");
      for (const name of [...this.charts.keys()]) if (name !== "heads") this.drop(name);
      this.outcome.replaceChildren();
      this.sweepNotes.replaceChildren();
      if (id) void this.loadSameLength();
    }
  }

  /** Enable what can run now: a saved, finished run, no run streaming. */
  private syncButtons(): void {
    const run = this.ready;
    const busy = isRunning();
    const set = (testid: string, on: boolean) => {
      const b = this.el.querySelector<HTMLButtonElement>(`[data-testid=${testid}]`);
      if (b) b.disabled = !on;
    };
    set("wi-apply", !!run && this.plan.length > 0 && !busy);
    set("wi-continue", !!run && this.plan.length > 0 && !busy);
    set("wi-add", !!run);
    set("wi-sweep-start", !!run && !!this.corrupted && this.sweepSites.size > 0 && !this.sweeping && !busy);
    set("wi-steer-go", !!this.model && this.sideReady("positive") && this.sideReady("negative") && !this.steerBusy);
    set("wi-steer-add", !!this.steering);
  }

  private showMsg(el: HTMLElement, text: string, error = true): void {
    el.textContent = text;
    el.classList.toggle("err", error);
    el.hidden = text === "";
  }

  /** An error of an action, said in its pane; a 409 (weights not loaded here) offers to load them. */
  private fail(el: HTMLElement, e: unknown): void {
    this.showMsg(el, `${t("wi.failed")}: ${message(e)}`);
    if (e instanceof ApiError && e.status === 409) {
      const label = isRemote(app.run?.model) ? t("view.load_copy") : t("view.load_model");
      el.append(" ", h("button", { type: "button", class: "btn small", onclick: () => emit("wantModel") }, label));
    }
  }

  // --- the plan -------------------------------------------------------------------------------

  private setPlan(plan: Intervention[]): void {
    this.plan = plan;
    this.renderPlan();
    if (this.heads) this.drawHeads();
    if (this.result) this.drawResult();
  }

  private renderPlan(): void {
    const run = app.run;
    const chips = this.plan.map((iv, i) =>
      h(
        "span",
        { class: "chip wi-chip", "data-testid": "wi-chip", title: JSON.stringify({ ...iv, vector: undefined }) },
        h("span", { class: "mono" }, describeIntervention(iv)),
        h(
          "button",
          {
            type: "button",
            class: "chip-x",
            "data-testid": "wi-chip-remove",
            title: t("wi.remove"),
            "aria-label": `${t("wi.remove")}: ${describeIntervention(iv)}`,
            onclick: () => this.setPlan(this.plan.filter((_, j) => j !== i)),
          },
          "×",
        ),
      ),
    );
    const apply = h(
      "button",
      { type: "button", class: "btn primary small", "data-testid": "wi-apply", onclick: () => void this.apply() },
      run && run.tokens.length > 1
        ? t("wi.apply_at", { pos: posLabel(this.position(run), run.tokens[this.position(run)]?.label ?? "", 12) })
        : t("wi.apply"),
    );
    const from = selectBox(
      [
        ["selected", t("wi.from_selected")],
        ["reply", t("wi.from_reply")],
        ["end", t("wi.from_end")],
      ],
      this.forkFrom,
      (v) => (this.forkFrom = v as ForkFrom),
      "wi-fork-from",
    );
    const cont = h(
      "button",
      { type: "button", class: "btn small", "data-testid": "wi-continue", onclick: () => void this.continueRun() },
      t("wi.continue"),
    );
    this.planBar.replaceChildren(
      h(
        "div",
        { class: "wi-chips" },
        h("span", { class: "muted" }, t("wi.plan")),
        ...(chips.length ? chips : [h("span", { class: "muted small" }, t("wi.plan_empty"))]),
        this.plan.length
          ? h(
              "button",
              { type: "button", class: "btn ghost small", "data-testid": "wi-clear", onclick: () => this.setPlan([]) },
              t("wi.clear"),
            )
          : null,
      ),
      h("div", { class: "wi-actions" }, apply, h("span", { class: "muted small" }, t("wi.continue_from")), from, cont),
    );
    this.syncButtons();
  }

  /** The positions the form's choice means, or an error message. */
  private formPositions(): { positions: number[] | null } | { error: string } {
    const run = app.run;
    if (this.posMode === "all") return { positions: null };
    if (this.posMode === "selected") {
      if (app.selected === null) return { error: t("wi.need_selection") };
      return { positions: [app.selected] };
    }
    if (this.posMode === "picked") {
      if (!this.picked.size) return { error: t("wi.need_picked") };
      return { positions: [...this.picked].sort((a, b) => a - b) };
    }
    const ps = parsePositions(this.range);
    if (!ps) return { error: t("wi.bad_range") };
    const n = run?.tokens.length ?? 0;
    if (ps[ps.length - 1] >= n) return { error: t("wi.range_beyond", { n: n - 1 }) };
    return { positions: ps };
  }

  /** The form's intervention, or an error message. */
  private formIntervention(): Intervention | string {
    const at = this.formPositions();
    if ("error" in at) return at.error;
    const iv: Intervention = { site: this.site, layer: this.layer, op: this.op };
    if (at.positions) iv.positions = at.positions;
    if (this.site === "head" || (this.site === "attention_edges" && this.head >= 0)) iv.head = this.head;
    if (this.site === "neuron") iv.neuron = this.neuron;
    if (this.site === "attention_edges") {
      const keys = parsePositions(this.keys);
      if (!keys) return t("wi.bad_keys");
      iv.keys = keys;
      iv.op = "zero";
    }
    if (iv.op === "scale") iv.factor = this.factor;
    if (iv.op === "add") {
      if (!this.steering) return t("wi.need_vector");
      iv.vector = this.steering.vector;
      iv.factor = this.coefficient;
    }
    if (iv.op === "patch") {
      if (!this.source) return t("wi.need_source");
      iv.source_run = this.source;
    }
    return iv;
  }

  private addFromForm(): void {
    const iv = this.formIntervention();
    if (typeof iv === "string") {
      this.showMsg(this.ablateMsg, iv);
      return;
    }
    this.showMsg(this.ablateMsg, "");
    if (!this.plan.some((p) => same(p, iv))) this.setPlan([...this.plan, iv]);
  }

  // --- the site form ----------------------------------------------------------------------------

  private renderSiteForm(): void {
    const L = this.layers;
    const H = this.nHeads;
    const run = app.run;
    const numbers = (n: number, prefix: string): [string, string][] =>
      Array.from({ length: n }, (_, i) => [String(i), `${prefix}${i}`]);
    // residual: hidden states 0..L (L = the last layer's output); the others: layers 0..L−1
    const nLayers = this.site === "residual" ? L + 1 : L;
    if (this.layer >= nLayers) this.layer = Math.max(0, nLayers - 1);
    const label = (key: Key, ...control: (Node | null)[]) => h("label", {}, t(key), ...control);
    const siteBox = selectBox(
      SITES.map((s) => [s, t(`wi.site_${s}` as Key)]),
      this.site,
      (v) => {
        this.site = v as InterventionSite;
        if (this.site === "attention_edges") this.op = "zero";
        this.renderSiteForm();
      },
      "wi-site",
    );
    const layerBox = selectBox(
      numbers(nLayers, "L"),
      String(this.layer),
      (v) => {
        this.layer = Number(v);
      },
      "wi-layer",
    );
    const headBox = selectBox(
      [...(this.site === "attention_edges" ? [["-1", t("wi.all_heads")] as [string, string]] : []), ...numbers(H, "H")],
      String(this.head),
      (v) => (this.head = Number(v)),
      "wi-head",
    );
    const width = this.model?.intermediate_size ?? null;
    const neuronBox = h("input", {
      type: "number",
      class: "num",
      min: 0,
      max: width === null ? undefined : width - 1,
      step: 1,
      value: String(this.neuron),
      "data-testid": "wi-neuron",
      onchange: (e: Event) => {
        const v = Math.max(0, Math.round(Number((e.target as HTMLInputElement).value) || 0));
        this.neuron = width === null ? v : Math.min(v, width - 1);
        (e.target as HTMLInputElement).value = String(this.neuron);
      },
    });
    const ops = this.site === "attention_edges" ? (["zero"] as InterventionOp[]) : OPS;
    const opBox = selectBox(
      ops.map((o) => [o, t(`wi.op_${o}` as Key)]),
      this.op,
      (v) => {
        this.op = v as InterventionOp;
        this.renderSiteForm();
      },
      "wi-op",
    );
    const factorBox = h("input", {
      type: "number",
      class: "num",
      step: 0.1,
      value: String(this.factor),
      "data-testid": "wi-factor",
      onchange: (e: Event) => {
        const v = Number((e.target as HTMLInputElement).value);
        if (Number.isFinite(v)) this.factor = v;
      },
    });
    const posBox = selectBox(
      [
        ["all", t("wi.pos_all")],
        ["selected", t("wi.pos_selected")],
        ["range", t("wi.pos_range")],
        ["picked", t("wi.pos_picked", { n: this.picked.size })],
      ],
      this.posMode,
      (v) => {
        this.posMode = v as PositionsMode;
        this.renderSiteForm();
      },
      "wi-positions",
    );
    const rangeBox = h("input", {
      type: "text",
      class: "text wi-range",
      placeholder: "3-7, 9",
      value: this.range,
      "data-testid": "wi-range",
      oninput: (e: Event) => (this.range = (e.target as HTMLInputElement).value),
    });
    const keysBox = h("input", {
      type: "text",
      class: "text wi-range",
      placeholder: "0-3",
      value: this.keys,
      "data-testid": "wi-keys",
      oninput: (e: Event) => (this.keys = (e.target as HTMLInputElement).value),
    });
    const sources = this.sameLength.filter((r) => r.id !== run?.id);
    if (this.source && !sources.some((r) => r.id === this.source)) this.source = "";
    const sourceBox = selectBox(
      [["", sources.length ? t("wi.pick_run") : t("wi.no_same_length")], ...sources.map(runOption)],
      this.source,
      (v) => (this.source = v),
      "wi-source",
    );
    const posHint =
      this.posMode === "selected"
        ? app.selected === null
          ? t("wi.need_selection")
          : posLabel(app.selected, run?.tokens[app.selected]?.label ?? "", 14)
        : this.posMode === "picked"
          ? this.picked.size
            ? positionsText([...this.picked])
            : t("wi.shift_click")
          : "";
    const vectorHint = this.steering
      ? t("wi.vector_of", { layer: this.steering.layer, norm: fmtNorm(this.steering.norm) })
      : t("wi.need_vector");
    const add = h(
      "button",
      { type: "button", class: "btn small", "data-testid": "wi-add", onclick: () => this.addFromForm() },
      t("wi.add"),
    );
    this.siteForm.replaceChildren(
      h(
        "div",
        { class: "wi-row" },
        label("wi.site", siteBox),
        label("ctl.layer", layerBox),
        this.site === "head" || this.site === "attention_edges" ? label("ctl.head", headBox) : null,
        this.site === "neuron" ? label("wi.neuron", neuronBox, width === null ? null : muted(`< ${width}`)) : null,
        label("wi.op", opBox),
        this.op === "scale" ? label("wi.factor", factorBox) : null,
        this.op === "add" ? muted(vectorHint) : null,
        this.op === "patch" ? label("wi.source", sourceBox) : null,
      ),
      h(
        "div",
        { class: "wi-row" },
        label(this.site === "attention_edges" ? "wi.queries" : "wi.positions", posBox),
        this.posMode === "range" ? rangeBox : null,
        posHint ? muted(posHint) : null,
        this.posMode === "picked" && this.picked.size
          ? h(
              "button",
              { type: "button", class: "btn ghost small", onclick: () => (this.clearPicked(), this.renderSiteForm()) },
              t("wi.clear"),
            )
          : null,
        this.site === "attention_edges" ? label("wi.keys", keysBox) : null,
        add,
      ),
    );
    this.syncButtons();
  }

  // --- shift-click: pick positions in the conversation ------------------------------------------

  private watchShiftClicks(): void {
    const chipOf = (e: MouseEvent) =>
      e.shiftKey && !this.el.hidden ? (e.target as HTMLElement).closest<HTMLElement>(".tok[data-p]") : null;
    // no text selection on a shift-click, and the click (which also selects the token) toggles it
    document.addEventListener("mousedown", (e) => {
      if (chipOf(e)) e.preventDefault();
    });
    document.addEventListener("click", (e) => {
      const chip = chipOf(e);
      if (!chip) return;
      const p = Number(chip.dataset.p);
      if (this.picked.has(p)) this.picked.delete(p);
      else this.picked.add(p);
      chip.classList.toggle("wi-picked", this.picked.has(p));
      this.posMode = "picked";
      this.renderSiteForm();
    });
  }

  private clearPicked(): void {
    document.querySelectorAll(".tok.wi-picked").forEach((c) => c.classList.remove("wi-picked"));
    this.picked.clear();
  }

  // --- refresh ---------------------------------------------------------------------------------

  reset(msg?: string): void {
    // a failure of the tab's own view (head effects): said where the map would be
    this.drop("heads");
    this.headsHost.replaceChildren(...(msg ? [h("div", { class: "placeholder" }, msg)] : []));
  }

  async refresh(signal: AbortSignal): Promise<void> {
    this.checkRun();
    this.renderPlan();
    this.syncButtons();
    const run = app.run;
    if (!run?.id || run.status === "streaming") {
      this.reset(t(run ? "view.loading" : "view.no_run"));
      return;
    }
    if (run.tokens.length < 2) {
      this.reset(t("wi.too_short"));
      return;
    }
    if (this.pane === "ablate") await this.refreshAblate(run, signal);
    else if (this.pane === "sweep") {
      this.renderSweepForm();
      this.drawSweep();
    } else this.renderSteerForm();
  }

  private async refreshAblate(run: Run, signal: AbortSignal): Promise<void> {
    const pos = this.position(run);
    const foil = foilAt(pos);
    // the result follows the selection (and the foil) while the interventions are those it was computed with
    const want = this.result && this.resultPlan === JSON.stringify(this.plan);
    const stale = want && (this.result!.position !== pos || (this.result!.foil_id ?? null) !== (foil?.id ?? null));
    const [heads] = await Promise.all([
      this.view("head_contributions", { position: pos, ...(foil ? { foil: foil.id } : {}) }, signal).then(
        (v) => v,
        (e: unknown) => {
          if (!notAvailable(e)) throw e;
          this.reset(message(e));
          return null;
        },
      ),
      stale ? this.apply(signal) : Promise.resolve(),
    ]);
    if (signal.aborted) return;
    this.headsHost.querySelectorAll(".placeholder").forEach((p) => p.remove());
    this.heads = heads;
    if (heads) this.drawHeads();
    if (this.result) this.drawResult();
  }

  // --- the head picker --------------------------------------------------------------------------

  private drawHeads(): void {
    const v = this.heads;
    if (!v) return;
    const planned = this.plan
      .filter((p) => p.site === "head" && p.op === "zero" && p.head !== null && p.head !== undefined)
      .map((p) => ({ layer: p.layer, head: p.head! }));
    const title = t("wi.heads_title", { pos: v.target.position }) + explains(v.target.token_label, v.target.foil_label);
    const cls = v.layers <= 8 ? "short" : v.layers <= 24 ? "" : "tall";
    const chart = this.chartIn(
      this.headsHost,
      "heads",
      headPickOption(v, this.theme, title, planned, t("wi.heads_hint")),
      cls,
    );
    chart.inst.off("click");
    chart.inst.on("click", (p) => {
      if (p.seriesIndex !== 0 || !Array.isArray(p.value)) return;
      const [head, layer] = p.value as number[];
      if (!v.effects[layer]) return;
      this.toggleHead(layer, head);
    });
  }

  /** A click on a head: zero it (at the form's positions), or take it out of the plan again. */
  private toggleHead(layer: number, head: number): void {
    const has = (p: Intervention) => p.site === "head" && p.op === "zero" && p.layer === layer && p.head === head;
    if (this.plan.some(has)) {
      this.setPlan(this.plan.filter((p) => !has(p)));
      return;
    }
    const at = this.formPositions();
    const iv: Intervention = { site: "head", layer, head, op: "zero" };
    if ("positions" in at && at.positions) iv.positions = at.positions;
    this.setPlan([...this.plan, iv]);
  }

  // --- ablate and look --------------------------------------------------------------------------

  /** POST whatif with the plan at the selected position (and the foil); draws the result. */
  private async apply(signal?: AbortSignal): Promise<void> {
    const run = this.ready;
    if (!run?.id || !this.plan.length) return;
    this.applying?.abort();
    const ctrl = new AbortController();
    this.applying = ctrl;
    signal?.addEventListener("abort", () => ctrl.abort());
    const pos = this.position(run);
    const foil = foilAt(pos);
    const plan = this.plan;
    const body: WhatIfRequest = {
      interventions: plan,
      position: pos,
      top_n: TOP_N,
      ...(foil ? { foil: foil.id } : {}),
    };
    const btn = this.planBar.querySelector<HTMLButtonElement>("[data-testid=wi-apply]");
    if (btn) btn.textContent = t("wi.applying");
    this.showMsg(this.ablateMsg, "");
    try {
      const result = await api.whatIf(run.id!, body, ctrl.signal);
      if (ctrl.signal.aborted || app.run !== run) return;
      this.result = result;
      this.resultPlan = JSON.stringify(plan);
      this.drawResult();
    } catch (e) {
      if ((e as Error).name === "AbortError" || ctrl.signal.aborted) return;
      this.fail(this.ablateMsg, e);
    } finally {
      if (this.applying === ctrl) this.applying = null;
      this.renderPlan();
    }
  }

  private drawResult(): void {
    const r = this.result;
    const run = app.run;
    if (!r || !run) return;
    const labels = run.tokens.map((tk) => tk.label);
    const stale = this.resultPlan !== JSON.stringify(this.plan);
    const where = posLabel(r.position, r.token_label, 16);
    const table = h(
      "table",
      { class: "wi-table", "data-testid": "wi-outcome-table" },
      h(
        "thead",
        {},
        h("tr", {}, h("th", {}, ""), h("th", {}, t("wi.before")), h("th", {}, t("wi.after")), h("th", {}, "Δ")),
      ),
      h(
        "tbody",
        {},
        ...outcomeRows(r).map((row) =>
          h(
            "tr",
            { "data-key": row.key },
            h("th", {}, row.key === "gap" ? t("wi.gap", { foil: r.foil_label ?? "" }) : t(`wi.${row.key}` as Key)),
            h("td", { class: "mono", "data-testid": `wi-before-${row.key}`, "data-value": row.values[0] }, row.before),
            h("td", { class: "mono", "data-testid": `wi-after-${row.key}`, "data-value": row.values[1] }, row.after),
            h("td", { class: `mono ${row.sign > 0 ? "up" : row.sign < 0 ? "down" : ""}` }, row.delta),
          ),
        ),
      ),
    );
    this.outcome.replaceChildren(
      h(
        "div",
        { class: "wi-outcome-head" },
        h("b", {}, t("wi.outcome_at", { pos: where }) + (r.foil_label ? ` vs '${r.foil_label}'` : "")),
        h("span", { class: "muted small" }, describePlan(r.interventions)),
        stale ? h("span", { class: "wi-stale small", "data-testid": "wi-stale" }, t("wi.stale")) : null,
      ),
      table,
    );
    this.chartIn(
      this.resultHost,
      "top",
      topChangeOption(r, this.theme, {
        title: t("wi.top_title", { pos: r.position }),
        before: t("wi.before"),
        after: t("wi.after"),
        outside: t("wi.outside", { n: TOP_N }),
      }),
    );
    const curve = this.chartIn(
      this.resultHost,
      "curve",
      changeCurveOption(
        r,
        labels,
        this.theme,
        {
          title: t("wi.curve_title"),
          delta: t("wi.delta_prob"),
          kl: t("wi.kl"),
          before: t("wi.before"),
          after: t("wi.after"),
        },
        app.selected,
      ),
    );
    // a click anywhere over a position selects its token (not only on its thin bar)
    const zr = curve.inst.getZr();
    zr.off("click");
    zr.on("click", (e: { offsetX: number; offsetY: number }) => {
      if (!curve.inst.containPixel({ gridIndex: 0 }, [e.offsetX, e.offsetY])) return;
      const at = curve.inst.convertFromPixel({ gridIndex: 0 }, [e.offsetX, e.offsetY]) as number[];
      const p = r.positions[Math.round(at[0])];
      if (p !== undefined) select(p);
    });
  }

  // --- continue under the interventions -----------------------------------------------------------

  private async continueRun(): Promise<void> {
    const run = this.ready;
    if (!run?.id || !this.plan.length || isRunning()) return;
    const end = run.tokens.length;
    const sel = app.selected;
    const pos =
      this.forkFrom === "end"
        ? end
        : this.forkFrom === "selected" && sel !== null && sel >= run.promptLen
          ? sel
          : run.promptLen;
    const btn = this.planBar.querySelector<HTMLButtonElement>("[data-testid=wi-continue]");
    if (btn) {
      btn.disabled = true;
      btn.textContent = t("fork.running");
    }
    const res = await fork(pos, [], null, this.plan);
    if (res?.child?.id && res.child.status !== "error") void compareRuns(res.parent.id!, res.child.id);
  }

  // --- the sweep ----------------------------------------------------------------------------------

  /** Saved runs of the same length and model as this one: what a sweep or a patch can read. */
  private async loadSameLength(): Promise<void> {
    const run = app.run;
    if (!run?.id) return;
    try {
      const list = await api.runs("", 500);
      if (app.run !== run) return;
      const n = run.tokens.length;
      const name = run.model?.name;
      this.modelRuns = list.runs.filter((r) => r.model_name === name);
      this.sameLength = this.modelRuns.filter((r) => r.id !== run.id && r.n_tokens === n);
      if (!this.sameLength.some((r) => r.id === this.corrupted)) this.corrupted = this.sameLength[0]?.id ?? "";
    } catch {
      this.sameLength = [];
      this.modelRuns = [];
    }
    for (const side of ["positiveRun", "negativeRun"] as const)
      if (!this.modelRuns.some((r) => r.id === this[side])) this[side] = "";
    this.renderSweepForm();
    this.renderSiteForm();
    this.renderSteerForm();
  }

  private renderSweepForm(): void {
    const run = app.run;
    const runs = this.sameLength;
    const corrupted = selectBox(
      [["", runs.length ? t("wi.pick_run") : t("wi.no_same_length")], ...runs.map(runOption)],
      this.corrupted,
      (v) => {
        this.corrupted = v;
        this.syncButtons();
      },
      "wi-corrupted",
    );
    const refresh = h(
      "button",
      {
        type: "button",
        class: "btn ghost small",
        title: t("wi.refresh_runs"),
        "aria-label": t("wi.refresh_runs"),
        onclick: () => void this.loadSameLength(),
      },
      "↻",
    );
    const sites = SWEEP_SITES.map((s) => {
      const box = h("input", {
        type: "checkbox",
        checked: this.sweepSites.has(s),
        "data-testid": `wi-sweep-site-${s}`,
        onchange: (e: Event) => {
          if ((e.target as HTMLInputElement).checked) this.sweepSites.add(s);
          else this.sweepSites.delete(s);
          this.syncButtons();
        },
      });
      return h("label", { class: "wi-check" }, box, t(`wi.sweep_${s}` as Key));
    });
    const mode = segmented(
      [
        ["exact", t("wi.mode_exact")],
        ["fast", t("wi.mode_fast")],
        ["both", t("wi.mode_both")],
      ],
      this.sweepMode,
      (v) => (this.sweepMode = v as "exact" | "fast" | "both"),
      "wi-sweep-mode",
    );
    const pos = run && run.tokens.length > 1 ? this.position(run) : null;
    const foil = pos === null ? null : foilAt(pos);
    const foilBox = foil
      ? h(
          "label",
          { class: "wi-check" },
          h("input", {
            type: "checkbox",
            checked: this.sweepFoil,
            "data-testid": "wi-sweep-foil",
            onchange: (e: Event) => (this.sweepFoil = (e.target as HTMLInputElement).checked),
          }),
          t("wi.sweep_use_foil", { label: foil.label }),
        )
      : muted(t("wi.sweep_foil_default"));
    const start = h(
      "button",
      {
        type: "button",
        class: "btn primary small",
        "data-testid": "wi-sweep-start",
        onclick: () => void this.startSweep(),
      },
      t("wi.sweep_start"),
    );
    this.sweepForm.replaceChildren(
      h("div", { class: "wi-row" }, h("label", {}, t("wi.corrupted"), corrupted), refresh),
      h(
        "div",
        { class: "wi-row" },
        h("span", { class: "muted" }, t("wi.sweep_at")),
        h("span", { class: "mono" }, pos === null ? "–" : `${posLabel(pos, run?.tokens[pos]?.label ?? "", 14)}`),
        foilBox,
      ),
      h("div", { class: "wi-row" }, h("span", { class: "muted" }, t("wi.sites")), ...sites),
      h("div", { class: "wi-row" }, h("label", {}, t("wi.mode"), mode), start),
    );
    this.renderSweepBar();
    this.syncButtons();
  }

  private renderSweepBar(): void {
    if (!this.sweeping) {
      this.sweepBar.hidden = true;
      return;
    }
    const frac = this.sweepTotal > 0 ? this.sweepDone / this.sweepTotal : 0;
    const fill = h("div", { class: `wi-bar-fill${this.sweepTotal > 0 ? "" : " busy"}` });
    fill.style.width = this.sweepTotal > 0 ? `${Math.round(frac * 100)}%` : "30%";
    const cancel = h(
      "button",
      {
        type: "button",
        class: "btn danger small",
        "data-testid": "wi-sweep-cancel",
        onclick: () => this.sweeping?.abort(),
      },
      t("wi.cancel"),
    );
    this.sweepBar.replaceChildren(
      h(
        "div",
        {
          class: "wi-bar",
          role: "progressbar",
          "aria-valuemin": 0,
          "aria-valuemax": this.sweepTotal,
          "aria-valuenow": this.sweepDone,
        },
        fill,
      ),
      h(
        "span",
        { class: "muted small mono", "data-testid": "wi-sweep-count" },
        this.sweepTotal > 0 ? `${this.sweepDone} / ${this.sweepTotal}` : t("wi.sweep_running"),
      ),
      cancel,
    );
    this.sweepBar.hidden = false;
  }

  private async startSweep(): Promise<void> {
    const run = this.ready;
    if (!run?.id || !this.corrupted || this.sweeping || !this.sweepSites.size) return;
    const pos = this.position(run);
    const foil = foilAt(pos);
    const ctrl = new AbortController();
    this.sweeping = ctrl;
    this.sweepDone = 0;
    this.sweepTotal = 0;
    this.showMsg(this.sweepMsg, "");
    this.renderSweepBar();
    this.syncButtons();
    let result: SweepResult | null = null;
    let error: string | null = null;
    try {
      await api.sweep(
        run.id,
        {
          corrupted_run: this.corrupted,
          position: pos,
          sites: SWEEP_SITES.filter((s) => this.sweepSites.has(s)),
          mode: this.sweepMode,
          ...(foil && this.sweepFoil ? { foil: foil.id } : {}),
        },
        (type, data) => {
          if (type === "progress") {
            const d = data as SweepProgress;
            this.sweepDone = d.done;
            this.sweepTotal = d.total;
            this.renderSweepBar();
          } else if (type === "result") result = data as SweepResult;
          else if (type === "error") error = (data as { message?: string }).message ?? String(data);
        },
        ctrl.signal,
      );
      if (!result && !error) error = t("wi.sweep_no_result");
    } catch (e) {
      if ((e as Error).name === "AbortError" || ctrl.signal.aborted) {
        this.showMsg(this.sweepMsg, t("wi.sweep_cancelled"), false);
      } else error = message(e);
    } finally {
      this.sweeping = null;
      this.renderSweepBar();
      this.syncButtons();
    }
    if (error) this.showMsg(this.sweepMsg, `${t("wi.failed")}: ${error}`);
    if (result && app.run === run) {
      this.sweep = { runId: run.id, result };
      const r = result as SweepResult;
      if (!r.maps.some((m) => sweepValues(m, this.sweepShow)?.which === this.sweepShow))
        this.sweepShow = r.maps.some((m) => m.exact) ? "exact" : "fast";
      this.drawSweep();
    }
  }

  private drawSweep(): void {
    const run = app.run;
    const s = this.sweep;
    for (const site of SWEEP_SITES) if (!s || s.runId !== run?.id) this.drop(`sweep-${site}`);
    if (!s || s.runId !== run?.id) {
      this.sweepNotes.replaceChildren();
      return;
    }
    const r = s.result;
    const labels = run.tokens.map((tk) => tk.label);
    const both = r.maps.some((m) => m.exact) && r.maps.some((m) => m.fast);
    const notes = r.maps.map((m) => fastVsExact(m)).filter(Boolean);
    this.sweepNotes.replaceChildren(
      h(
        "div",
        { class: "wi-row" },
        h("span", { "data-testid": "wi-sweep-summary" }, `${sweepSummary(r)} · ${r.forwards} ${t("wi.forwards")}`),
        both
          ? segmented(
              [
                ["exact", t("wi.mode_exact")],
                ["fast", t("wi.mode_fast")],
              ],
              this.sweepShow,
              (v) => {
                this.sweepShow = v as SweepWhich;
                this.drawSweep();
              },
              "wi-sweep-show",
            )
          : null,
      ),
      ...r.maps
        .filter((m) => fastVsExact(m))
        .map((m) =>
          h("div", { "data-testid": "wi-sweep-error" }, `${t(`wi.sweep_${m.site}` as Key)}: ${fastVsExact(m)}`),
        ),
      ...(!notes.length && r.maps.every((m) => !m.exact) ? [h("div", {}, t("wi.fast_only"))] : []),
    );
    const shown = new Set(r.maps.map((m) => m.site));
    for (const site of SWEEP_SITES) if (!shown.has(site)) this.drop(`sweep-${site}`);
    for (const m of r.maps) {
      const which = sweepValues(m, this.sweepShow)?.which ?? this.sweepShow;
      const title = t("wi.sweep_title", { site: t(`wi.sweep_${m.site}` as Key), which: t(`wi.mode_${which}` as Key) });
      const deep = m.rows.length > 16;
      this.chartIn(
        this.sweepHost,
        `sweep-${m.site}`,
        sweepMapOption(m, r, labels, this.theme, { title, restored: t("wi.restored") }, this.sweepShow),
        deep ? "tall" : "short",
      );
    }
  }

  // --- steering -----------------------------------------------------------------------------------

  /** A side of the contrast pair has its text, or a saved run chosen instead. */
  private sideReady(side: "positive" | "negative"): boolean {
    return side === "positive"
      ? !!(this.positiveRun || this.positive.trim())
      : !!(this.negativeRun || this.negative.trim());
  }

  private renderSteerForm(): void {
    const L = this.layers;
    const text = (testid: string, value: string, ph: Key, set: (v: string) => void, hidden: boolean) => {
      const box = h("textarea", {
        class: "text",
        rows: 2,
        maxlength: 20000,
        placeholder: t(ph),
        "data-testid": testid,
        hidden,
        oninput: (e: Event) => {
          set((e.target as HTMLTextAreaElement).value);
          this.syncButtons();
        },
      });
      box.value = value; // a property: the attribute would not show in a textarea
      return box;
    };
    /** The typed text, or one of the model's saved runs (all its tokens) in its place. */
    const source = (value: string, set: (v: string) => void, testid: string) =>
      selectBox(
        [["", t("wi.typed_text")], ...this.modelRuns.map(runOption)],
        value,
        (v) => {
          set(v);
          this.renderSteerForm();
        },
        testid,
      );
    const layerBox = selectBox(
      Array.from({ length: L + 1 }, (_, i) => [String(i), `L${i}`]),
      String(this.steerLayer),
      (v) => (this.steerLayer = Number(v)),
      "wi-steer-layer",
    );
    const coef = h("input", {
      type: "number",
      class: "num",
      step: 0.5,
      value: String(this.coefficient),
      "data-testid": "wi-steer-coef",
      onchange: (e: Event) => {
        const v = Number((e.target as HTMLInputElement).value);
        if (Number.isFinite(v)) this.coefficient = v;
      },
    });
    const go = h(
      "button",
      {
        type: "button",
        class: "btn primary small",
        "data-testid": "wi-steer-go",
        onclick: () => void this.computeSteering(),
      },
      this.steerBusy ? t("view.loading") : t("wi.steer_go"),
    );
    this.steerForm.replaceChildren(
      h(
        "div",
        { class: "wi-stack" },
        h(
          "div",
          { class: "wi-row" },
          t("wi.positive"),
          source(this.positiveRun, (v) => (this.positiveRun = v), "wi-steer-pos-source"),
        ),
        text("wi-steer-pos", this.positive, "wi.positive_ph", (v) => (this.positive = v), !!this.positiveRun),
      ),
      h(
        "div",
        { class: "wi-stack" },
        h(
          "div",
          { class: "wi-row" },
          t("wi.negative"),
          source(this.negativeRun, (v) => (this.negativeRun = v), "wi-steer-neg-source"),
        ),
        text("wi-steer-neg", this.negative, "wi.negative_ph", (v) => (this.negative = v), !!this.negativeRun),
      ),
      h(
        "div",
        { class: "wi-row" },
        h("label", {}, t("ctl.layer"), layerBox),
        h("label", {}, t("wi.coefficient"), coef),
        go,
      ),
    );
    this.renderSteerResult();
    this.syncButtons();
  }

  private renderSteerResult(): void {
    const v = this.steering;
    if (!v) {
      this.steerOut.replaceChildren(h("div", { class: "muted small" }, t("wi.steer_hint")));
      return;
    }
    const add = h(
      "button",
      { type: "button", class: "btn small", "data-testid": "wi-steer-add", onclick: () => this.addSteering() },
      t("wi.steer_add", { coef: this.coefficient }),
    );
    const fact = (k: string, value: string, testid: string) =>
      h("div", { class: "fact" }, h("div", { class: "k" }, k), h("div", { class: "v", "data-testid": testid }, value));
    this.steerOut.replaceChildren(
      h(
        "div",
        { class: "facts" },
        fact(t("ctl.layer"), `L${v.layer}`, "wi-steer-layer-out"),
        fact("‖v‖", fmtNorm(v.norm), "wi-steer-norm"),
        fact(t("wi.positive_tokens"), String(v.positive_tokens), "wi-steer-pos-n"),
        fact(t("wi.negative_tokens"), String(v.negative_tokens), "wi-steer-neg-n"),
        fact(t("wi.width"), String(v.vector.length), "wi-steer-width"),
      ),
      h("div", { class: "wi-row" }, add),
    );
  }

  private async computeSteering(): Promise<void> {
    if (this.steerBusy || !this.sideReady("positive") || !this.sideReady("negative")) return;
    this.steerBusy = true;
    this.showMsg(this.steerMsg, "");
    this.renderSteerForm();
    try {
      this.steering = await api.steering({
        layer: this.steerLayer,
        ...(this.positiveRun ? { positive_run: this.positiveRun } : { positive: this.positive }),
        ...(this.negativeRun ? { negative_run: this.negativeRun } : { negative: this.negative }),
      });
    } catch (e) {
      this.fail(this.steerMsg, e);
    } finally {
      this.steerBusy = false;
      this.renderSteerForm();
      this.renderSiteForm();
    }
  }

  /** The vector as an intervention: added to the residual stream entering its layer, × the coefficient. */
  private addSteering(): void {
    const v = this.steering;
    if (!v) return;
    const at = this.formPositions();
    const iv: Intervention = {
      site: "residual",
      layer: v.layer,
      op: "add",
      factor: this.coefficient,
      vector: v.vector,
    };
    if ("positions" in at && at.positions) iv.positions = at.positions;
    if (!this.plan.some((p) => same(p, iv))) this.setPlan([...this.plan, iv]);
    this.showMsg(this.steerMsg, t("wi.steer_added"), false);
  }

  // --- chart slots in the tab's own hosts ---------------------------------------------------------

  private chartIn(host: HTMLElement, name: string, option: Option, cls = ""): Chart {
    let c = this.charts.get(name);
    if (!c || c.el.parentElement !== host) {
      c?.dispose();
      const el = h("div", { class: `chart-box ${cls}` });
      host.append(el);
      c = new Chart(`${this.id}.${name}`, el);
      this.charts.set(name, c);
    }
    c.el.className = `chart-box chart ${cls}`;
    c.set(option);
    return c;
  }

  private drop(name: string): void {
    const c = this.charts.get(name);
    if (!c) return;
    c.dispose();
    c.el.remove();
    this.charts.delete(name);
  }
}

const muted = (text: string) => h("span", { class: "muted small" }, text);
const fmtNorm = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(1) : x.toPrecision(4));

/** A run as a select option: its title (or prompt), its id's start. */
function runOption(r: RunRow): [string, string] {
  const name = r.title || r.prompt_preview || r.id;
  return [r.id, `${name.length > 40 ? `${name.slice(0, 39)}…` : name} · ${r.id.slice(0, 6)}`];
}
