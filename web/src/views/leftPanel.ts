/** Left panel: model loader, mode, sampling params, the input box, Generate / Stop. */
import type { SamplingParams } from "../api/types";
import { api } from "../api/client";
import { generate, isRunning, loadModel, newConversation, stop } from "../controller";
import { onLangChange, t } from "../i18n";
import { isRemote, loadSpec, shortName } from "../remote";
import { app, emit, on } from "../state";
import { h, segmented } from "./dom";
import { slider } from "./slider";

const STORE_KEY = "llmvis.left";

interface Saved {
  spec?: string;
  mode?: "chat" | "completion";
  temperature?: number;
  top_k?: number | null;
  top_p?: number;
  max_new_tokens?: number;
  seed?: number | null;
  input?: string;
  system?: string;
}

function loadSaved(): Saved {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY) ?? "{}") as Saved;
  } catch {
    return {};
  }
}

export function leftPanel(): HTMLElement {
  const saved = loadSaved();
  let mode: "chat" | "completion" = saved.mode ?? "chat";

  // --- model -------------------------------------------------------------------------
  // Local mode: the load box loads the model runs use. Remote mode (runs go to an engine):
  // the engine is shown above, and the load box loads a local copy for the weight-based views.
  const specInput = h("input", {
    type: "text",
    class: "text",
    "data-testid": "model-spec",
    spellcheck: false,
    value: saved.spec ?? "",
  });
  const loadBtn = h("button", { type: "button", class: "btn", "data-testid": "load" });
  const loadRow = h("div", { class: "row" }, specInput, loadBtn);
  const bar = h("div", { class: "progress-fill" });
  const progress = h("div", { class: "progress", hidden: true }, bar);
  const status = h("div", { class: "model-status", "data-testid": "model-status" });
  const info = h("div", { class: "model-info", "data-testid": "model-info" });
  const copyHint = h("div", { class: "muted small", "data-testid": "local-copy-hint", hidden: true });

  /** What the load-time self-check found: "internals verified", or which views are missing and why. */
  const internalsLine = (m: NonNullable<typeof app.model>): HTMLElement => {
    const report = m.internals;
    const missing = Object.entries(report?.unavailable ?? {});
    const text = !report
      ? ""
      : missing.length === 0
        ? t("model.verified", { family: report.family })
        : t("model.unavailable", { views: missing.map(([v]) => v).join(", ") });
    return h(
      "div",
      {
        class: `small ${report?.verified && missing.length === 0 ? "ok" : "muted"}`,
        "data-testid": "model-internals",
        title: missing.map(([v, why]) => `${v}: ${why}`).join("\n"),
      },
      text,
    );
  };

  const showModel = () => {
    const m = app.model;
    info.textContent = "";
    const remote = isRemote(m);
    copyHint.hidden = !remote;
    loadBtn.textContent = remote ? t("model.load_copy") : t("model.load");
    if (!m) return;
    if (remote) {
      copyHint.before(info); // the engine first, then the load box for its local copy
      const shape = [
        m.architecture,
        m.layers ? `${m.layers} ${t("model.layers")}` : "",
        m.heads ? `${m.heads}/${m.kv_heads} ${t("model.heads")}` : "",
      ];
      info.append(
        h("div", { class: "model-name", title: m.name }, shortName(m.name)),
        h(
          "div",
          { class: "muted small", "data-testid": "model-remote", title: m.path },
          t("model.remote", { host: m.device }),
        ),
        h("div", { class: "muted small" }, shape.filter(Boolean).join(" · ")),
      );
      const local = app.localModel;
      status.textContent = local ? t("model.local_copy", { name: local.name }) : t("model.no_copy");
      status.className = `model-status ${local ? "ok" : ""}`;
      return;
    }
    status.after(info);
    const params = m.parameters >= 1e9 ? `${(m.parameters / 1e9).toFixed(2)}B` : `${(m.parameters / 1e6).toFixed(1)}M`;
    info.append(
      h("div", { class: "model-name", title: m.path }, m.name),
      h(
        "div",
        { class: "muted small" },
        [
          m.architecture,
          `${m.layers} ${t("model.layers")}`,
          `${m.heads}/${m.kv_heads} ${t("model.heads")}`,
          `${params} ${t("model.params")}`,
          m.dtype,
          m.device,
        ].join(" · "),
      ),
      internalsLine(m),
    );
    status.textContent = t("model.loaded");
    status.className = "model-status ok";
    if (!specInput.value) specInput.value = loadSpec(m);
  };
  const doLoad = async () => {
    const spec = specInput.value.trim() || "smollm2";
    loadBtn.disabled = true;
    progress.hidden = false;
    await loadModel(spec, (p) => {
      bar.style.width = `${Math.round(p.fraction * 100)}%`;
      status.textContent = p.stage;
      status.className = `model-status ${p.state === "error" ? "err" : p.state === "ready" ? "ok" : ""}`;
    });
    loadBtn.disabled = false;
    progress.hidden = true;
    if (app.model && status.classList.contains("ok")) showModel();
  };
  loadBtn.addEventListener("click", doLoad);
  specInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") doLoad();
  });
  on("model", showModel);
  // A view needs weights (409): bring the user to the load box, suggesting the run's model.
  on("wantModel", () => {
    const m = app.run?.model;
    if (!specInput.value.trim() && m) specInput.value = loadSpec(m, app.localHint);
    specInput.focus();
    specInput.select();
  });

  // The server may already be loading its --model at startup: follow it.
  const follow = async () => {
    try {
      const st = await api.model();
      // A remote engine is ready at once; a local copy may be loading beside it.
      if (st.model && (st.state === "ready" || isRemote(st.model))) {
        const local = st.local ?? null;
        app.localHint = st.local_hint ?? null;
        if (JSON.stringify([app.model, app.localModel]) !== JSON.stringify([st.model, local])) {
          app.model = st.model;
          app.localModel = local;
          emit("model");
        }
        if (st.state === "ready") return;
      }
      if (st.state === "loading" && st.loading) {
        progress.hidden = false;
        bar.style.width = `${Math.round(st.loading.fraction * 100)}%`;
        status.textContent = `${st.loading.spec}: ${st.loading.stage}`;
        setTimeout(follow, 700);
        return;
      }
      progress.hidden = true;
      status.textContent = st.last_error ?? t("model.none");
      status.className = `model-status ${st.last_error ? "err" : ""}`;
    } catch {
      setTimeout(follow, 2000);
    }
  };
  follow();

  // --- mode and params -----------------------------------------------------------------
  const modeBox = segmented(
    [
      ["chat", ""],
      ["completion", ""],
    ],
    mode,
    (v) => {
      mode = v as typeof mode;
      systemInput.hidden = mode !== "chat";
      newConversation();
      persist();
    },
    "mode",
  );
  const temperature = slider({
    id: "temperature",
    label: () => t("params.temperature"),
    min: 0,
    max: 2,
    step: 0.05,
    value: saved.temperature ?? 0.7,
  });
  const topK = slider({
    id: "top-k",
    label: () => t("params.top_k"),
    min: 0,
    max: 100,
    step: 1,
    value: saved.top_k === undefined ? 50 : (saved.top_k as number),
    off: { value: 0, label: () => t("params.top_k_off") },
  });
  if (saved.top_k === null) topK.set(null);
  const topP = slider({
    id: "top-p",
    label: () => t("params.top_p"),
    min: 0.01,
    max: 1,
    step: 0.01,
    value: saved.top_p ?? 0.95,
  });
  const maxTokens = slider({
    id: "max-tokens",
    label: () => t("params.max_tokens"),
    min: 16,
    max: 512,
    step: 1,
    value: saved.max_new_tokens ?? 128,
  });
  const seed = slider({
    id: "seed",
    label: () => t("params.seed"),
    min: -1,
    max: 1000,
    step: 1,
    value: saved.seed ?? -1,
    off: { value: -1, label: () => t("params.seed_random") },
    boxMax: 2 ** 31 - 1,
  });
  if (saved.seed === undefined || saved.seed === null) seed.set(null);
  const sliders = [temperature, topK, topP, maxTokens, seed];

  const params = (): SamplingParams => ({
    temperature: temperature.get() ?? 0.7,
    top_k: topK.get(),
    top_p: topP.get() ?? 1,
    max_new_tokens: maxTokens.get() ?? 128,
    seed: seed.get(),
    top_n: 10,
  });
  // Kept in app state for the fork dialog. Listening on each slider's box: the slider's own
  // listeners, on the inputs inside it, have updated its value by the time the event bubbles here.
  const publishParams = () => {
    app.params = params();
  };
  publishParams();
  for (const s of sliders) for (const type of ["input", "change"]) s.el.addEventListener(type, publishParams);

  // --- input -------------------------------------------------------------------------------
  const systemInput = h("textarea", {
    class: "text system",
    rows: 1,
    "data-testid": "system",
    hidden: mode !== "chat",
  });
  systemInput.value = saved.system ?? "";
  const input = h("textarea", { class: "text prompt", rows: 5, "data-testid": "prompt" });
  input.value = saved.input ?? "";
  const genBtn = h("button", { type: "button", class: "btn primary", "data-testid": "generate" });
  const stopBtn = h("button", { type: "button", class: "btn danger", "data-testid": "stop", disabled: true });
  const clearBtn = h("button", { type: "button", class: "btn ghost", "data-testid": "new-conversation" });

  const send = () => {
    void generate(
      input.value,
      mode,
      systemInput.value,
      params(),
      () => {
        input.value = "";
        persist();
      },
      (text) => {
        if (!input.value) input.value = text;
        persist();
      },
    );
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  genBtn.addEventListener("click", send);
  stopBtn.addEventListener("click", stop);
  clearBtn.addEventListener("click", newConversation);
  on("status", () => {
    genBtn.disabled = isRunning();
    stopBtn.disabled = !isRunning();
    genBtn.textContent = isRunning() ? t("gen.generating") : t("gen.generate");
  });

  const persist = () => {
    const s: Saved = { spec: specInput.value, mode, input: input.value, system: systemInput.value, ...params() };
    localStorage.setItem(STORE_KEY, JSON.stringify(s));
  };
  for (const el of [input, systemInput, specInput]) el.addEventListener("input", persist);
  for (const s of sliders) s.el.addEventListener("change", persist);

  const section = (key: Parameters<typeof t>[0], ...children: Node[]) =>
    h("section", { class: "card" }, h("h2", { "data-i18n": key }), ...children);

  const el = h(
    "aside",
    { class: "left", "data-testid": "left-panel" },
    section("model.title", copyHint, loadRow, progress, status, info),
    section("mode.title", modeBox),
    section("params.title", ...sliders.map((s) => s.el)),
    h(
      "section",
      { class: "card grow" },
      systemInput,
      input,
      h("div", { class: "row buttons" }, genBtn, stopBtn),
      h("div", { class: "row" }, clearBtn),
    ),
  );

  const relabel = () => {
    loadBtn.textContent = isRemote(app.model) ? t("model.load_copy") : t("model.load");
    copyHint.textContent = t("model.copy_hint");
    specInput.placeholder = t("model.placeholder");
    input.placeholder = t("input.placeholder");
    systemInput.placeholder = t("input.system");
    const [chat, comp] = modeBox.querySelectorAll("button");
    chat.textContent = t("mode.chat");
    comp.textContent = t("mode.completion");
    genBtn.textContent = isRunning() ? t("gen.generating") : t("gen.generate");
    stopBtn.textContent = t("gen.stop");
    clearBtn.textContent = t("gen.clear");
    for (const s of sliders) s.relabel();
    if (app.model) showModel();
    else if (!status.textContent) status.textContent = t("model.none");
  };
  relabel();
  onLangChange(relabel);
  return el;
}
