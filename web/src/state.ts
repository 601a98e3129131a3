/**
 * The app's state and a tiny event bus. Views read `app` and re-render on the events they
 * care about; only controllers (left panel, generation) write to it.
 */
import type { ChatMessage, DoneEvent, GenerationRequest, ModelInfo, SamplingParams, Token, Trace } from "./api/types";
import type { ColorMode } from "./colors";

export type RunStatus = "streaming" | "done" | "cancelled" | "error";

export interface Run {
  id: string | null;
  tokens: Token[];
  promptLen: number;
  params: SamplingParams;
  model: ModelInfo | null;
  request: GenerationRequest;
  status: RunStatus;
  done: DoneEvent | null;
  title: string;
  parentId: string | null;
  forkPosition: number | null;
}

export type AppEvent =
  | "model" // model loaded / changed (the run model or its local copy)
  | "wantModel" // a view needs weights: point the user at the load box
  | "run" // a new run replaced the current one
  | "tokens" // tokens appended to the current run
  | "stats" // statistics arrived for tokens already shown (the prompt's, after the last token)
  | "status" // run status changed
  | "select" // the selected position changed
  | "colorMode"
  | "theme"
  | "lang"
  | "foil" // the foil or the watched tokens changed
  | "error";

export interface AppError {
  title: string;
  message: string;
}

/** A token the views explain against (the foil) or follow across layers (watched). */
export interface FocusToken {
  id: number;
  label: string;
}

/** Watched tokens besides the target and the foil (the logit lens follows at most 5 in all). */
export const MAX_WATCHED = 3;

export const app = {
  /** the model runs go to (a remote engine's, with `llmvis serve --backend openai`) */
  model: null as ModelInfo | null,
  /** the local weights the views compute with: `model` itself, or a remote model's local copy */
  localModel: null as ModelInfo | null,
  localHint: null as string | null, // remote engine: the local spec that would load its weights
  run: null as Run | null,
  /** chat history sent with the next chat turn */
  messages: [] as ChatMessage[],
  /** the left panel's sampling params, which the fork dialog offers; null without a left panel */
  params: null as SamplingParams | null,
  selected: null as number | null,
  colorMode: "default" as ColorMode,
  theme: "dark" as "dark" | "light",
  errors: [] as AppError[],
  /** the offline HTML report: no server behind the page */
  offline: false,
  /** the contrast token: views that explain a logit explain logit(target) − logit(foil) */
  foil: null as FocusToken | null,
  /** tokens whose rank the logit lens follows across layers (≤ MAX_WATCHED) */
  watched: [] as FocusToken[],
  /** the vocabulary the foil's and watched tokens' ids belong to (see vocabOf) */
  focusVocab: null as string | null,
};

const listeners = new Map<AppEvent, Set<() => void>>();

export function on(event: AppEvent, fn: () => void): void {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event)!.add(fn);
}

export function emit(event: AppEvent): void {
  for (const fn of listeners.get(event) ?? []) fn();
}

export function select(pos: number | null): void {
  const run = app.run;
  if (pos !== null && (!run || pos < 0 || pos >= run.tokens.length)) return;
  if (pos === app.selected) return;
  app.selected = pos;
  emit("select");
}

/** What identifies a model's vocabulary: token ids mean the same in runs with the same key. */
export function vocabOf(m: ModelInfo | null | undefined): string | null {
  return m ? (m.tokenizer_hash ?? m.path) : null;
}

/** Set (or clear, with null) the foil; it stops being watched. */
export function setFoil(tok: FocusToken | null): void {
  app.foil = tok;
  if (tok) {
    app.watched = app.watched.filter((w) => w.id !== tok.id);
    app.focusVocab = vocabOf(app.run?.model);
  }
  emit("foil");
}

/** Follow `tok` across layers, or stop following it; false when the list is full. */
export function toggleWatch(tok: FocusToken): boolean {
  if (app.watched.some((w) => w.id === tok.id)) app.watched = app.watched.filter((w) => w.id !== tok.id);
  else if (app.watched.length >= MAX_WATCHED) return false;
  else {
    app.watched = [...app.watched, tok];
    app.focusVocab = vocabOf(app.run?.model);
    if (app.foil?.id === tok.id) app.foil = null;
  }
  emit("foil");
  return true;
}

/** The foil for the prediction at `pos`: none when the token there is the foil itself. */
export function foilAt(pos: number): FocusToken | null {
  const tok = app.run?.tokens[pos];
  return app.foil && tok && tok.id !== app.foil.id ? app.foil : null;
}

/**
 * Ids the logit lens follows at `pos` besides the target and the foil: the watched tokens, or,
 * with none watched, the prediction's runners-up (its top candidates other than the target).
 */
export function followedAt(pos: number, foil: FocusToken | null): { ids: number[]; auto: boolean } {
  const tok = app.run?.tokens[pos];
  const skip = new Set([tok?.id, foil?.id]);
  const watched = app.watched.filter((w) => !skip.has(w.id)).map((w) => w.id);
  if (app.watched.length) return { ids: watched, auto: false };
  const top = (tok?.stats?.top ?? []).filter((c) => !skip.has(c.id)).slice(0, 2);
  return { ids: top.map((c) => c.id), auto: true };
}

// Token ids belong to a vocabulary: a run of a model with another one clears the choice.
on("run", () => {
  const key = vocabOf(app.run?.model);
  if (key === null || app.focusVocab === null || key === app.focusVocab) return;
  if (!app.foil && !app.watched.length) return;
  app.foil = null;
  app.watched = [];
  app.focusVocab = null;
  emit("foil");
});

export function showError(title: string, message: string): void {
  app.errors.push({ title, message });
  emit("error");
}

export function runFromTrace(trace: Trace): Run {
  return {
    id: trace.id ?? null,
    tokens: trace.tokens ?? [],
    promptLen: trace.prompt_len,
    params: trace.params,
    model: trace.model,
    request: trace.request,
    status: trace.finish_reason === "cancelled" ? "cancelled" : trace.finish_reason === "error" ? "error" : "done",
    done: null,
    title: trace.title ?? "",
    parentId: trace.parent_id ?? null,
    forkPosition: trace.fork_position ?? null,
  };
}
