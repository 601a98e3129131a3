/**
 * What the buttons do: load a model, generate (chat turn or completion), stop, fork.
 * Streams events into `app` and emits; views only listen.
 */
import { ApiError, api } from "./api/client";
import type {
  DoneEvent,
  GenerationRequest,
  ModelInfo,
  PromptStatsEvent,
  Intervention,
  SamplingParams,
  StartEvent,
  TokenEvent,
  Trace,
} from "./api/types";
import { forkRequest } from "./forkRequest";
import { applyPromptStats } from "./promptStats";
import { isRemote } from "./remote";
import { t } from "./i18n";
import { app, emit, type Run, runFromTrace, select, showError } from "./state";

let running: AbortController | null = null;

export interface LoadProgress {
  stage: string;
  fraction: number;
  state: "loading" | "ready" | "error";
}

export async function loadModel(spec: string, onProgress: (p: LoadProgress) => void): Promise<void> {
  onProgress({ stage: t("model.loading"), fraction: 0, state: "loading" });
  let failed = false;
  try {
    await api.loadModel(spec, (type, data) => {
      if (type === "progress") {
        const d = data as { stage: string; fraction: number };
        onProgress({ stage: d.stage, fraction: d.fraction, state: "loading" });
      } else if (type === "done") {
        const loaded = (data as { model: ModelInfo }).model;
        // With a remote engine, runs stay on the engine: what loaded is its local copy.
        if (!isRemote(app.model)) app.model = loaded;
        app.localModel = loaded;
        onProgress({ stage: t("model.loaded"), fraction: 1, state: "ready" });
        emit("model");
      } else if (type === "error") {
        failed = true;
        const msg = (data as { message: string }).message;
        onProgress({ stage: msg, fraction: 0, state: "error" });
        showError(t("err.load"), msg);
      }
    });
  } catch (e) {
    if (failed) return;
    const msg = e instanceof ApiError && e.status === 429 ? t("err.busy") : (e as Error).message;
    onProgress({ stage: msg, fraction: 0, state: "error" });
    showError(t("err.load"), msg);
  }
}

export function isRunning(): boolean {
  return running !== null;
}

function newRun(request: GenerationRequest, start: StartEvent, parent: { id: string; position: number } | null): Run {
  return {
    id: start.run_id,
    tokens: [...start.prompt_tokens],
    promptLen: start.prompt_tokens.length,
    params: start.params,
    model: start.model,
    request,
    status: "streaming",
    done: null,
    title: "",
    parentId: parent?.id ?? null,
    forkPosition: parent?.position ?? null,
  };
}

/**
 * Stream one run into `app.run`. `start` issues the request; the returned promise resolves
 * with the finished run (or null when it failed before starting).
 */
async function streamRun(
  request: GenerationRequest,
  start: (onEvent: (type: string, data: unknown) => void, signal: AbortSignal) => Promise<void>,
  parent: { id: string; position: number } | null,
  onStarted?: () => void,
): Promise<Run | null> {
  if (running) return null;
  const ctrl = new AbortController();
  running = ctrl;
  emit("status");
  let run: Run | null = null;
  try {
    await start((type, data) => {
      if (type === "start") {
        run = newRun(request, data as StartEvent, parent);
        app.run = run;
        app.selected = null;
        emit("run");
        onStarted?.();
      } else if (type === "token" && run) {
        run.tokens.push((data as TokenEvent).token);
        emit("tokens");
      } else if (type === "prompt_stats" && run) {
        applyPromptStats(run.tokens, data as PromptStatsEvent);
        emit("stats");
      } else if (type === "done" && run) {
        run.done = data as DoneEvent;
        run.status = run.done.finish_reason === "cancelled" ? "cancelled" : "done";
      } else if (type === "error") {
        const msg = (data as { message: string }).message;
        if (run) run.status = "error";
        showError(t("err.generate"), msg);
      }
    }, ctrl.signal);
    if (run && (run as Run).status === "streaming") (run as Run).status = "done";
  } catch (e) {
    const r = run as Run | null;
    if ((e as Error).name === "AbortError") {
      if (r) r.status = "cancelled";
    } else {
      if (r) r.status = "error";
      const busy = e instanceof ApiError && e.status === 429;
      showError(busy ? t("err.busy") : t("err.generate"), (e as Error).message);
    }
  } finally {
    running = null;
    emit("status");
  }
  return run;
}

/** Send the input: a new chat turn (history kept) or a completion. Returns true when it ran. */
export async function generate(
  input: string,
  mode: "chat" | "completion",
  system: string,
  params: SamplingParams,
  clearInput: () => void,
  restoreInput: (text: string) => void,
): Promise<boolean> {
  if (!input.trim() || running) return false;
  const request: GenerationRequest =
    mode === "chat"
      ? {
          mode,
          prompt: "",
          messages: [...app.messages, { role: "user", content: input }],
          system: system.trim() || null,
          params,
        }
      : { mode, prompt: input, params };
  const run = await streamRun(request, (on, signal) => api.generate(request, on, signal), null, clearInput);
  if (!run) {
    restoreInput(input);
    return false;
  }
  if (mode === "chat" && run.status !== "error") {
    const text =
      run.done?.text ??
      run.tokens
        .slice(run.promptLen)
        .map((tk) => tk.text)
        .join("");
    app.messages = [...(request.messages ?? []), { role: "assistant", content: text }];
  }
  if (run.status === "error" && run.tokens.length === run.promptLen) restoreInput(input);
  return true;
}

export function stop(): void {
  running?.abort();
}

export function newConversation(): void {
  app.messages = [];
  app.run = null;
  app.selected = null;
  emit("run");
}

/**
 * Fork the current run at `position` with `tokenIds` forced from there (none: generate under
 * `interventions`); the new run becomes current.
 */
export async function fork(
  position: number,
  tokenIds: number[],
  params: SamplingParams | null,
  interventions: Intervention[] = [],
): Promise<{ parent: Run; child: Run | null } | null> {
  const parent = app.run;
  if (!parent?.id) return null;
  const parentId = parent.id;
  const request: GenerationRequest = { ...parent.request };
  const child = await streamRun(
    request,
    (on, signal) => api.fork(parentId, forkRequest(position, tokenIds, params, interventions), on, signal),
    { id: parentId, position },
  );
  if (child) select(position);
  return { parent, child };
}

/** Show a saved run (history, tests): it becomes the current run and the chat to continue. */
export function openTrace(trace: Trace): void {
  const run = runFromTrace(trace);
  app.run = run;
  app.selected = null;
  if (trace.request.mode === "chat") {
    const text = run.tokens
      .slice(run.promptLen)
      .filter((tk) => !tk.special)
      .map((tk) => tk.text)
      .join("");
    app.messages = [...(trace.request.messages ?? []), { role: "assistant", content: text }];
  } else app.messages = [];
  emit("run");
  emit("status");
}
