"""Views head_contributions, neuron_contributions and the foil: exactness on every family.

The per-head reference is computed independently of llmvis's recomputed attention: the
unmodified model's eager `output_attentions` times the recorded values, through the output
projection's weight columns of that head.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmvis.analyses import ViewContext, ViewParamError, compute
from llmvis.analyses.flow import warm_graph, warm_value_outputs
from llmvis.analyses.layers import direct_effects
from llmvis.arch import NotAvailable
from tiny_models import tiny_loaded
from trace_helpers import random_ids, view_context

T = 24
POS = 17  # the predicted token; read at 16, beyond the tiny sliding windows of 8


def context(arch: str = "llama", n: int = T) -> ViewContext:
    loaded = tiny_loaded(arch)
    return view_context(loaded, random_ids(loaded, n, seed=6), n // 2)


def close(a, b, tol: float = 2e-3) -> bool:
    a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return bool(((a - b).abs() <= tol * (1 + b.abs().max())).all())


def eager_attentions(arch: str, ids: list[int]) -> list[torch.Tensor]:
    """The unmodified model's eager attention weights, one [H, T, T] per attention layer."""
    model = tiny_loaded(arch, attn="eager").model
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True)
    return [a[0].float() for a in out.attentions]


def weight_columns(proj: nn.Module) -> torch.Tensor:
    """[d_out, d_in] the projection's matrix (Conv1D keeps it transposed)."""
    w = proj.weight.float()
    return w if isinstance(proj, nn.Linear) else w.T


