"""View `contribution_graph`: the routes by which information reached one prediction.

Information-flow routes (Ferrando & Voita, "Information Flow Routes", 2024), from the capture
in one pass, with no patching and no gradients. Nodes are (hidden state l, position i): the
residual stream entering layer l (l = L: the last layer's output). Each layer's update is a
sum of vectors, and each vector's share of the sum is its proximity to it,

    prox(z, y) = max(0, ‖y‖₁ − ‖y − z‖₁),   share(z) = prox(z, y) / Σ prox over y's parts.

- Attention, at position i: y = x_i + Σ_j z_ij + rest, where z_ij = Σ_h a_hij · v_hj W_h is
  what token j's value brought (Internals.token_contributions), x_i the residual (an edge
  i → i) and `rest` the output bias. y is read from the capture (x_i plus the attention's
  output, which the parts are checked to add up to), so each z_ij's proximity is computed as
  the keys stream through (Internals.token_proximities) without holding every z_ij. Layers without softmax attention (a hybrid's recurrent
  mixers) add one part with no token to credit.
- The MLP, at position i: y = mid_i + m_i. Both parts come from mid_i (the MLP reads it), so
  mid_i's whole share passes on; the node keeps the MLP's share (`mlp_share`) for display.
  Parallel blocks (MLP reading the layer's input) share one sum: x_i, every z_ij, m_i.
- Parts no token is credited with (biases, recurrent mixers, a family's extra part) are the
  node's `unattributed` share; with every edge kept, a node's incoming edges and that share
  sum to 1.

From the target node down, a layer's edges are kept when their share ≥ `threshold`, at most
`top_k` per node; their sources are the next layer's nodes (at most `max_nodes` per layer, the
most important first). An edge split by head gives each head's share of z_ij, by the same
proximity within the edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, Field

from llmvis.analyses.common import round4, token_labels
from llmvis.analyses.layers import _predicted
from llmvis.analyses.registry import ViewContext, register
from llmvis.internals import Internals


class ContributionGraphParams(BaseModel):
    position: int | None = Field(
        default=None, ge=1, description="position of the predicted token (default: last); the graph ends at position-1"
    )
    threshold: float = Field(default=0.04, ge=0.0, le=1.0, description="keep edges whose share is at least this")
    top_k: int = Field(default=6, ge=1, le=64, description="at most this many incoming edges per node")
    max_nodes: int = Field(default=32, ge=1, le=512, description="at most this many nodes per layer")


class FlowNode(BaseModel):
    layer: int = Field(description="hidden state 0..L (0: embeddings, L: the last layer's output)")
    position: int
    importance: float = Field(description="share of the target this node carries along the kept edges")
    mlp_share: float | None = Field(description="share of this node's update made by its layer's MLP")
    unattributed: float | None = Field(description="share of parts no token is credited with (biases, mixers)")


class FlowEdge(BaseModel):
    layer: int = Field(description="the decoder layer the edge crosses: from hidden state `layer` to `layer` + 1")
    source: int = Field(description="source position (at hidden state `layer`)")
    target: int = Field(description="target position (at hidden state `layer` + 1)")
    kind: str = Field(description="attention (token source → target) or residual (the same token)")
    weight: float = Field(description="the edge's share of the target node")
    heads: list[float] | None = Field(default=None, description="attention edges: each head's share of the edge")


class ContributionGraphView(BaseModel):
    position: int
    source_position: int = Field(description="the graph's top node: position-1 at the last hidden state")
    layers: int
    heads: int
    threshold: float
    top_k: int
    labels: dict[int, str] = Field(description="token label of every position that has a node")
    nodes: list[FlowNode]
    edges: list[FlowEdge]
    dropped_edges: int = Field(description="edges under the threshold or beyond top_k (their share is lost)")
    missing_layers: dict[int, str] = Field(default_factory=dict, description="layers whose mixer credits no token")


@dataclass
class NodeSplit:
    """One node's incoming shares at one layer: what it owes each earlier token, and itself."""

    residual: float
    tokens: torch.Tensor  # [i + 1] attention shares per source token (zeros without attention)
    unattributed: float
    mlp: float
    heads: dict[int, list[float]] = field(default_factory=dict)  # source → each head's share, as asked


