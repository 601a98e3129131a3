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
  | "error";

export interface AppError {
  title: string;
  message: string;
}

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
