/**
 * ECharts instances: created per chart element, resized with their box, disposed with their
 * tab. Every live chart is listed for the browser tests (`window.__llmvis.charts()`).
 */
import { BarChart, HeatmapChart, LineChart, ScatterChart } from "echarts/charts";
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

echarts.use([
  BarChart,
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
/** Charts drawn so far, page-wide: each draw stamps its element's `data-drawn` (bench/browser.py). */
let draws = 0;

export class Chart {
  readonly inst: echarts.ECharts;
  private ro: ResizeObserver;
  constructor(
    readonly id: string,
    readonly el: HTMLElement,
  ) {
    el.classList.add("chart");
    el.dataset.chart = id;
    this.inst = echarts.init(el, undefined, { renderer: "canvas" });
    this.ro = new ResizeObserver(() => {
      if (el.clientWidth > 0 && el.clientHeight > 0) this.inst.resize();
    });
    this.ro.observe(el);
    live.get(id)?.dispose();
    live.set(id, this);
  }

  set(option: Option): void {
    this.inst.setOption(option as echarts.EChartsCoreOption, { notMerge: true, lazyUpdate: false });
    this.el.dataset.drawn = String(++draws);
  }

  dispose(): void {
    this.ro.disconnect();
    this.inst.dispose();
    if (live.get(this.id) === this) live.delete(this.id);
  }
}

/** Series data lengths of every visible chart: what the e2e tests check. */
type Summary = { series: { type: string; length: number }[]; visible: boolean; title: string };

export function chartSummary(): Record<string, Summary> {
  const out: Record<string, Summary> = {};
  for (const [id, c] of live) {
    if (c.inst.isDisposed()) continue;
    const opt = c.inst.getOption() as { series?: { type?: string; data?: unknown[] }[]; title?: { text?: string }[] };
    out[id] = {
      visible: c.el.offsetParent !== null,
      title: opt.title?.[0]?.text ?? "",
      series: (opt.series ?? []).map((s) => ({
        type: s.type ?? "",
        length: Array.isArray(s.data) ? s.data.length : 0,
      })),
    };
  }
  return out;
}

/** Page coordinates of a data value in a chart's first grid (for the browser tests to click). */
export function chartPixel(id: string, value: (number | string)[]): [number, number] | null {
  const c = live.get(id);
  if (!c) return null;
  const [x, y] = c.inst.convertToPixel({ gridIndex: 0 }, value) as number[];
  const r = c.el.getBoundingClientRect();
  return [r.left + x, r.top + y];
}
