import { afterEach, describe, expect, it, vi } from "vitest";
import { api } from "./api/client";
import type { SamplingParams } from "./api/types";
import { forkRequest } from "./forkRequest";

const params: SamplingParams = { temperature: 1.3, top_k: null, top_p: 0.9, max_new_tokens: 20, seed: 7, top_n: 10 };

describe("forkRequest", () => {
  it("sends one token as token_id (what older servers take)", () => {
    expect(forkRequest(12, [42], null)).toEqual({ position: 12, token_id: 42, params: null });
  });

  it("sends several tokens as token_ids, in order, with the new params", () => {
    const ids = [5, 9, 5];
    const body = forkRequest(3, ids, params);
    expect(body).toEqual({ position: 3, token_ids: [5, 9, 5], params });
    expect(body).not.toHaveProperty("token_id");
    ids.push(1);
    expect(body.token_ids).toEqual([5, 9, 5]); // a copy
  });

  it("refuses no token at all", () => {
    expect(() => forkRequest(3, [], null)).toThrow();
    expect(() => forkRequest(3, [], null, [])).toThrow();
  });

  it("generates under interventions with no token forced", () => {
    const plan = [{ site: "head" as const, layer: 1, head: 2, op: "zero" as const }];
    const body = forkRequest(7, [], null, plan);
    expect(body).toEqual({ position: 7, params: null, interventions: plan });
    expect(body).not.toHaveProperty("token_id");
    expect(body).not.toHaveProperty("token_ids");
    expect(body.interventions![0]).not.toBe(plan[0]); // a copy
  });

  it("forces a token and intervenes at once", () => {
    const plan = [{ site: "residual" as const, layer: 0, op: "add" as const, factor: 4, vector: [1, 2] }];
    expect(forkRequest(5, [9], params, plan)).toEqual({ position: 5, token_id: 9, params, interventions: plan });
    // no interventions: the body stays what older servers take
    expect(forkRequest(5, [9], params, [])).not.toHaveProperty("interventions");
  });
});

describe("api.tokenize", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("puts the text in the query string, encoded", async () => {
    const fetch = vi.fn(async () => new Response(JSON.stringify({ tokens: [{ id: 1, label: "a" }] }), { status: 200 }));
    vi.stubGlobal("fetch", fetch);
    const out = await api.tokenize(" a&b=ç?");
    expect(out.tokens).toEqual([{ id: 1, label: "a" }]);
    const url = new URL(String((fetch.mock.calls[0] as unknown[])[0]), "http://x");
    expect(url.pathname).toBe("/api/tokenize");
    expect(url.searchParams.get("text")).toBe(" a&b=ç?");
  });
});
