/**
 * The HTTP API, one small function per endpoint. The shapes are the server's pydantic models
 * (src/llmvis/server/schemas.py, src/llmvis/analyses/), via the generated schema.d.ts.
 */
import { ApiError, errorFromResponse, postSse } from "./sse";
import type {
  Deleted,
  ForkRequest,
  GenerationRequest,
  Health,
  ModelState,
  RunList,
  RunProgress,
  RunRow,
  SteeringRequest,
  SteeringVector,
  SweepRequest,
  Tokenized,
  Trace,
  WhatIfRequest,
  WhatIfResult,
} from "./types";
import type { ViewName, ViewParams, ViewResult } from "./views";

export { ApiError };
export type { RunRow };

const BASE = "";

async function getJson<T>(path: string, signal?: AbortSignal, init?: RequestInit): Promise<T> {
  let res: Response;
  try {
    res = await fetch(BASE + path, { signal, ...init });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError("lost the connection to the server", 0);
  }
  if (!res.ok) throw await errorFromResponse(res);
  return (await res.json()) as T;
}

function sendJson<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  return getJson<T>(path, signal, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** postSse, with a network failure turned into an ApiError the UI can show. */
async function stream(
  path: string,
  body: unknown,
  onEvent: (type: string, data: unknown) => void,
  signal?: AbortSignal,
) {
  try {
    await postSse(BASE + path, body, onEvent, signal);
  } catch (e) {
    if (e instanceof ApiError || (e as Error).name === "AbortError") throw e;
    throw new ApiError(`lost the connection to the server (${(e as Error).message})`, 0);
  }
}

export const api = {
  health: (signal?: AbortSignal) => getJson<Health>("/api/health", signal),
  model: () => getJson<ModelState>("/api/model"),
  loadModel: (spec: string, onEvent: (type: string, data: unknown) => void, signal?: AbortSignal) =>
    stream("/api/model/load", { spec }, onEvent, signal),
  generate: (req: GenerationRequest, onEvent: (type: string, data: unknown) => void, signal?: AbortSignal) =>
    stream("/api/runs", req, onEvent, signal),
  fork: (runId: string, body: ForkRequest, onEvent: (type: string, data: unknown) => void, signal?: AbortSignal) =>
    stream(`/api/runs/${encodeURIComponent(runId)}/fork`, body, onEvent, signal),
  tokenize: (text: string, signal?: AbortSignal) =>
    getJson<Tokenized>(`/api/tokenize?${new URLSearchParams({ text })}`, signal),
  runs: (search = "", limit = 200) =>
    getJson<RunList>(
      `/api/runs?${new URLSearchParams(search ? { search, limit: String(limit) } : { limit: String(limit) })}`,
    ),
  run: (id: string) => getJson<Trace>(`/api/runs/${encodeURIComponent(id)}`),
  rename: (id: string, title: string) => sendJson<RunRow>("PATCH", `/api/runs/${encodeURIComponent(id)}`, { title }),
  remove: (id: string) => sendJson<Deleted>("DELETE", `/api/runs/${encodeURIComponent(id)}`),
  restore: (id: string) => sendJson<unknown>("POST", `/api/runs/${encodeURIComponent(id)}/restore`),
  view: <N extends ViewName>(runId: string, view: N, params: ViewParams<N>, signal?: AbortSignal) => {
    const q = new URLSearchParams();
    // lists go as repeated keys (watch=3&watch=4), as FastAPI reads them
    for (const [k, v] of Object.entries(params as Record<string, unknown>)) {
      if (v === null || v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) q.append(k, String(x));
      else q.set(k, String(v));
    }
    return getJson<ViewResult<N>>(`/api/runs/${encodeURIComponent(runId)}/views/${view}?${q}`, signal);
  },
  /** What the run's views being computed now have done (a page waiting on one shows it). */
  progress: (runId: string, signal?: AbortSignal) =>
    getJson<RunProgress>(`/api/runs/${encodeURIComponent(runId)}/progress`, signal),
  /** Ablate and look: the run's tokens forced through the model with `body.interventions` applied. */
  whatIf: (runId: string, body: WhatIfRequest, signal?: AbortSignal) =>
    sendJson<WhatIfResult>("POST", `/api/runs/${encodeURIComponent(runId)}/whatif`, body, signal),
  /** An activation-patching sweep, streamed: `progress` {done, total}, then `result` or `error`; abort cancels it. */
  sweep: (runId: string, body: SweepRequest, onEvent: (type: string, data: unknown) => void, signal?: AbortSignal) =>
    stream(`/api/runs/${encodeURIComponent(runId)}/sweep`, body, onEvent, signal),
  /** A steering vector from a contrast pair (mean residual of the positive text − of the negative). */
  steering: (body: SteeringRequest, signal?: AbortSignal) =>
    sendJson<SteeringVector>("POST", "/api/steering", body, signal),
  exportUrl: (id: string, kind: "json" | "csv" | "html") =>
    `${BASE}/api/runs/${encodeURIComponent(id)}/${kind === "html" ? "report.html" : `export.${kind}`}`,
};
