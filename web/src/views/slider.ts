/** A labelled slider with a number box; both edit the same value. */
import { h } from "./dom";

export interface SliderSpec {
  id: string;
  label: () => string;
  min: number;
  max: number;
  step: number;
  value: number;
  /** a slider value shown as a word in the box and sent as null (top-k off, random seed) */
  off?: { value: number; label: () => string };
  /** the number box accepts up to this (seed: any 32-bit int while the slider stops at 1000) */
  boxMax?: number;
}

export interface Slider {
  el: HTMLElement;
  get(): number | null;
  set(v: number | null): void;
  relabel(): void;
}

export function slider(spec: SliderSpec): Slider {
  const range = h("input", {
    type: "range",
    min: spec.min,
    max: spec.max,
    step: spec.step,
    "data-testid": `${spec.id}-range`,
  });
  const box = h("input", {
    type: "number",
    min: spec.off ? spec.off.value + spec.step : spec.min,
    max: spec.boxMax ?? spec.max,
    step: spec.step,
    class: "num",
    "data-testid": `${spec.id}-box`,
  });
  const label = h("label", { for: `${spec.id}-box` });
  box.id = `${spec.id}-box`;
  const decimals = (String(spec.step).split(".")[1] ?? "").length;
  let value: number | null = spec.value;

  const show = () => {
    if (value === null) {
      range.value = String(spec.off!.value);
      box.value = "";
      box.placeholder = spec.off!.label();
    } else {
      range.value = String(Math.min(value, spec.max));
      box.value = value.toFixed(decimals);
    }
  };
  const clamp = (v: number) => Math.min(spec.boxMax ?? spec.max, Math.max(spec.min, v));
  range.addEventListener("input", () => {
    const v = Number(range.value);
    value = spec.off && v === spec.off.value ? null : v;
    show();
  });
  box.addEventListener("change", () => {
    if (box.value.trim() === "" && spec.off) value = null;
    else if (Number.isFinite(Number(box.value))) {
      const v = clamp(Number(box.value));
      value = spec.off && v === spec.off.value ? null : Number(v.toFixed(decimals));
    }
    show();
  });
  const relabel = () => {
    label.textContent = spec.label();
    show();
  };
  relabel();
  return {
    el: h("div", { class: "slider" }, label, h("div", { class: "slider-row" }, range, box)),
    get: () => value,
    set: (v) => {
      value = v;
      show();
    },
    relabel,
  };
}
