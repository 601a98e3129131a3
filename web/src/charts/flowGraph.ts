/**
 * Contributions tab: the contribution graph (information-flow routes, Ferrando & Voita 2024).
 * A layered graph on a grid: the positions that have nodes along x, in position order (a
 * compact axis: a 1,536-token run shows only the few dozen positions the routes pass
 * through), hidden states along y (emb at the bottom, the last layer's output at the top).
 * Edges cross one decoder layer: attention edges (from an earlier token) in the accent colour,
 * residual edges (the token's own stream) in grey; an edge's width is proportional to its
 * share of the node it feeds, a node's area to its importance. Below it, the heads that
 * carried one attention edge.
 */
import type { ContributionGraphView, FlowEdge } from "../api/views";
import { axisStyle, base, esc, fmt, labelAxis, pct, posLabel, type Option, type ReportRenderer } from "./common";
import type { Theme } from "./theme";

/** Edge width (px) per unit of share, and the thinnest edge drawn. */
export const EDGE_SCALE = 12;
export const EDGE_MIN = 0.6;
/** Node diameter (px): NODE_MIN + NODE_SCALE · √importance, so its area grows with importance. */
export const NODE_MIN = 4;
export const NODE_SCALE = 12;

export function edgeWidth(weight: number): number {
  return Math.max(EDGE_MIN, EDGE_SCALE * weight);
}

export function nodeSize(importance: number): number {
  return NODE_MIN + NODE_SCALE * Math.sqrt(Math.max(0, importance));
}

export interface FlowText {
  title: string;
  attention: string;
  residual: string;
}

const nodeName = (layer: number, position: number) => `${layer}:${position}`;

/** The attention edge that carries the most of the target (share × its node's importance). */
export function topAttentionEdge(view: ContributionGraphView): FlowEdge | null {
  const importance = new Map(view.nodes.map((n) => [nodeName(n.layer, n.position), n.importance]));
  let best: FlowEdge | null = null;
  let most = -1;
  for (const e of view.edges) {
    if (e.kind !== "attention" || !e.heads?.length) continue;
    const flow = e.weight * (importance.get(nodeName(e.layer + 1, e.target)) ?? 0);
    if (flow > most) {
      most = flow;
      best = e;
    }
  }
  return best;
}

export function sameEdge(a: FlowEdge | null, b: FlowEdge | null): boolean {
  return !!a && !!b && a.layer === b.layer && a.source === b.source && a.target === b.target && a.kind === b.kind;
}

/** The x axis: every position that has a node, in order, and each one's column. */
export function flowColumns(view: ContributionGraphView): { positions: number[]; column: Map<number, number> } {
  const positions = [...new Set(view.nodes.map((n) => n.position))].sort((a, b) => a - b);
  return { positions, column: new Map(positions.map((p, i) => [p, i])) };
}