def test_each_head_is_eager_attention_times_values_through_its_slice(arch):
    ctx = context(arch)
    internals, src = ctx.internals, POS - 1
    layers = internals.attention_layers()
    attentions = dict(zip(layers, eager_attentions(arch, ctx.trace.ids), strict=True))
    for layer in layers:
        heads, rest = internals.head_outputs(layer, src)
        v = internals.record(layer).v.float()
        h, hd = internals.n_heads, v.shape[-1]
        mix = attentions[layer][:, src] @ v.repeat_interleave(h // v.shape[0], dim=0)  # [H, H, hd]
        gate = internals.arch.head_gate(layer, internals.residual(layer)[src : src + 1])
        if gate is not None:  # Qwen3-Next / 3.5: each head's output × sigmoid(its gate)
            mix = mix * gate[0][:, None]
        w = weight_columns(internals.arch.attn_out_projection(layer))
        mine = torch.stack([w[:, i * hd : (i + 1) * hd] @ mix[i, i] for i in range(h)])
        if not internals.arch.attn_output_norm:  # an output norm rescales them: checked through the sum
            assert close(heads, mine * internals.arch.attn_scale, 1e-4), (arch, layer)
        assert close(heads.sum(0) + rest, internals.attn_out(layer)[src], 1e-5), (arch, layer)


def test_head_effects_add_up_to_the_attention_blocks_effect(arch):
    ctx = context(arch)
    view = compute("head_contributions", ctx, {"position": POS})
    stream = compute("residual_stream", ctx, {"position": POS})
    assert view.target.token_id == ctx.trace.tokens[POS].id and view.target.foil_id is None
    for layer in range(view.layers):
        if view.effects[layer] is None:
            assert layer in view.missing_layers
            continue
        total = sum(view.effects[layer]) + view.rest[layer]
        assert close(total, view.block[layer], 1e-3), (arch, layer)
        assert close(view.block[layer], stream.layers[layer].attn_logit, 1e-3), (arch, layer)
        assert all(n >= 0 for n in view.norms[layer])


def test_a_foil_turns_every_effect_into_a_difference():
    ctx = context("qwen2")
    token = ctx.trace.tokens[POS].id
    foil = (token + 7) % 200
    both = compute("head_contributions", ctx, {"position": POS, "foil": foil})
    one = compute("head_contributions", ctx, {"position": POS})
    other = compute("head_contributions", ctx, {"position": POS, "token_id": foil})
    assert both.target.foil_id == foil and "−" in both.target.objective
    for layer in range(both.layers):
        assert close(both.effects[layer], torch.tensor(one.effects[layer]) - torch.tensor(other.effects[layer]))
    stream = compute("residual_stream", ctx, {"position": POS, "foil": foil})
    a = compute("residual_stream", ctx, {"position": POS})
    b = compute("residual_stream", ctx, {"position": POS, "token_id": foil})
    assert close(stream.logit, a.logit - b.logit)
    assert close(
        [x.mlp_logit for x in stream.layers],
        [x.mlp_logit - y.mlp_logit for x, y in zip(a.layers, b.layers, strict=True)],
    )


def test_neuron_parts_add_up_to_the_mlp_output(arch):
    ctx = context(arch)
    internals, src = ctx.internals, POS - 1
    arch_ = internals.arch
    for layer in range(internals.n_layers):
        if arch_.mlp_kind(layer) == "experts":
            with pytest.raises(NotAvailable, match="mixture of experts"):
                internals.neuron_parts(layer, src, [0])
            continue
        width = internals.mlp_activations(layer, slice(src, src + 1)).shape[-1]
        parts = internals.neuron_parts(layer, src, range(width))
        out = parts.sum(0) + arch_.mlp_projected(layer, torch.zeros(1, width))[0].float()
        if arch_.mlp_output_norm:
            out = getattr(internals.layers[layer], arch_.mlp_output_norm)(out[None])[0]
        assert close(out * arch_.contribution_scale, internals.mlp_out(layer)[src], 1e-5), (arch, layer)


def test_neuron_effects_add_up_and_match_their_parts(arch):
    ctx = context(arch)
    internals, src = ctx.internals, POS - 1
    view = compute("neuron_contributions", ctx, {"position": POS, "top_k": 5})
    stream = compute("residual_stream", ctx, {"position": POS})
    final = internals.residual(internals.n_layers)[src].float()
    token = view.target.token_id
    for entry in view.layers:
        assert close(entry.mlp_effect, stream.layers[entry.layer].mlp_logit, 1e-3), (arch, entry.layer)
        if entry.kind == "experts":
            assert entry.experts and not entry.top
            assert close(sum(e.effect for e in entry.experts), entry.mlp_effect, 1e-3)
            continue
        assert close(entry.neurons_effect + entry.rest_effect, entry.mlp_effect, 1e-3), (arch, entry.layer)
        magnitudes = [abs(n.effect) for n in entry.top]
        assert magnitudes == sorted(magnitudes, reverse=True) and len(entry.top) == 5
        # the gradient path against the forward one: each listed neuron's part through the read-out
        if not internals.arch.mlp_output_norm:
            parts = internals.neuron_parts(entry.layer, src, [n.neuron for n in entry.top])
            effects, _, _ = direct_effects(internals, parts * internals.arch.contribution_scale, final, token)
            assert close([n.effect for n in entry.top], effects, 1e-3), (arch, entry.layer)


def test_one_layer_of_neurons_and_its_foil():
    ctx = context("gpt2")
    token = ctx.trace.tokens[POS].id
    foil = (token + 3) % 200
    one = compute("neuron_contributions", ctx, {"position": POS, "layer": 1, "foil": foil, "top_k": 100})
    assert [e.layer for e in one.layers] == [1] and one.target.foil_label
    a = compute("neuron_contributions", ctx, {"position": POS, "layer": 1, "top_k": 100})
    b = compute("neuron_contributions", ctx, {"position": POS, "layer": 1, "token_id": foil, "top_k": 100})
    ea = {n.neuron: n.effect for n in a.layers[0].top}
    eb = {n.neuron: n.effect for n in b.layers[0].top}
    for n in one.layers[0].top:
        if n.neuron in ea and n.neuron in eb:
            assert close(n.effect, ea[n.neuron] - eb[n.neuron])


def test_logit_lens_follows_the_foil_and_watched_tokens():
    ctx = context("llama")
    token = ctx.trace.tokens[POS].id
    foil, watch = (token + 1) % 200, [5, 9]
    view = compute("logit_lens", ctx, {"position": POS, "foil": foil, "watch": watch})
    assert [w.id for w in view.watched] == list(dict.fromkeys([token, foil, *watch]))
    internals = ctx.internals
    for i, layer in enumerate(view.layers):
        logits = internals.logits(internals.residual(i)[POS - 1]).float()
        probs = logits.softmax(-1)
        assert layer.foil_rank == int((logits > logits[foil]).sum())
        assert close(layer.foil_prob, probs[foil]) and close(layer.logit_gap, logits[token] - logits[foil])
        for w in view.watched:
            assert w.ranks[i] == int((logits > logits[w.id]).sum()) and close(w.probs[i], probs[w.id])
    assert view.watched[0].ranks == [x.target_rank for x in view.layers]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("head_contributions", {"position": POS, "foil": 10**6}, "foil 1000000 is out of range"),
        ("head_contributions", {"position": 0}, "position"),
        ("neuron_contributions", {"position": POS, "layer": 99}, "layer 99 is out of range"),
        ("neuron_contributions", {"position": POS, "top_k": 0}, "top_k"),
        ("residual_stream", {"position": POS, "foil": 10**6}, "foil"),
        ("logit_lens", {"position": POS, "watch": [1, 2, 3, 4, 5, 6]}, "watch"),
        ("logit_lens", {"position": POS, "watch": [10**6]}, "watch 1000000 is out of range"),
    ],
)
def test_bad_targets_are_refused_with_the_reason(name, params, message):
    with pytest.raises(ViewParamError, match=message):
        compute(name, context(), params)