@dataclass
class LayerParts:
    """What one layer adds at some positions, from the capture, a row per position ([n, d]): x
    (its input), attention's output, the MLP's, a family's extra part; and the vectors the token
    parts add up into (`into`: the attention's sum for a sequential block, the layer's output
    for a parallel one)."""

    x: torch.Tensor
    attn: torch.Tensor
    mlp: torch.Tensor
    extra: torch.Tensor | None
    into: torch.Tensor


def _layer_parts(internals: Internals, layer: int, positions: list[int]) -> LayerParts:
    arch, idx = internals.arch, torch.tensor(positions, dtype=torch.long)

    def rows(t: torch.Tensor) -> torch.Tensor:
        return t[idx.to(t.device)].float().cpu()

    x, attn, mlp = rows(internals.residual(layer)), rows(internals.attn_out(layer)), rows(internals.mlp_out(layer))
    extra_t = internals.extra_out(layer)
    extra = None if extra_t is None else rows(extra_t)
    if arch.mlp_reads == "input":  # parallel: one sum, every part read from x
        into = x + attn + mlp + (extra if extra is not None else 0)
    else:
        into = x + attn + (extra if extra is not None and arch.extra_before_mlp else 0)
    return LayerParts(x, attn, mlp, extra, into)


def _row_proximity(parts: torch.Tensor, totals: torch.Tensor) -> torch.Tensor:
    """[n] max(0, ‖y‖₁ − ‖y − z‖₁) of each row z of `parts: [n, d]` with respect to the same row
    y of `totals: [n, d]`."""
    return (totals.abs().sum(-1) - (totals - parts).abs().sum(-1)).clamp_min(0)


def _splits(internals: Internals, n: LayerParts, near: list[tuple[torch.Tensor, torch.Tensor]]) -> list[NodeSplit]:
    """Each node's shares from its layer's parts and its tokens' proximities to `n.into` (`near`:
    per node, the tokens' proximities and the attention's rest; a mixer that credits no token:
    zeros, and its whole output as the rest). All of a layer's new nodes at once, row by row:
    the same sums as one node at a time, without a dozen small products per node."""
    arch, x, mlp, extra = internals.arch, n.x, n.mlp, n.extra
    rest = torch.stack([r for _, r in near])  # [n, d]
    p_tok = torch.stack([p.sum() for p, _ in near])  # [n]

    def ones_if_zero(t: torch.Tensor) -> torch.Tensor:  # (a node nothing reached: shares of 0)
        return torch.where(t == 0, torch.ones_like(t), t)

    if arch.mlp_reads == "input":  # parallel: one sum, every part read from x
        y = n.into
        p_x, p_mlp = _row_proximity(x, y), _row_proximity(mlp, y)
        p_loose = _row_proximity(rest, y) + (_row_proximity(extra, y) if extra is not None else 0)
        total = ones_if_zero(p_x + p_mlp + p_tok + p_loose)
        return [
            NodeSplit(residual=float(rx + rm) / t, tokens=p / t, unattributed=float(rl) / t, mlp=float(rm) / t)
            for (p, _), rx, rm, rl, t in zip(
                near, p_x.tolist(), p_mlp.tolist(), p_loose.tolist(), total.tolist(), strict=True
            )
        ]
    before = extra if extra is not None and arch.extra_before_mlp else None
    after = extra if extra is not None and not arch.extra_before_mlp else None
    mid = n.into
    p_res = _row_proximity(x, mid)
    p_before = _row_proximity(rest, mid) + (_row_proximity(before, mid) if before is not None else 0)
    total = ones_if_zero(p_res + p_tok + p_before)
    out = mid + mlp + (after if after is not None else 0)
    q_mid, q_mlp = _row_proximity(mid, out), _row_proximity(mlp, out)
    q_after = _row_proximity(after, out) if after is not None else torch.zeros_like(q_mid)
    out_total = ones_if_zero(q_mid + q_mlp + q_after)
    carried = (q_mid + q_mlp) / out_total  # what mid passes on (both parts come from it)
    return [
        NodeSplit(
            residual=float(r) / t * c,
            tokens=p / t * c,
            unattributed=float(b) / t * c + qa / ot,
            mlp=qm / ot,
        )
        for (p, _), r, b, t, c, qa, qm, ot in zip(
            near,
            p_res.tolist(),
            p_before.tolist(),
            total.tolist(),
            carried.tolist(),
            q_after.tolist(),
            q_mlp.tolist(),
            out_total.tolist(),
            strict=True,
        )
    ]


