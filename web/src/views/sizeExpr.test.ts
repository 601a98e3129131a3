import { describe, expect, it } from "vitest";
import { compileSizeExpr } from "./sizeExpr";

describe("compileSizeExpr", () => {
  it("evaluates echarts-gl's size expressions", () => {
    expect(compileSizeExpr(" [width * dpr / 4, height * dpr / 4] ")(800, 400, 2)).toEqual([400, 200]);
    expect(compileSizeExpr("[width * 1.0 / 16, height / 16]")(160, 32)).toEqual([10, 2]);
    expect(compileSizeExpr("height * 1.0 / 2")(0, 10)).toBe(5);
  });
  it("keeps precedence and parentheses", () => {
    expect(compileSizeExpr("1 + 2 * 3")(0, 0)).toBe(7);
    expect(compileSizeExpr("(1 + 2) * 3 - -1")(0, 0)).toBe(10);
    expect(compileSizeExpr(".5 * width")(4, 0)).toBe(2);
  });
  it("refuses anything else (it is not a JavaScript evaluator)", () => {
    expect(() => compileSizeExpr("alert(1)")).toThrow();
    expect(() => compileSizeExpr("width; fetch")).toThrow();
    expect(() => compileSizeExpr("[width, height] * 2")(1, 1)).toThrow();
    expect(() => compileSizeExpr("1 +")).toThrow();
  });
});
