import { describe, expect, it, vi } from "vitest";
import { ApiError, SseParser, errorFromResponse, postSse } from "./sse";

describe("SseParser", () => {
  it("parses the server's framing", () => {
    const p = new SseParser();
    const out = p.push('event: token\ndata: {"a":1}\n\nevent: done\ndata: {}\n\n');
    expect(out).toEqual([
      { event: "token", data: '{"a":1}' },
      { event: "done", data: "{}" },
    ]);
  });

  it("joins lines split across chunks anywhere", () => {
    const text = 'event: start\ndata: {"run_id":"abc"}\n\nevent: token\ndata: {"x":"é"}\n\n';
    for (let cut = 1; cut < text.length; cut++) {
      const p = new SseParser();
      const out = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut)), ...p.finish()];
      expect(out.map((m) => m.event)).toEqual(["start", "token"]);
      expect(JSON.parse(out[1].data)).toEqual({ x: "é" });
    }
  });

  it("accepts CRLF, comments, multi-line data and a missing final blank line", () => {
    const p = new SseParser();
    const out = [
      ...p.push(": keep-alive\r\nevent: progress\r\ndata: a\r\ndata: b\r\n\r"),
      ...p.push("\nevent: done\ndata: 1"),
      ...p.finish(),
    ];
    expect(out).toEqual([
      { event: "progress", data: "a\nb" },
      { event: "done", data: "1" },
    ]);
  });

  it("defaults the event name to message", () => {
    expect(new SseParser().push("data: x\n\n")).toEqual([{ event: "message", data: "x" }]);
  });
});

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
}

describe("postSse", () => {
  it("posts JSON and yields parsed events in order", async () => {
    const fetchMock = vi.fn(
      async () => new Response(streamOf(["event: start\nda", 'ta: {"n":1}\n\nevent: done\ndata: {"n":2}\n\n'])),
    );
    const seen: [string, unknown][] = [];
    await postSse(
      "/api/runs",
      { prompt: "hi" },
      (t, d) => seen.push([t, d]),
      undefined,
      fetchMock as unknown as typeof fetch,
    );
    expect(seen).toEqual([
      ["start", { n: 1 }],
      ["done", { n: 2 }],
    ]);
    const init = (fetchMock.mock.calls[0] as unknown as [string, RequestInit])[1];
    expect(init.method).toBe("POST");
    expect(JSON.parse(init.body as string)).toEqual({ prompt: "hi" });
  });

  it("rejects with the server's detail and Retry-After on 429", async () => {
    const fetchMock = async () =>
      new Response(JSON.stringify({ detail: "busy: a run is in progress" }), {
        status: 429,
        headers: { "Retry-After": "2" },
      });
    const err = await postSse("/x", {}, () => {}, undefined, fetchMock as typeof fetch).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(429);
    expect(err.message).toBe("busy: a run is in progress");
    expect(err.retryAfter).toBe(2);
  });

  it("formats pydantic validation errors", async () => {
    const fetchMock = async () =>
      new Response(JSON.stringify({ detail: [{ loc: ["body", "params", "temperature"], msg: "too big" }] }), {
        status: 422,
      });
    const err = await postSse("/x", {}, () => {}, undefined, fetchMock as typeof fetch).catch((e) => e);
    expect(err.message).toBe("params.temperature: too big");
    expect(err.kind).toBeNull();
  });

  it("keeps the error type, so a view a model cannot give is told apart", async () => {
    const body = { detail: [{ loc: ["query"], msg: "layer 0 has no softmax attention", type: "not_available" }] };
    const fetchMock = async () => new Response(JSON.stringify(body), { status: 422 });
    const err = await errorFromResponse(await fetchMock());
    expect(err.kind).toBe("not_available");
    expect(err.message).toBe("query: layer 0 has no softmax attention");
  });
});
