/**
 * Server-sent events over a POST response.
 *
 * EventSource only does GET, so the client reads the fetch body as a stream and feeds the
 * text to `SseParser`, which splits it into events. Framing (from the server):
 *   `event: <type>\ndata: <json>\n\n`
 * Lines may be split anywhere across chunks, several `data:` lines join with "\n",
 * lines starting with ":" are comments (keep-alives), and "\r\n" line ends are accepted.
 */

export interface SseMessage {
  event: string;
  data: string;
}

export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];

  /** Feed a chunk of text; returns the events it completed. */
  push(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const out: SseMessage[] = [];
    let nl: number;
    while ((nl = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      // A lone "\r" at the very end may be the first half of "\r\n": wait for more text.
      if (this.buffer[nl] === "\r" && nl === this.buffer.length - 1) break;
      const width = this.buffer.startsWith("\r\n", nl) ? 2 : 1;
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + width);
      const msg = this.line(line);
      if (msg) out.push(msg);
    }
    return out;
  }

  /** End of stream: an event without its trailing blank line still counts. */
  finish(): SseMessage[] {
    const out = this.buffer ? this.push("\n") : [];
    const last = this.line("");
    if (last) out.push(last);
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === "") {
      if (this.data.length === 0 && this.event === "") return null;
      const msg = { event: this.event || "message", data: this.data.join("\n") };
      this.event = "";
      this.data = [];
      return msg;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    return null;
  }
}

/** An HTTP error with the server's message (FastAPI's `detail`) and status. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly retryAfter: number | null = null,
    /** the server's error type (the first detail's `type`): "not_available" for a view a model cannot give */
    readonly kind: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** Read the best message out of an error response body. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`.trim();
  let kind: string | null = null;
  try {
    const text = await res.text();
    try {
      const body = JSON.parse(text) as { detail?: unknown; message?: unknown };
      const detail = body.detail ?? body.message;
      if (typeof detail === "string") message = detail;
      else if (Array.isArray(detail) && detail.length > 0) {
        kind = typeof detail[0]?.type === "string" ? detail[0].type : null;
        message = detail
          .map((d: { loc?: unknown[]; msg?: string }) =>
            [d.loc?.filter((p) => p !== "body").join("."), d.msg].filter(Boolean).join(": "),
          )
          .join("; ");
      } else if (detail !== undefined) message = JSON.stringify(detail);
    } catch {
      if (text) message = text.slice(0, 300);
    }
  } catch {
    /* body unreadable: keep the status line */
  }
  const ra = res.headers.get("Retry-After");
  return new ApiError(message, res.status, ra ? Number(ra) : null, kind);
}

/**
 * POST `body` as JSON and call `onEvent` for each SSE event of the response, parsed as JSON.
 * Resolves when the stream ends; rejects with ApiError on an HTTP error, or with the fetch's
 * AbortError when `signal` aborts (the server then cancels the work).
 */
export async function postSse(
  url: string,
  body: unknown,
  onEvent: (type: string, data: unknown) => void,
  signal?: AbortSignal,
  fetchImpl: typeof fetch = fetch,
): Promise<void> {
  const res = await fetchImpl(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body ?? {}),
    signal,
  });
  if (!res.ok) throw await errorFromResponse(res);
  if (!res.body) throw new ApiError("the server sent no stream", res.status);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  const emit = (msgs: SseMessage[]) => {
    for (const m of msgs) {
      let data: unknown = m.data;
      try {
        data = JSON.parse(m.data);
      } catch {
        /* not JSON: pass the text */
      }
      onEvent(m.event, data);
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    emit(parser.push(value));
  }
  emit(parser.finish());
}
