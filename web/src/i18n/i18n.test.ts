import { describe, expect, it } from "vitest";
import en from "./en.json";
import { defaultLang } from "./index";
import zh from "./zh.json";

describe("i18n", () => {
  it("has every English key in Chinese and no extra ones", () => {
    expect(Object.keys(zh).sort()).toEqual(Object.keys(en).sort());
    for (const [k, v] of Object.entries(zh)) expect(v, k).not.toBe("");
  });
  it("keeps {placeholders} in both languages", () => {
    const vars = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();
    for (const [k, v] of Object.entries(en)) expect(vars((zh as Record<string, string>)[k]), k).toEqual(vars(v));
  });
  it("follows the browser unless the user chose", () => {
    expect(defaultLang(null, ["zh-CN", "en"])).toBe("zh");
    expect(defaultLang(null, ["en-GB"])).toBe("en");
    expect(defaultLang("en", ["zh-TW"])).toBe("en");
  });
});