export function flowGraphOption(
  view: ContributionGraphView,
  theme: Theme,
  text: FlowText,
  selected: FlowEdge | null = null,
): Option {
  const { positions, column } = flowColumns(view);
  const labels = view.labels ?? {};
  const xl = positions.map((p) => (p === view.source_position ? "▶ " : "") + posLabel(p, labels[p] ?? "", 8));
  const yl = Array.from({ length: view.layers + 1 }, (_, l) => (l === 0 ? "emb" : `L${l}`));
  const index = new Map(view.nodes.map((n, i) => [nodeName(n.layer, n.position), i]));
  const nodes = view.nodes.map((n) => {
    const top = n.layer === view.layers && n.position === view.source_position;
    return {
      name: nodeName(n.layer, n.position),
      value: [column.get(n.position)!, n.layer],
      symbolSize: nodeSize(n.importance),
      itemStyle: {
        color: theme.accent2,
        borderColor: top ? theme.text : theme.panel,
        borderWidth: top ? 2 : 0.5,
      },
      node: n,
    };
  });
  let orphans = 0;
  const links: Option[] = [];
  for (const e of view.edges) {
    const source = index.get(nodeName(e.layer, e.source));
    const target = index.get(nodeName(e.layer + 1, e.target));
    if (source === undefined || target === undefined) {
      orphans++; // an edge whose end the graph has no node for: counted in the subtitle, not hidden
      continue;
    }
    const attention = e.kind === "attention";
    const picked = sameEdge(e, selected);
    links.push({
      source,
      target,
      value: e.weight,
      edge: e,
      lineStyle: {
        width: picked ? Math.max(2.5, edgeWidth(e.weight)) : edgeWidth(e.weight),
        color: picked ? theme.warn : attention ? theme.accent : theme.muted,
        opacity: picked ? 1 : attention ? 0.75 : 0.45,
        // a token's attention to itself would lie on its residual edge: bend it aside
        curveness: attention && e.source === e.target ? 0.35 : 0,
      },
    });
  }
  const missing = Object.keys(view.missing_layers ?? {});
  const attentionEdges = view.edges.filter((e) => e.kind === "attention").length;
  const stats = [
    `${view.nodes.length} nodes`,
    `${links.length} edges (${attentionEdges} attn)`,
    `${view.dropped_edges} dropped`,
    ...(orphans ? [`${orphans} without nodes`] : []),
    ...(missing.length ? [`no attention: ${missing.map((l) => `L${l}`).join(", ")}`] : []),
  ].join(" · ");
  const b = base(theme, text.title, `llmvis-flow-${view.position}`);
  const nodeTip = (n: ContributionGraphView["nodes"][number]) =>
    [
      `<b>${esc(posLabel(n.position, labels[n.position] ?? "", 24))}</b> · ${yl[n.layer]}`,
      `importance <b>${fmt(n.importance)}</b>`,
      ...(n.mlp_share !== null && n.mlp_share !== undefined ? [`MLP share of its update ${pct(n.mlp_share)}`] : []),
      ...(n.unattributed ? [`unattributed ${pct(n.unattributed)}`] : []),
    ].join("<br>");
  const edgeTip = (e: FlowEdge) => {
    const heads = (e.heads ?? [])
      .map((s, h) => [s, h] as const)
      .sort((x, y) => y[0] - x[0])
      .slice(0, 4)
      .filter(([s]) => s > 0)
      .map(([s, h]) => `H${h} ${pct(s)}`)
      .join(", ");
    return [
      `<b>${esc(posLabel(e.source, labels[e.source] ?? "", 16))} → ${esc(posLabel(e.target, labels[e.target] ?? "", 16))}</b>`,
      `${e.kind === "attention" ? esc(text.attention) : esc(text.residual)} · layer ${e.layer} (${yl[e.layer]} → ${yl[e.layer + 1]})`,
      `share of the node it feeds <b>${fmt(e.weight)}</b>`,
      ...(heads ? [`heads: ${heads}`, `<span style="opacity:.7">click: every head's share</span>`] : []),
    ].join("<br>");
  };
  return {
    ...b,
    title: {
      ...(b.title as Option),
      subtext: `{a|━━} ${text.attention}  {r|━━} ${text.residual}  ·  ${stats}`,
      subtextStyle: {
        color: theme.muted,
        fontSize: 11,
        rich: {
          a: { color: theme.accent, fontSize: 11, fontWeight: 700 },
          r: { color: theme.muted, fontSize: 11, fontWeight: 700 },
        },
      },
      itemGap: 4,
    },
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "item",
      formatter: (p: {
        dataType?: string;
        data: { node?: ContributionGraphView["nodes"][number]; edge?: FlowEdge };
      }) => (p.dataType === "edge" && p.data.edge ? edgeTip(p.data.edge) : p.data.node ? nodeTip(p.data.node) : ""),
    },
    grid: { left: 8, right: 16, top: 52, bottom: 8, containLabel: true },
    xAxis: {
      ...labelAxis(theme, xl, 40, 55),
      splitLine: { show: true, lineStyle: { color: theme.grid, opacity: 0.25 } },
    },
    yAxis: { ...labelAxis(theme, yl, 20), splitLine: { show: true, lineStyle: { color: theme.grid, opacity: 0.25 } } },
    series: [
      {
        type: "graph",
        coordinateSystem: "cartesian2d",
        data: nodes,
        links,
        edgeSymbol: ["none", "none"],
        // No name label on hover (ECharts' default for a graph): the tooltip says the same, and
        // that label's text style, made for every node at each draw, was a third of its time.
        emphasis: { focus: "adjacency", lineStyle: { opacity: 1 }, label: { show: false } },
        z: 3,
      },
    ],
  };
}

/** The heads that carried one attention edge: each head's share of it. */
export function edgeHeadsOption(edge: FlowEdge, theme: Theme, title: string): Option {
  const shares = edge.heads ?? [];
  const xl = shares.map((_, h) => `H${h}`);
  const b = base(theme, title, `llmvis-flow-heads-L${edge.layer}-${edge.source}-${edge.target}`);
  return {
    ...b,
    tooltip: {
      ...(b.tooltip as Option),
      trigger: "axis",
      axisPointer: { type: "shadow" },
      formatter: (ps: { dataIndex: number }[]) => {
        const h = ps[0].dataIndex;
        return `layer ${edge.layer}, head ${h}<br>share of the edge <b>${pct(shares[h])}</b> (${fmt(shares[h])})<br>edge: ${fmt(edge.weight)} of the node`;
      },
    },
    grid: { left: 8, right: 16, top: 40, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: xl, ...axisStyle(theme), axisLabel: { color: theme.muted, fontSize: 10 } },
    yAxis: {
      type: "value",
      min: 0,
      max: 1,
      ...axisStyle(theme),
      axisLabel: { color: theme.muted, formatter: (v: number) => `${Math.round(v * 100)}%` },
    },
    series: [
      {
        type: "bar",
        data: shares,
        color: theme.accent,
        barMaxWidth: 24,
        label: {
          show: shares.length <= 16,
          position: "top",
          color: theme.muted,
          fontSize: 10,
          formatter: (p: { value: number }) => (p.value >= 0.01 ? pct(p.value) : ""),
        },
      },
    ],
  };
}

export const contributionGraphReport: ReportRenderer<"contribution_graph"> = {
  view: "contribution_graph",
  render: (view, _tokens, theme, title) =>
    flowGraphOption(view, theme, { title, attention: "attention", residual: "residual" }),
};
