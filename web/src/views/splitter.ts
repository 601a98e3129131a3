/** The draggable bar between the conversation and the right panel; width kept in localStorage. */
import { store, stored } from "../storage";
import { h } from "./dom";

const KEY = "llmvis.rightWidth";
export const MIN_WIDTH = 320;

export function clampWidth(w: number, viewport: number): number {
  return Math.round(Math.max(MIN_WIDTH, Math.min(w, viewport - 540)));
}

export function splitter(root: HTMLElement): HTMLElement {
  const set = (w: number) => {
    const width = clampWidth(w, window.innerWidth);
    root.style.setProperty("--right-w", `${width}px`);
    return width;
  };
  const kept = Number(stored(KEY));
  set(kept > 0 ? kept : Math.round(window.innerWidth * 0.47));

  const bar = h("div", {
    class: "splitter",
    role: "separator",
    "aria-orientation": "vertical",
    tabindex: 0,
    "data-testid": "splitter",
  });
  bar.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    bar.setPointerCapture(e.pointerId);
    root.classList.add("dragging");
    const move = (ev: PointerEvent) => set(window.innerWidth - ev.clientX);
    const up = () => {
      bar.removeEventListener("pointermove", move);
      bar.removeEventListener("pointerup", up);
      root.classList.remove("dragging");
      const w = parseInt(getComputedStyle(root).getPropertyValue("--right-w"), 10);
      store(KEY, String(w));
    };
    bar.addEventListener("pointermove", move);
    bar.addEventListener("pointerup", up);
  });
  bar.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    const cur = parseInt(getComputedStyle(root).getPropertyValue("--right-w"), 10);
    store(KEY, String(set(cur + (e.key === "ArrowLeft" ? 24 : -24))));
  });
  return bar;
}
