/** English / 中文 strings. `t(key, {pos: 3})` fills `{pos}`; a missing key shows the key. */
import en from "./en.json";
import zh from "./zh.json";

export type Lang = "en" | "zh";
export type Key = keyof typeof en;

const tables: Record<Lang, Record<string, string>> = { en, zh };
let current: Lang = "en";
const listeners = new Set<() => void>();

export function defaultLang(stored: string | null, browser: readonly string[]): Lang {
  if (stored === "en" || stored === "zh") return stored;
  return browser.some((l) => l.toLowerCase().startsWith("zh")) ? "zh" : "en";
}

export function lang(): Lang {
  return current;
}

export function setLang(l: Lang): void {
  current = l;
  document.documentElement.lang = l === "zh" ? "zh-CN" : "en";
  for (const fn of listeners) fn();
}

export function onLangChange(fn: () => void): void {
  listeners.add(fn);
}

export function t(key: Key, vars?: Record<string, string | number>): string {
  let s = tables[current][key] ?? tables.en[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

/** Fill every `[data-i18n]` (text) and `[data-i18n-ph]` (placeholder) under `root`. */
export function translate(root: ParentNode): void {
  root.querySelectorAll<HTMLElement>("[data-i18n]").forEach((el) => {
    el.textContent = t(el.dataset.i18n as Key);
  });
  root.querySelectorAll<HTMLInputElement>("[data-i18n-ph]").forEach((el) => {
    el.placeholder = t(el.dataset.i18nPh as Key);
  });
}
