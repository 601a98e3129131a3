import { describe, expect, it } from "vitest";
import type { Intervention } from "../api/types";
import type { Option } from "./common";
import * as fx from "./fixtures";
import { DARK, LIGHT } from "./theme";
import {
  changeCurveOption,
  describeIntervention,
  describePlan,
  fastVsExact,
  headPickOption,
  outcomeRows,
  parsePositions,
  positionsText,
  sweepMapOption,
  sweepReport,
  sweepReportOption,
  sweepScale,
  sweepSummary,
  sweepValues,
  topChangeOption,
  topRows,
  whatIfReport,
} from "./whatif";

const series = (o: Option) => o.series as Option[];
const curveText = { title: "t", delta: "Δ", kl: "KL", before: "before", after: "after" };
const labels = ["<s>", " The", " capital", " Paris", "."];

describe("interventions as words", () => {
  it("names the site, the operation and the positions", () => {
    const cases: [Intervention, string][] = [
      [{ site: "head", layer: 1, head: 2, op: "zero" }, "zero L1 H2"],
      [{ site: "mlp_out", layer: 0, op: "scale", factor: 0.5, positions: [3, 4, 5, 6, 7] }, "scale ×0.5 L0 mlp @ 3–7"],
      [{ site: "residual", layer: 2, op: "add", factor: 4, vector: [1, 2] }, "add 4·v L2 resid"],
      [{ site: "neuron", layer: 1, neuron: 17, op: "mean", positions: [9, 2] }, "mean L1 n17 @ 2, 9"],
      [{ site: "attn_out", layer: 0, op: "patch", source_run: "0123456789abcdef" }, "patch ← 01234567 L0 attn"],
      [{ site: "attention_edges", layer: 1, op: "zero", keys: [0, 1, 2], positions: [5] }, "zero L1 edges →0–2 @ 5"],
    ];
    for (const [iv, text] of cases) expect(describeIntervention(iv)).toBe(text);
    expect(describePlan([])).toBe("no intervention");
    expect(
      describePlan(
        cases.map((c) => c[0]),
        2,
      ),
    ).toBe("zero L1 H2; scale ×0.5 L0 mlp @ 3–7; +4");
  });

  it("writes and reads positions", () => {
    expect(positionsText(null)).toBe("all");
    expect(positionsText([4, 2])).toBe("2, 4");
    expect(positionsText([1, 3, 5, 7, 9])).toBe("1, 3, 5, 7, …");
    expect(parsePositions("3-5, 9 1")).toEqual([1, 3, 4, 5, 9]);
    expect(parsePositions("7–8")).toEqual([7, 8]);
    expect(parsePositions("5-3")).toBeNull();
    expect(parsePositions("a")).toBeNull();
    expect(parsePositions("")).toBeNull();
  });
});

describe("before vs after", () => {
  it("tabulates prob, logit, rank and the gap, with the direction of each change", () => {
    const rows = outcomeRows(fx.whatIf);
    expect(rows.map((r) => r.key)).toEqual(["prob", "logit", "rank", "gap"]);
    const [prob, logit, rank, gap] = rows;
    expect([prob.before, prob.after, prob.delta, prob.sign]).toEqual(["60%", "30%", "−30 pp", -1]);
    expect(prob.values).toEqual([0.6, 0.3]);
    expect([logit.delta, logit.sign]).toEqual(["−1", -1]);
    expect([rank.before, rank.after, rank.delta, rank.sign]).toEqual(["#1", "#2", "+1", -1]); // a worse rank hurts
    expect([gap.before, gap.after, gap.delta]).toEqual(["2", "-0.5", "−2.5"]);
    const noFoil = {
      ...fx.whatIf,
      before: { ...fx.whatIf.before, gap: null },
      after: { ...fx.whatIf.after, gap: null },
    };
    expect(outcomeRows(noFoil).map((r) => r.key)).toEqual(["prob", "logit", "rank"]);
  });

  it("bars the union of both top lists, a candidate outside one list without its bar", () => {
    const rows = topRows(fx.whatIf);
    expect(rows.map((r) => r.id)).toEqual([7, 9, 4, 5]);
    expect(rows.find((r) => r.id === 4)).toMatchObject({ before: 0.1, after: null });
    expect(rows.find((r) => r.id === 5)).toMatchObject({ before: null, after: 0.05 });
    const o = topChangeOption(fx.whatIf, DARK, { title: "top", before: "before", after: "after", outside: "—" });
    const [before, after] = series(o);
    expect((o.yAxis as Option).data).toEqual([" a", " the", "vs  Lyon", "▶  Paris"]); // read top-down
    expect(before.data).toEqual([null, 0.1, 0.2, 0.6]);
    expect(after.data).toEqual([0.05, null, 0.4, 0.3]);
    expect(topRows(fx.whatIf, 2)).toHaveLength(2);
  });

  it("draws the change along the run, one point per predicted position, the selected one marked", () => {
    const o = changeCurveOption(fx.whatIf, labels, LIGHT, curveText, 3);
    const [delta, kl] = series(o);
    expect((delta.data as { value: number }[]).map((d) => d.value)).toEqual([0, -0.05, -0.3, 0.05]);
    expect(kl.data).toEqual([0, 0.01, 0.4, 0.02]);
    expect((o.xAxis as Option).data).toEqual(["1  The", "2  capital", "3  Paris", "4 ."]);
    expect((delta.markLine as Option).data).toEqual([{ xAxis: 2 }]);
    const y = (o.yAxis as Option[])[0];
    expect(y.max).toBeCloseTo(0.33);
    expect(y.min).toBeCloseTo(-0.33);
    expect(changeCurveOption(fx.whatIf, labels, DARK, curveText, 0).series).toBeDefined();
    expect((series(changeCurveOption(fx.whatIf, labels, DARK, curveText, null))[0].markLine as unknown) ?? null).toBe(
      null,
    );
  });
});

