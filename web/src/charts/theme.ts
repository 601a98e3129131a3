/** Colours shared by the page (CSS variables) and the charts (passed to every builder). */

export interface Theme {
  name: "dark" | "light";
  bg: string;
  panel: string;
  text: string;
  muted: string;
  grid: string;
  accent: string;
  accent2: string;
  warn: string;
  /** sequential scale for heatmaps, low → high */
  heat: string[];
  /** diverging scale, negative → 0 → positive */
  diverging: string[];
  font: string;
}

const font = 'Inter, "Segoe UI", system-ui, -apple-system, "PingFang SC", "Noto Sans CJK SC", sans-serif';

export const DARK: Theme = {
  name: "dark",
  bg: "transparent",
  panel: "#151a23",
  text: "#e6e9ef",
  muted: "#8b93a7",
  grid: "#2a3140",
  accent: "#5b9cff",
  accent2: "#f2a541",
  warn: "#f2c94c",
  heat: ["#0d1321", "#1d3461", "#1f6f8b", "#43b0a4", "#c6e377", "#fff3b0"],
  diverging: ["#3b7dd8", "#1b2230", "#e0603a"],
  font,
};

export const LIGHT: Theme = {
  name: "light",
  bg: "transparent",
  panel: "#ffffff",
  text: "#1d2330",
  muted: "#5d6678",
  grid: "#dde2ea",
  accent: "#2f6fe0",
  accent2: "#d9822b",
  warn: "#b8860b",
  heat: ["#f7fbff", "#c6dbef", "#6baed6", "#2171b5", "#08306b", "#041836"],
  diverging: ["#2f6fe0", "#f4f5f7", "#d9482b"],
  font,
};

export function themeByName(name: string): Theme {
  return name === "light" ? LIGHT : DARK;
}
