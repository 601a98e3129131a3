import { describe, expect, it } from "vitest";
import type { Candidate, ModelInfo, TokenStats } from "./api/types";
import { entropyText, isBounded, isRemote, loadSpec, missingMass, rankText, shortName } from "./remote";

const top = (n: number): Candidate[] =>
  Array.from({ length: n }, (_, i) => ({ id: i, label: `t${i}`, logit: -i, raw_prob: 0.1 }));
const local: TokenStats = { raw_prob: 0.5, rank: 3, raw_entropy: 1.23456, logit_gap: 1, gap_to_top1: 2, top: top(3) };
const remote = (rank: number): TokenStats => ({
  raw_prob: 0.01,
  rank,
  raw_entropy: 1.5,
  entropy_upper: 2.75,
  missing_mass: 0.125,
  logit_gap: 1,
  gap_to_top1: 2,
  top: top(4),
});

describe("remote token statistics", () => {
  it("leaves local statistics as they were", () => {
    expect(isBounded(local)).toBe(false);
    expect(isBounded({ ...local, missing_mass: null, entropy_upper: null })).toBe(false);
    expect(entropyText(local)).toBe("1.235 nats");
    expect(rankText(local)).toBe("3");
    expect(missingMass(local)).toBeNull();
  });

  it("shows the entropy bounds and the mass outside the top-N", () => {
    expect(isBounded(remote(0))).toBe(true);
    expect(entropyText(remote(0))).toBe("≥ 1.5 nats (≤ 2.75)");
    expect(missingMass(remote(0))).toEqual({ n: 4, text: "12.5%" });
  });

  it("reads rank == N as outside the returned top-N", () => {
    expect(rankText(remote(2))).toBe("2");
    expect(rankText(remote(4))).toBe("≥ 4");
    // A local rank past the stored top-N is exact.
    expect(rankText({ ...local, rank: 3 })).toBe("3");
  });
});

describe("model names", () => {
  it("shortens filesystem paths to the file name only", () => {
    expect(shortName("/home/me/.cache/llm/SmolLM2-135M-Instruct.Q8_0.gguf")).toBe("SmolLM2-135M-Instruct.Q8_0.gguf");
    expect(shortName("./models/qwen/")).toBe("qwen");
    expect(shortName("C:\\models\\m.gguf")).toBe("m.gguf");
    expect(shortName("HuggingFaceTB/SmolLM2-135M-Instruct")).toBe("HuggingFaceTB/SmolLM2-135M-Instruct");
    expect(shortName("tiny-llama")).toBe("tiny-llama");
  });

  it("knows a remote model and what loads its weights", () => {
    const model = (source: ModelInfo["source"], name: string, path: string) => ({ source, name, path }) as ModelInfo;
    expect(isRemote(null)).toBe(false);
    expect(isRemote(model("remote", "m", "http://h:1/v1"))).toBe(true);
    expect(loadSpec(model("remote", "m.gguf", "http://h:1/v1"))).toBe("m.gguf");
    expect(loadSpec(model("remote", "m.gguf", "http://h:1/v1"), "/models/m")).toBe("/models/m");
    expect(loadSpec(model("bundled", "SmolLM2-135M-Instruct", "/x/smol.gguf"))).toBe("smollm2");
    expect(loadSpec(model("hf_dir", "tiny", "/models/tiny"))).toBe("/models/tiny");
  });
});