describe("the head picker", () => {
  it("marks the heads of the plan", () => {
    const o = headPickOption(fx.headContributions, DARK, "heads", [{ layer: 2, head: 1 }], "click");
    const data = series(o)[0].data as (number[] | { value: number[]; label: Option })[];
    expect(data).toHaveLength(4); // layer 1 has no heads (a Mamba mixer)
    const marked = data.filter((d) => !Array.isArray(d)) as { value: number[]; label: Option }[];
    expect(marked.map((d) => d.value)).toEqual([[1, 2, 0.75]]);
    expect(marked[0].label.formatter).toBe("✕");
  });
});

describe("sweeps", () => {
  it("draws one site's map, exact or fast, on one scale for every map", () => {
    expect(sweepScale(fx.sweep)).toBe(1.5);
    const [resid, heads] = fx.sweep.maps;
    const o = sweepMapOption(resid, fx.sweep, labels, DARK, { title: "resid", restored: "restored" }, "exact");
    expect(series(o)[0].data).toHaveLength(6);
    expect((o.yAxis as Option).data).toEqual(["L0", "L1"]);
    expect((o.xAxis as Option).data).toEqual(["0 <s>", "1  The", "2  capital"]);
    expect(o.visualMap).toMatchObject({ min: -1.5, max: 1.5 });
    const fast = sweepMapOption(resid, fx.sweep, labels, DARK, { title: "resid", restored: "r" }, "fast");
    expect((series(fast)[0].data as number[][]).find((d) => d[0] === 1 && d[1] === 0)?.[2]).toBe(0.8);
    // a map without the estimate asked for shows the other one
    expect(sweepValues(heads, "fast")?.which).toBe("exact");
    const h = sweepMapOption(heads, fx.sweep, labels, DARK, { title: "heads", restored: "r" }, "fast");
    expect((h.xAxis as Option).data).toEqual(["H0", "H1"]);
    expect(fastVsExact(resid)).toBe("fast vs exact: max |error| 0.2, r = 0.97");
    expect(fastVsExact(heads)).toBeNull();
    expect(sweepSummary(fx.sweep)).toBe("' Paris' vs ' Rome' at 3 · logit diff clean 3, corrupted -1");
  });

  it("puts every map in one chart for the report", () => {
    const o = sweepReportOption(fx.sweep, labels, LIGHT, "sweep");
    expect(series(o).map((s) => (s.data as unknown[]).length)).toEqual([6, 4]);
    expect((o.grid as Option[]).length).toBe(2);
    expect(series(o).map((s) => s.xAxisIndex)).toEqual([0, 1]);
  });
});

describe("the offline report", () => {
  it("draws saved what-if and sweep results", () => {
    const tokens = labels.map((label, position) => ({ ...fx.token, label, position }));
    const w = whatIfReport.render(fx.whatIf, tokens, DARK, "whatif");
    expect(series(w).map((s) => (s.data as unknown[]).length)).toEqual([4, 4]);
    expect(((w.title as Option).text as string).includes("60% → 30%")).toBe(true);
    const s = sweepReport.render(fx.sweep, tokens, DARK, "sweep");
    expect(series(s)).toHaveLength(2);
    expect(whatIfReport.view).toBe("whatif");
    expect(sweepReport.view).toBe("sweep");
  });
});
