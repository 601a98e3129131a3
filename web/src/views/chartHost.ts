/**
 * ECharts instances: created per chart element, resized with their box, disposed with their
 * tab. Every live chart is listed for the browser tests (`window.__llmvis.charts()`).
 */
import { BarChart, CustomChart, GraphChart, HeatmapChart, LineChart, ScatterChart } from "echarts/charts";
import {
  DataZoomComponent,
  GridComponent,
  LegendComponent,
  MarkLineComponent,
  MarkPointComponent,
  TitleComponent,
  ToolboxComponent,
  TooltipComponent,
  VisualMapComponent,
} from "echarts/components";
import * as echarts from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";
import type { Option } from "../charts/common";
import { pointer, SCALE_ONLY } from "../charts/heatmap";

echarts.use([
  BarChart,
  CustomChart,
  GraphChart,
  HeatmapChart,
  LineChart,
  ScatterChart,
  DataZoomComponent,
  GridComponent,
  LegendComponent,
  MarkLineComponent,
  MarkPointComponent,
  TitleComponent,
  ToolboxComponent,
  TooltipComponent,
  VisualMapComponent,
  CanvasRenderer,
]);

const live = new Map<string, Chart>();
/**
 * Charts drawn so far, page-wide: each draw stamps its element's `data-drawn` (bench/browser.py),
 * and so does a refresh that keeps a chart as drawn because its inputs did not change (`keep`).
 */
let draws = 0;

/** An element's box as "width×height" in whole pixels. */
const boxOf = (el: HTMLElement) => `${el.clientWidth}×${el.clientHeight}`;

/** Whether two lists of a chart's inputs hold the same values (===), in order; null: none known. */
export function sameInputs(a: readonly unknown[] | null, b: readonly unknown[]): boolean {
  return a !== null && a.length === b.length && a.every((v, i) => v === b[i]);
}

export class Chart {
  readonly inst: echarts.ECharts;
  private ro: ResizeObserver;
  /** The box the chart was last laid out in. */
  private box: string;
  /** What the current option was built from (Tab.drawMemo); null when set without. */
  inputs: readonly unknown[] | null = null;

  constructor(
    readonly id: string,
    readonly el: HTMLElement,
  ) {
    el.classList.add("chart");
    el.dataset.chart = id;
    this.inst = echarts.init(el, undefined, { renderer: "canvas" });
    this.box = boxOf(el);
    // A resize re-renders every element of the chart (all cells of a heatmap), so only when
    // the box really changed: not for the observer's first call, nor for a hidden tab (0×0)
    // shown again at the size it had.
    this.ro = new ResizeObserver(() => {
      const box = boxOf(el);
      if (el.clientWidth === 0 || el.clientHeight === 0 || box === this.box) return;
      this.box = box;
      this.inst.resize();
    });
    this.ro.observe(el);
    // where the mouse is, before ECharts' own handlers see the move: an image heatmap's tooltip
    // finds its cell from it (charts/heatmap.ts)
    el.addEventListener(
      "mousemove",
      (e) => {
        const r = el.getBoundingClientRect();
        pointer.x = e.clientX - r.left;
        pointer.y = e.clientY - r.top;
      },
      { capture: true },
    );
    live.get(id)?.dispose();
    live.set(id, this);
  }

  /** The option last set (what built the chart: an image heatmap's cell lookup lives there). */
  option: Option | null = null;

  set(option: Option, inputs: readonly unknown[] | null = null): void {
    this.option = option;
    this.inst.setOption(option as echarts.EChartsCoreOption, { notMerge: true, lazyUpdate: false });
    this.inputs = inputs;
    this.keep();
  }

  /** The chart as drawn is current for this refresh (its inputs did not change). */
  keep(): void {
    this.el.dataset.drawn = String(++draws);
  }

  dispose(): void {
    this.ro.disconnect();
    this.inst.dispose();
    if (live.get(this.id) === this) live.delete(this.id);
  }
}

/**
 * Draw each of `options` once in a chart off screen, one per idle moment of the page, then drop
 * it: the first draw of a kind of chart is the slow one (charts/warmUp.ts says why), and this
 * makes it happen before a user asks for a tab. Not listed among the live charts.
 */
export function warmUpCharts(options: () => Option[]): void {
  const idle = (step: () => void) =>
    "requestIdleCallback" in window ? requestIdleCallback(step, { timeout: 5000 }) : setTimeout(step, 200);
  idle(() => {
    const el = document.createElement("div");
    el.style.cssText = "position:fixed;left:-10000px;top:0;width:600px;height:400px;visibility:hidden";
    el.setAttribute("aria-hidden", "true");
    document.body.append(el);
    const inst = echarts.init(el, undefined, { renderer: "canvas" });
    const todo = options();
    const next = () => {
      const option = todo.shift();
      if (!option) {
        inst.dispose();
        el.remove();
        return;
      }
      inst.setOption(option as echarts.EChartsCoreOption, { notMerge: true, lazyUpdate: false });
      idle(next);
    };
    idle(next);
  });
}

/** Series data lengths of every visible chart: what the e2e tests check. */
type Summary = { series: { type: string; length: number }[]; visible: boolean; title: string };

export function chartSummary(): Record<string, Summary> {
  const out: Record<string, Summary> = {};
  for (const [id, c] of live) {
    if (c.inst.isDisposed()) continue;
    const opt = c.inst.getOption() as {
      series?: { type?: string; id?: string; data?: unknown[] }[];
      title?: { text?: string }[];
    };
    // an image heatmap's series counts the cells it paints (charts/heatmap.ts)
    const set = ((c.option?.series ?? []) as { paintedCells?: number }[]).map((s) => s.paintedCells);
    out[id] = {
      visible: c.el.offsetParent !== null,
      title: opt.title?.[0]?.text ?? "",
      series: (opt.series ?? [])
        .map((s, i) => ({ s, painted: set[i] }))
        .filter(({ s }) => s.id !== SCALE_ONLY)
        .map(({ s, painted }) => ({
          type: s.type ?? "",
          length: painted ?? (Array.isArray(s.data) ? s.data.length : 0),
        })),
    };
  }
  return out;
}

/** The (row, col) of an image heatmap's cell under a click (charts/heatmap.ts), or null. */
export function clickedCell(c: Chart, e: { offsetX?: number; offsetY?: number } | undefined): [number, number] | null {
  const at = (c.option as { cellAt?: (x: number, y: number) => [number, number] | null } | null)?.cellAt;
  return at && e?.offsetX !== undefined && e.offsetY !== undefined ? at(e.offsetX, e.offsetY) : null;
}

/** Page coordinates of a data value in a chart's first grid (for the browser tests to click). */
export function chartPixel(id: string, value: (number | string)[]): [number, number] | null {
  const c = live.get(id);
  if (!c) return null;
  const [x, y] = c.inst.convertToPixel({ gridIndex: 0 }, value) as number[];
  const r = c.el.getBoundingClientRect();
  return [r.left + x, r.top + y];
}
