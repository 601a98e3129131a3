/** A few DOM helpers so views read as markup. */

type Attrs = Record<string, string | number | boolean | undefined | null | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v as EventListener);
    else if (k === "class") el.className = String(v);
    else if (k in el && typeof v !== "string") (el as unknown as Record<string, unknown>)[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** The header bar of the app and of the offline report: the brand, a tagline, then actions. */
export function topBar(tagline: HTMLElement, ...actions: HTMLElement[]): HTMLElement {
  const brand = h("div", { class: "brand" }, h("span", { class: "logo" }, "▮▮▮"), h("b", {}, "llmvis"), tagline);
  return h("header", { class: "top" }, brand, h("div", { class: "top-actions" }, ...actions));
}

export function clear(el: HTMLElement): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/** A <select> with (value, label) options. */
export function selectBox(
  options: [string, string][],
  value: string,
  onChange: (v: string) => void,
  testid?: string,
): HTMLSelectElement {
  const s = h("select", { "data-testid": testid });
  for (const [v, l] of options) s.append(h("option", { value: v }, l));
  s.value = value;
  s.addEventListener("change", () => onChange(s.value));
  return s;
}

/** A segmented toggle: buttons where exactly one is pressed. */
export function segmented(
  options: [string, string][],
  value: string,
  onChange: (v: string) => void,
  testid?: string,
): HTMLElement {
  const box = h("div", { class: "seg", role: "group", "data-testid": testid });
  const set = (v: string) => {
    for (const b of box.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.value === v));
  };
  for (const [v, l] of options) {
    const b = h("button", { type: "button", "data-value": v }, l);
    b.addEventListener("click", () => {
      set(v);
      onChange(v);
    });
    box.append(b);
  }
  set(value);
  return box;
}