@pytest.mark.parametrize("name", ["head_contributions", "neuron_contributions", "residual_stream", "logit_lens"])
def test_the_foil_cannot_be_the_token_itself(name):
    ctx = context()
    with pytest.raises(ViewParamError, match="the foil is the token itself"):
        compute(name, ctx, {"position": POS, "foil": ctx.trace.tokens[POS].id})


# ----------------------------------------------------------------------------- contribution graph


def test_token_proximities_stream_what_the_parts_give(arch, monkeypatch):
    """The graph's proximities, computed as the keys stream through in chunks (of 5 here, mixed
    2 keys at a time, so a run has several of each and partial ones), equal those of
    token_contributions' parts, for queries at several positions (groups of 2, unordered)."""
    monkeypatch.setattr("llmvis.internals.KEY_CHUNK", 5)
    monkeypatch.setattr("llmvis.internals.MIX_KEYS", 2)
    monkeypatch.setattr("llmvis.internals.GROUP", 2)
    ctx = context(arch)
    internals = ctx.internals
    positions = [POS - 1, 2, POS - 3, 0, 5]
    for layer in internals.attention_layers():
        targets = torch.randn(len(positions), internals.residual(0).shape[-1]) * 3
        streamed = internals.token_proximities(layer, positions, targets)
        for t, p, (prox, rest), (parts, rest2) in zip(
            targets, positions, streamed, internals.token_contributions(layer, positions), strict=True
        ):
            mine = (t.abs().sum() - (t[None] - parts).abs().sum(-1)).clamp_min(0)
            assert prox.shape == (p + 1,) and close(prox, mine, 1e-4), (arch, layer, p)
            assert close(rest, rest2, 1e-6)