def _head_shares(
    internals: Internals, layer: int, i: int, sources: list[int], row: torch.Tensor, values: torch.Tensor | None
) -> dict:
    """source → each head's share of the edge from it to `i` (proximity to the edge's vector);
    `row`: i's attention weights [H, keys]; `values`: the sources' value outputs, if known."""
    if not sources:
        return {}
    heads = internals.token_head_parts(layer, i, sources, row, values)  # [S, H, d]
    edge = heads.sum(1, keepdim=True)  # [S, 1, d]
    p = (edge.abs().sum(-1) - (edge - heads).abs().sum(-1)).clamp_min(0)  # [S, H]
    total = p.sum(-1, keepdim=True)
    shares = round4(torch.where(total > 0, p / total.clamp_min(1e-30), p))
    return dict(zip(sources, shares, strict=True))


Splits = dict[tuple[int, int], NodeSplit]


def _known_splits(internals: Internals) -> Splits:
    """The nodes' splits computed for this run so far, keyed (hidden state, position). A node's
    split depends on the run alone (not on the target, the threshold or top_k), and the graphs of
    neighbouring targets share most of their nodes (59–81% at T = 1,536 on the bundled model):
    moving along the tokens or changing a control computes only the nodes not seen before."""
    kept = internals.cache.peek((internals.key, "flow_splits"))
    return {} if kept is None else kept


def _keep_splits(internals: Internals, known: Splits) -> None:
    key = (internals.key, "flow_splits")
    internals.cache.discard(key)  # re-kept at its new size
    internals.keep(
        key, known, sum(s.tokens.numel() * 4 + 256 + 64 * len(s.heads) * internals.n_heads for s in known.values())
    )


def _new_splits(internals: Internals, layer: int, new: list[int], missing: dict[int, str]) -> Splits:
    """The splits of nodes `new` (positions) entering hidden state `layer` + 1."""
    parts = _layer_parts(internals, layer, new)
    if layer in missing:  # no softmax attention: the mixer's output credits no token
        near = [(torch.zeros(i + 1), attn) for i, attn in zip(new, parts.attn, strict=True)]
    else:
        values = internals.kept_value_outputs(layer)  # computed ahead (analyses/warm.py), or None
        weights = internals.query_weights(layer, new)  # [H, n, keys]
        near = internals.token_proximities(layer, new, parts.into, values, weights)
    return dict(zip([(layer + 1, i) for i in new], _splits(internals, parts, near), strict=True))


def warm_value_outputs(internals: Internals, pause: Callable[[], None]) -> None:
    """Every attention layer's value outputs, kept (expendable) before the Contributions tab asks."""
    for layer in internals.attention_layers(required=True):
        if not internals.keep_value_outputs(layer):
            return
        pause()


@register(
    "contribution_graph",
    "Contribution graph",
    ContributionGraphParams,
    ContributionGraphView,
    needs_internals=True,
    uses=("attention", "contributions"),
)
def contribution_graph(ctx: ViewContext, p: ContributionGraphParams) -> ContributionGraphView:
    """How information flowed, token to token and layer to layer, into one prediction."""
    internals = ctx.require_internals()
    pos, src = _predicted(ctx, p.position)
    n = internals.n_layers
    missing = internals.missing_attention()
    importance, splits, edges, dropped = _walk(internals, src, p, on_layer=lambda done: ctx.progress("graph", done, n))
    nodes = [
        FlowNode(
            layer=layer,
            position=i,
            importance=round4(w),
            mlp_share=round4(splits[(layer, i)].mlp) if (layer, i) in splits else None,
            unattributed=round4(splits[(layer, i)].unattributed) if (layer, i) in splits else None,
        )
        for (layer, i), w in sorted(importance.items())
    ]
    positions = sorted({node.position for node in nodes})
    return ContributionGraphView(
        position=pos,
        source_position=src,
        layers=n,
        heads=internals.n_heads,
        threshold=p.threshold,
        top_k=p.top_k,
        labels=dict(zip(positions, token_labels(ctx, positions), strict=True)),
        nodes=nodes,
        edges=edges,
        dropped_edges=dropped,
        missing_layers=missing,
    )


