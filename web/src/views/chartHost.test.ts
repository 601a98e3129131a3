import { describe, expect, it } from "vitest";
import { sameInputs } from "./chartHost";

describe("sameInputs", () => {
  it("is true only for the same values in the same order", () => {
    const view = { matrix: [[1]] };
    expect(sameInputs([view, "title"], [view, "title"])).toBe(true);
    expect(sameInputs([view, "title"], [{ matrix: [[1]] }, "title"])).toBe(false); // a new result
    expect(sameInputs([view, "title"], [view, "other"])).toBe(false);
    expect(sameInputs([view], [view, "title"])).toBe(false);
  });
  it("is false for a chart drawn without inputs", () => {
    expect(sameInputs(null, [])).toBe(false);
  });
});