def test_token_contributions_are_eager_attention_times_values(arch):
    ctx = context(arch)
    internals, src = ctx.internals, POS - 1
    layers = internals.attention_layers()
    attentions = dict(zip(layers, eager_attentions(arch, ctx.trace.ids), strict=True))
    for layer in layers:
        [(tokens, rest)] = internals.token_contributions(layer, [src])
        by_head = internals.token_head_parts(layer, src, range(src + 1))
        assert close(tokens.sum(0) + rest, internals.attn_out(layer)[src], 1e-5), (arch, layer)
        assert close(by_head.sum(1), tokens, 1e-5)
        parts = by_head.transpose(0, 1)  # [H, src + 1, d]
        if internals.arch.attn_output_norm:
            continue  # rescaled by the linearised norm: checked through the sum
        v = internals.record(layer).v.float()
        h, hd = internals.n_heads, v.shape[-1]
        v = v.repeat_interleave(h // v.shape[0], dim=0)[:, : src + 1]  # [H, src + 1, hd]
        gate = internals.arch.head_gate(layer, internals.residual(layer)[src : src + 1])
        if gate is not None:
            v = v * gate[0][:, None]
        w = weight_columns(internals.arch.attn_out_projection(layer))
        for head in (0, h - 1):
            mine = attentions[layer][head, src, : src + 1, None] * (v[head] @ w[:, head * hd : (head + 1) * hd].T)
            assert close(parts[head], mine * internals.arch.attn_scale, 1e-4), (arch, layer, head)


def test_every_node_shares_sum_to_one_before_pruning(arch):
    ctx = context(arch, n=12)
    view = compute("contribution_graph", ctx, {"position": 11, "threshold": 0, "top_k": 64, "max_nodes": 512})
    assert view.dropped_edges == 0 and view.source_position == 10
    incoming: dict[tuple[int, int], float] = {}
    for e in view.edges:
        assert e.source <= e.target and 0 <= e.weight <= 1
        assert (e.kind == "residual") == (e.heads is None) or e.kind == "attention"
        incoming[(e.layer + 1, e.target)] = incoming.get((e.layer + 1, e.target), 0.0) + e.weight
    expanded = [node for node in view.nodes if node.unattributed is not None]
    assert len(expanded) > view.layers  # every position is reached with nothing pruned
    for node in expanded:
        total = incoming.get((node.layer, node.position), 0.0) + node.unattributed
        assert abs(total - 1) < 2e-3, (arch, node)
    top = [node for node in view.nodes if node.layer == view.layers]
    assert [(n.position, n.importance) for n in top] == [(10, 1.0)]


def reference_split(internals, layer: int, i: int) -> dict:
    """One node's shares straight from the module docstring's formulas, through
    token_contributions' parts (not the streamed proximities the graph uses)."""

    def prox(z: torch.Tensor, y: torch.Tensor) -> float:
        return max(0.0, float(y.abs().sum() - (y - z).abs().sum()))

    arch = internals.arch
    x, attn, mlp = (
        t[i].float() for t in (internals.residual(layer), internals.attn_out(layer), internals.mlp_out(layer))
    )
    extra = internals.extra_out(layer)
    extra = None if extra is None else extra[i].float()
    if layer in internals.missing_attention():
        tokens, rest = torch.zeros(i + 1, x.shape[0]), attn
    else:
        [(tokens, rest)] = internals.token_contributions(layer, [i])
    if arch.mlp_reads == "input":
        y = x + attn + mlp + (extra if extra is not None else 0)
        p_tok = [prox(z, y) for z in tokens] if layer not in internals.missing_attention() else [0.0] * (i + 1)
        loose = [prox(rest, y)] + ([prox(extra, y)] if extra is not None else [])
        total = (prox(x, y) + prox(mlp, y) + sum(p_tok) + sum(loose)) or 1.0
        return {"residual": (prox(x, y) + prox(mlp, y)) / total, "tokens": [p / total for p in p_tok],
                "unattributed": sum(loose) / total, "mlp": prox(mlp, y) / total}  # fmt: skip
    before = extra is not None and arch.extra_before_mlp
    mid = x + attn + (extra if before else 0)
    p_tok = [prox(z, mid) for z in tokens] if layer not in internals.missing_attention() else [0.0] * (i + 1)
    p_before = prox(rest, mid) + (prox(extra, mid) if before else 0.0)
    total = (prox(x, mid) + sum(p_tok) + p_before) or 1.0
    out = mid + mlp + (extra if extra is not None and not before else 0)
    q_mid, q_mlp = prox(mid, out), prox(mlp, out)
    q_after = prox(extra, out) if extra is not None and not before else 0.0
    out_total = (q_mid + q_mlp + q_after) or 1.0
    carried = (q_mid + q_mlp) / out_total
    return {"residual": prox(x, mid) / total * carried, "tokens": [p / total * carried for p in p_tok],
            "unattributed": p_before / total * carried + q_after / out_total, "mlp": q_mlp / out_total}  # fmt: skip


def test_a_layers_nodes_split_at_once_as_each_node_alone(arch):
    """The graph splits a layer's new nodes together; each equals the docstring's formulas for
    that node alone (residual, each token's, unattributed and MLP shares), on every family."""
    from llmvis.analyses.flow import _new_splits

    ctx = context(arch)
    internals = ctx.internals
    positions = [2, POS - 1, 9, 0]
    for layer in range(internals.n_layers):
        found = _new_splits(internals, layer, positions, internals.missing_attention())
        for i in positions:
            mine, ref = found[(layer + 1, i)], reference_split(internals, layer, i)
            assert close(mine.tokens, ref["tokens"], 1e-4), (arch, layer, i)
            for name in ("residual", "unattributed", "mlp"):
                assert abs(getattr(mine, name) - ref[name]) <= 1e-4, (arch, layer, i, name)


def test_pruning_bounds_the_graph():
    ctx = context("llama", n=T)
    view = compute("contribution_graph", ctx, {"position": POS, "threshold": 0.1, "top_k": 2, "max_nodes": 3})
    per_node: dict[tuple[int, int], int] = {}
    for e in view.edges:
        assert e.weight >= 0.1
        per_node[(e.layer, e.target)] = per_node.get((e.layer, e.target), 0) + 1
    assert max(per_node.values()) <= 2
    for layer in range(view.layers):
        assert len([n for n in view.nodes if n.layer == layer]) <= 3
    assert set(view.labels) == {n.position for n in view.nodes}


def same_graph(a, b) -> bool:
    """The same nodes and edges, their numbers equal but for the last rounded digit (products
    batched differently may round differently)."""

    def numbers(view):
        nodes = [(n.layer, n.position, n.importance, n.mlp_share, n.unattributed) for n in view.nodes]
        edges = [(e.layer, e.source, e.target, e.kind, e.weight, e.heads) for e in view.edges]
        return nodes, edges

    def near(x, y) -> bool:
        if isinstance(x, (list, tuple)):
            return isinstance(y, (list, tuple)) and len(x) == len(y) and all(map(near, x, y))
        if isinstance(x, float) and isinstance(y, float):
            return abs(x - y) <= 2e-4
        return x == y

    return a.dropped_edges == b.dropped_edges and near(numbers(a), numbers(b))


def test_a_graph_from_kept_nodes_equals_one_from_scratch(arch, monkeypatch):
    """Nodes' splits are kept with the run: the graphs of the next target and of another
    threshold reuse them, compute only the nodes they had not seen, and equal graphs computed
    in a fresh cache."""
    ctx = context(arch)
    asked = [
        {"position": POS, "threshold": 0.01, "top_k": 8},
        {"position": POS - 1, "threshold": 0.01, "top_k": 8},
        {"position": POS - 1, "threshold": 0.002, "top_k": 12},
    ]
    fresh = [compute("contribution_graph", context(arch), q) for q in asked]
    computed: list[list[int]] = []
    real = ctx.internals.token_proximities

    def counted(layer, positions, *a, **k):
        computed.append(list(positions))
        return real(layer, positions, *a, **k)

    monkeypatch.setattr(ctx.internals, "token_proximities", counted)
    for q, reference in zip(asked, fresh, strict=True):
        before = len(computed)
        view = compute("contribution_graph", ctx, q)
        assert same_graph(view, reference), (arch, q)
        if q is asked[2]:  # the same target: its graph shares at least the top node with the last
            new = sum(len(c) for c in computed[before:])
            assert new < len([n for n in view.nodes if n.unattributed is not None]), (arch, q)
    before = len(computed)
    assert same_graph(compute("contribution_graph", ctx, asked[0]), fresh[0])
    assert len(computed) == before  # asked again: nothing recomputed
    ahead = context(arch)  # value outputs computed ahead (where the family's graph reads them)
    warm_value_outputs(ahead.internals, lambda: None)
    assert same_graph(compute("contribution_graph", ahead, asked[0]), fresh[0])


def test_the_selected_tokens_graph_ahead_leaves_its_nodes_for_the_view(monkeypatch):
    """The graph warmed for a selected token keeps its nodes layer by layer: a view asked at one
    of its pauses (of another token) and the view of that token afterwards equal graphs from
    scratch, and the latter computes no node."""
    ctx = context("llama")
    fresh = {p: compute("contribution_graph", context("llama"), {"position": p}) for p in (POS, POS - 3)}
    computed: list[int] = []
    real = ctx.internals.token_proximities
    monkeypatch.setattr(
        ctx.internals,
        "token_proximities",
        lambda layer, positions, *a: computed.extend(positions) or real(layer, positions, *a),
    )
    seen: list = []
    paused: list[int] = []

    def pause() -> None:
        paused.append(1)
        if len(paused) == 1:  # after the top layer
            seen.append(compute("contribution_graph", ctx, {"position": POS - 3}))

    warm_graph(ctx.internals, POS, pause)
    assert len(paused) == ctx.internals.n_layers and same_graph(seen[0], fresh[POS - 3])
    before = len(computed)
    assert same_graph(compute("contribution_graph", ctx, {"position": POS}), fresh[POS])
    assert len(computed) == before
    warm_graph(ctx.internals, 0, pause)  # position 0 predicts nothing: no graph, no error
    assert len(computed) == before


def copy_head_model():
    """A GPT-2 whose layer-1 head 0 attends from every position to the one token X (its key is
    big where X's embedding is) and writes 50× louder than any other head."""
    import copy

    from llmvis.models.loaded import LoadedModel, describe, stop_token_ids
    from tiny_models import make_model

    model, tok = make_model("gpt2")
    model = copy.deepcopy(model)
    x, d, hd = 40, model.config.n_embd, model.config.n_embd // model.config.n_head
    with torch.no_grad():
        model.transformer.wte.weight[x] = 0.0
        model.transformer.wte.weight[x, 0] = 30.0
        attn = model.transformer.h[1].attn
        w, b = attn.c_attn.weight, attn.c_attn.bias  # Conv1D: x @ w + b; columns q | k | v
        w[:, :hd] = 0.0
        b[:hd] = 0.0
        b[0] = 10.0  # the same query everywhere, along dimension 0
        w[:, d : d + hd] = 0.0
        b[d : d + hd] = 0.0
        w[0, d] = 10.0  # keys: dimension 0 of the normed input, large only for X
        attn.c_proj.weight[:hd] *= 50.0
    info = describe(model, tok, name="copy-head", source="hf_dir", path="<copy-head>")
    return LoadedModel(model, tok, info, stop_token_ids(model, tok)), x


def test_a_copy_head_routes_the_copied_token_through_that_head():
    loaded, x = copy_head_model()
    ids = random_ids(loaded, 11, seed=2)
    ids = [x if i == 3 else (t if t != x else x + 1) for i, t in enumerate(ids)]
    ctx = view_context(loaded, ids, 5)
    assert float(ctx.internals.attention(1)[0, 9, 3]) > 0.99  # the hand-built head does copy
    view = compute("contribution_graph", ctx, {"position": 10, "threshold": 0.02})
    into_top = [e for e in view.edges if e.layer == 1 and e.target == 9 and e.kind == "attention"]
    strongest = max(into_top, key=lambda e: e.weight)
    assert strongest.source == 3 and strongest.weight > 0.1
    assert strongest.heads is not None and max(range(len(strongest.heads)), key=strongest.heads.__getitem__) == 0
    assert strongest.heads[0] > 0.9