def warm_graph(internals: Internals, position: int, pause: Callable[[], None]) -> None:
    """The default graph of the token at `position`, its nodes kept before the Contributions tab
    asks (the server does it for the token the user selected: server/background.py)."""
    if 1 <= position < internals.n_positions:
        _walk(internals, position - 1, ContributionGraphParams(position=position), pause)


def _walk(
    internals: Internals,
    src: int,
    p: ContributionGraphParams,
    pause: Callable[[], None] | None = None,
    on_layer: Callable[[int], None] = lambda done: None,
) -> tuple[dict[tuple[int, int], float], Splits, list[FlowEdge], int]:
    """(importance of each node, their splits, the edges kept, edges dropped) from the node
    (L, src) down. With `pause`, the nodes so far are kept and `pause()` runs after each layer (a
    view let in then reuses them). `on_layer(layers done)` after each layer."""
    n = internals.n_layers
    missing = internals.missing_attention()
    internals.attention_layers(required=True)
    importance: dict[tuple[int, int], float] = {(n, src): 1.0}
    known = _known_splits(internals)
    splits: Splits = {}
    edges: list[FlowEdge] = []
    dropped = 0
    active = [src]
    for layer in reversed(range(n)):
        new = [i for i in active if (layer + 1, i) not in known]
        if new:
            known.update(_new_splits(internals, layer, new, missing))
        below: dict[int, float] = {}
        chosen_edges: list[tuple[int, list[tuple[float, str, int]]]] = []
        for i in active:
            split = splits[(layer + 1, i)] = known[(layer + 1, i)]
            weight_here = importance[(layer + 1, i)]
            shares = split.tokens
            strong = torch.nonzero((shares >= p.threshold) & (shares > 0)).flatten()
            strong = strong[shares[strong].argsort(descending=True)[: p.top_k]]
            candidates = [(float(shares[j]), "attention", int(j)) for j in strong]
            if split.residual > 0 and split.residual >= p.threshold:
                candidates.append((split.residual, "residual", i))
            kept = sorted(candidates, reverse=True)[: p.top_k]
            dropped += int((shares > 0).sum()) + int(split.residual > 0) - len(kept)
            chosen_edges.append((i, kept))
            for share, _, j in kept:
                below[j] = below.get(j, 0.0) + share * weight_here
        # each attention edge split by head (kept with the node), from the attention rows of the
        # nodes with an edge not split before
        unsplit = {
            i: [j for _, kind, j in kept if kind == "attention" and j not in known[(layer + 1, i)].heads]
            for i, kept in chosen_edges
        }
        attending = [i for i, js in unsplit.items() if js]
        if attending and layer not in missing:
            rows = internals.query_weights(layer, attending)
            # every source's value outputs at once (a node's sources overlap the others')
            union = sorted({j for i in attending for j in unsplit[i]})
            outputs = internals.source_value_outputs(layer, union)
            at = {j: k for k, j in enumerate(union)}
            for k, i in enumerate(attending):
                values = None if outputs is None else outputs[[at[j] for j in unsplit[i]]]
                known[(layer + 1, i)].heads.update(_head_shares(internals, layer, i, unsplit[i], rows[:, k], values))
        for i, kept in chosen_edges:
            heads = known[(layer + 1, i)].heads
            for share, kind, j in kept:
                by_head = heads.get(j) if kind == "attention" else None
                edges.append(FlowEdge(layer=layer, source=j, target=i, kind=kind, weight=round4(share), heads=by_head))
        chosen = sorted(below, key=lambda j: -below[j])[: p.max_nodes]
        dropped += len(below) - len(chosen)
        keep = set(chosen)
        edges = [e for e in edges if e.layer != layer or e.source in keep]
        for j in chosen:
            importance[(layer, j)] = below[j]
        active = sorted(chosen)
        on_layer(n - layer)
        if not active:
            break
        if pause is not None:
            _keep_splits(internals, known)
            pause()
            known = _known_splits(internals) or known  # (a view let in may have kept more)
    _keep_splits(internals, known)
    return importance, splits, edges, dropped
