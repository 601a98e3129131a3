"""Views attention, multi_head, head_entropy, head_health on tiny models."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from llmvis.analyses import ViewContext, ViewParamError, compute
from llmvis.analyses.heads import label_head, probe_ids
from tiny_models import tiny_loaded
from trace_helpers import random_ids, view_context

T = 24


def context(arch: str = "llama", n: int = T, ids: list[int] | None = None) -> ViewContext:
    loaded = tiny_loaded(arch)
    ids = ids or random_ids(loaded, n, seed=3)
    return view_context(loaded, ids, n // 2)


def close(values, tensor, tol=1e-3) -> bool:
    """Rounded view values (4 significant digits) against a tensor."""
    return torch.allclose(torch.tensor(values, dtype=torch.float32), tensor.float(), atol=tol, rtol=1e-3)


# ----------------------------------------------------------------------------- attention


def test_attention_matrix_is_the_layer_attention(arch):
    ctx = context(arch)
    w = ctx.internals.attention(1)
    view = compute("attention", ctx, {"layer": 1, "head": 2})
    assert view.mode == "matrix" and not view.pooled
    assert view.row_indices == list(range(T)) and len(view.col_labels) == T
    assert close(view.matrix, w[2])
    assert close(compute("attention", ctx, {"layer": 1, "head": "mean"}).matrix, w.mean(0))
    assert close(compute("attention", ctx, {"layer": 1, "head": "max"}).matrix, w.amax(0))


def test_attention_window_and_pooling():
    ctx = context(n=40)
    w = ctx.internals.attention(0).mean(0)
    view = compute("attention", ctx, {"layer": 0, "start": 10, "end": 30, "max_cells": 8})
    assert view.pooled and view.start == 10 and view.end == 30
    assert view.row_indices == [10, 13, 16, 19, 22, 25, 28]  # bins of 3 positions
    window = w[10:30, 10:30]
    expected = [[float(window[r : r + 3, c : c + 3].max()) for c in range(0, 20, 3)] for r in range(0, 20, 3)]
    assert close(view.matrix, torch.tensor(expected))
    assert view.row_labels[0] == ctx.trace.tokens[10].label


def test_attention_chunked_path_equals_full(monkeypatch):
    """Long runs go through query chunks; force that path on a short run and compare."""
    import llmvis.analyses.attention as attention

    ctx = context(n=40)
    full = compute("attention", ctx, {"layer": 1, "max_cells": 16})
    monkeypatch.setattr(attention, "FULL_MATRIX_BYTES", 0)
    monkeypatch.setattr(attention, "CHUNK_BYTES", 4 * 4 * 40 * 5)  # a few rows per chunk
    chunked = compute("attention", ctx, {"layer": 1, "max_cells": 16})
    assert chunked.matrix == full.matrix and chunked.row_indices == full.row_indices


def test_attention_row_mode(arch):
    ctx = context(arch)
    view = compute("attention", ctx, {"position": 17})
    assert view.mode == "row" and view.end == 18
    layers = ctx.internals.attention_layers()  # a hybrid's other layers: None, and named
    assert [i for i, r in enumerate(view.rows) if r is None] == sorted(view.missing_layers) and len(view.rows) == 2
    rows = torch.tensor([view.rows[i] for i in layers])
    assert rows.shape == (len(layers), 4, 18)
    assert close(rows.tolist(), ctx.internals.attention_row(17)[layers, :, :18])
    if ctx.internals.record(layers[0]).sinks is None:  # with attention sinks (gpt-oss) rows sum to less
        assert torch.allclose(rows.sum(-1), torch.ones(len(layers), 4), atol=1e-3)


@pytest.mark.parametrize(
    "params",
    [{"layer": 2}, {"head": 4}, {"start": 5, "end": 5}, {"end": T + 1}, {"position": T}, {"max_cells": 1000}],
)
def test_attention_bad_params(params):
    with pytest.raises(ViewParamError):
        compute("attention", context(), params)


def test_bad_param_messages_give_the_range():
    with pytest.raises(ViewParamError, match=r"0\.\.1"):
        compute("attention", context(), {"layer": 2})
    with pytest.raises(ViewParamError, match=rf"0\.\.{T - 1}"):
        compute("attention", context(), {"position": T})


# ----------------------------------------------------------------------------- multi_head


def test_multi_head(arch):
    ctx = context(arch)
    view = compute("multi_head", ctx, {"layer": 1, "position": 20})
    w = ctx.internals.attention(1)
    assert len(view.matrices) == 4 and close(view.matrices, w)
    assert view.row_keys == list(range(21)) and close(view.rows, w[:, 20, :21])


def test_multi_head_pools_to_64():
    ctx = context(n=100)
    view = compute("multi_head", ctx, {"layer": 0})
    assert view.pooled and len(view.matrices[0]) <= 64 and len(view.matrices[0][0]) <= 64
    with pytest.raises(ViewParamError):
        compute("multi_head", ctx, {"layer": 0, "max_cells": 65})


def test_multi_head_pools_each_layer_once_for_every_token(monkeypatch):
    """The heads' matrices do not depend on the token: an arrow key pays only for the rows, and the
    summary ahead (warm_multi_head) pools the default layer before the Heads tab asks."""
    from llmvis.analyses import heads

    ctx = context(n=100)
    passes: list[int] = []
    real = heads.pooled_attention
    monkeypatch.setattr(
        heads,
        "pooled_attention",
        lambda internals, layer, *a, **k: passes.append(layer) or real(internals, layer, *a, **k),
    )
    from llmvis.analyses import attention

    monkeypatch.setattr(attention, "FULL_MATRIX_BYTES", 0)  # in chunks of query rows, as a long run's
    monkeypatch.setattr(attention, "CHUNK_ROWS", 10)
    paused: list[int] = []
    heads.warm_multi_head(ctx.internals, lambda: paused.append(1))
    assert passes == [0] and len(paused) >= 5  # a waiting view gets the model between chunks
    views = [compute("multi_head", ctx, {"layer": 0, "position": p}) for p in (40, 41, 99)]
    assert passes == [0] and views[0].matrices == views[2].matrices and views[0].rows != views[1].rows
    compute("multi_head", ctx, {"layer": 1, "position": 40})
    compute("multi_head", ctx, {"layer": 1, "position": 41})
    assert passes == [0, 1]
    fresh = context(n=100)  # the same run, nothing kept: the same numbers
    assert compute("multi_head", fresh, {"layer": 0, "position": 41}) == views[1]


def same_heads(a, b) -> bool:
    """The same Heads view, its weights equal but for the last rounded digit (attention computed
    in chunks of other sizes may round differently)."""

    def flat(v) -> list[float]:
        return [x for head in v.matrices for row in head for x in row] + [x for r in v.rows for x in r]

    same = a.model_dump(exclude={"matrices", "rows"}) == b.model_dump(exclude={"matrices", "rows"})
    return same and flat(a) == pytest.approx(flat(b), rel=2e-3, abs=1e-6)


def test_the_attention_tabs_pass_over_a_layer_leaves_the_heads_tabs_pooling(monkeypatch):
    """The Attention tab's whole layer of a long run (in chunks of rows) pools every head of it
    too, so the Heads tab opened next makes no second pass; its matrices equal a fresh pass's."""
    from llmvis.analyses import attention, heads

    monkeypatch.setattr(attention, "FULL_MATRIX_BYTES", 0)
    monkeypatch.setattr(attention, "CHUNK_ROWS", 7)
    reference = compute("multi_head", context(n=100), {"layer": 1, "position": 60})
    ctx = context(n=100)
    passes: list[int] = []
    real = heads.pooled_attention
    monkeypatch.setattr(heads, "pooled_attention", lambda *a, **k: passes.append(1) or real(*a, **k))
    compute("attention", ctx, {"layer": 1, "head": 2})
    assert same_heads(compute("multi_head", ctx, {"layer": 1, "position": 60}), reference) and passes == []
    compute("attention", ctx, {"layer": 0, "start": 10})  # part of the layer: not the heads' pooling
    compute("multi_head", ctx, {"layer": 0, "position": 60})
    assert passes == [1]
    # the Attention tab asked while the Heads tab's summary ahead is part-way through the layer:
    # the summary's rows and the view's make the same matrices, and the summary then stops
    ctx, paused = context(n=100), []

    def pause() -> None:
        paused.append(1)
        if len(paused) == 2:
            compute("attention", ctx, {"layer": 0})

    heads.warm_multi_head(ctx.internals, pause)
    assert len(paused) == 2
    fresh = compute("multi_head", context(n=100), {"layer": 0, "position": 60})
    assert same_heads(compute("multi_head", ctx, {"layer": 0, "position": 60}), fresh)


def test_a_view_let_in_part_way_through_the_heads_summary_goes_on_from_its_rows(monkeypatch):
    """The Heads tab asked while its summary ahead is part-way through the layer pools the rows
    left only (each query row is computed once) and keeps the result; the summary then stops."""
    from llmvis.analyses import attention, heads
    from llmvis.internals import Internals

    monkeypatch.setattr(attention, "FULL_MATRIX_BYTES", 0)
    monkeypatch.setattr(attention, "CHUNK_ROWS", 10)
    ctx = context(n=100)
    reference = compute("multi_head", context(n=100), {"layer": 0, "position": 41})
    rows: list[int] = []
    real = Internals.attention

    def counted(self, layer, q=None, *a):
        if isinstance(q, slice):  # the pooling's chunks (the token's own row is a list)
            rows.extend(range(q.start, q.stop))
        return real(self, layer, q, *a)

    monkeypatch.setattr(Internals, "attention", counted)
    seen: list = []
    paused: list[int] = []

    def pause() -> None:
        paused.append(1)
        if len(paused) == 3:
            seen.append(compute("multi_head", ctx, {"layer": 0, "position": 41}))

    heads.warm_multi_head(ctx.internals, pause)
    assert len(paused) == 3 and sorted(rows) == list(range(100))
    assert seen[0] == reference


# ----------------------------------------------------------------------------- head_entropy


def test_head_entropy_position_matches_definition():
    ctx = context("mistral")
    view = compute("head_entropy", ctx, {"position": 20})
    row = ctx.internals.attention_row(20)  # [L, H, T]
    p = row[0, 1]
    expected = -(p[p > 0] * p[p > 0].log()).sum() / math.log(8)  # mistral sees 8 keys
    assert view.entropy[0][1] == pytest.approx(float(expected), rel=1e-3)
    assert all(0.0 <= v <= 1.0 + 1e-6 for r in view.entropy for v in r)


def test_head_entropy_average_and_bounds(arch):
    ctx = context(arch)
    view = compute("head_entropy", ctx, {})
    assert view.mode == "average" and view.positions_used == T - 1
    layers = ctx.internals.attention_layers()
    assert [i for i, r in enumerate(view.entropy) if r is None] == sorted(view.missing_layers)
    ent = torch.tensor([view.entropy[i] for i in layers])
    assert ent.shape == (len(layers), 4) and (ent > 0).all() and (ent <= 1.0001).all()
    from llmvis.analyses.heads import normalised_entropy

    health = compute("head_health", ctx, {})  # the same pass, shared through the cache
    for row, layer in zip(ent, layers, strict=True):
        w = ctx.internals.attention(layer)[:, 1:]  # every query but position 0
        expected = normalised_entropy(w, ctx.internals.visible_keys(layer, range(1, T))[None, :]).mean(-1)
        assert torch.allclose(row, expected, atol=2e-4)
        theirs = [s.entropy for s in health.scores if s.layer == layer]
        assert theirs == pytest.approx(row.tolist(), abs=1e-4)
    sampled = compute("head_entropy", ctx, {"max_queries": 8})
    assert sampled.positions_used == 8


def test_default_queries_keep_the_pass_about_constant_past_2048():
    from llmvis.analyses.heads import QUERY_KEYS, default_queries

    assert [default_queries(t) for t in (24, 1664, 2048)] == [256, 256, 256]
    assert default_queries(3000) == 174 and default_queries(4096) == default_queries(100_000) == 128
    lengths = range(2048, 9000, 97)
    assert all(default_queries(t) * t <= QUERY_KEYS for t in lengths if default_queries(t) > 128)
    assert all(default_queries(a) >= default_queries(b) for a, b in itertools.pairwise(lengths))


def test_a_long_runs_head_views_sample_fewer_queries_and_say_so(monkeypatch):
    from llmvis.analyses import heads
    from llmvis.analyses.attention import sample_positions

    monkeypatch.setattr(heads, "QUERY_KEYS", 8 * T)  # this run is "long": 8 rows by default
    monkeypatch.setattr(heads, "MIN_QUERIES", 4)
    ctx = context()
    heads.warm_head_scores(ctx.internals, lambda: None)  # the summary ahead: the same rows as the views
    passes = []
    monkeypatch.setattr(heads, "_layer_sums", lambda *a: passes.append(a) or torch.zeros(4, 4))
    health, entropy = compute("head_health", ctx, {}), compute("head_entropy", ctx, {})
    assert not passes  # both read the summary's sums
    assert health.positions_used == entropy.positions_used == len(sample_positions(1, T, 8)) < T - 1
    assert health.sequence_length == entropy.sequence_length == T
    monkeypatch.undo()
    explicit = compute("head_health", ctx, {"max_queries": 8})
    assert explicit.scores == health.scores


def test_uniform_attention_has_entropy_one():
    from llmvis.analyses.heads import normalised_entropy

    w = torch.full((3, 10), 0.1)
    assert torch.allclose(normalised_entropy(w, torch.tensor([10, 10, 10])), torch.ones(3))
    one_hot = torch.zeros(1, 10)
    one_hot[0, 4] = 1.0
    assert normalised_entropy(one_hot, torch.tensor([10])).item() == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- head_health


def test_label_rule():
    assert label_head(0.9, 0.0, None, 0.1) == "sink"
    assert label_head(0.1, 0.8, 0.0, 0.1) == "previous-token"
    assert label_head(0.5, 0.1, 0.6, 0.1) == "induction"  # 0.6/0.3 beats 0.5/0.5
    assert label_head(0.1, 0.1, 0.1, 0.2) == "focused"
    assert label_head(0.1, 0.1, None, 0.9) == "diffuse"


def test_head_health_scores_match_attention():
    ids = random_ids(tiny_loaded("llama"), 12, seed=5)
    ids = ids + ids  # a repeat, so induction has targets
    ctx = context(ids=ids)
    view = compute("head_health", ctx, {})
    assert view.source == "run" and len(view.scores) == 8
    w = ctx.internals.attention(1)[2]
    qs = torch.arange(1, 24)
    score = next(s for s in view.scores if s.layer == 1 and s.head == 2)
    assert score.sink == pytest.approx(float(w[qs, 0].mean()), rel=1e-3)
    assert score.previous == pytest.approx(float(w[qs, qs - 1].mean()), rel=1e-3)
    # Second half (q = 12..23): the token after the earlier occurrence is at q - 11.
    assert len(set(ids[:12])) == 12 and view.induction_positions == 12
    second = torch.arange(12, 24)
    assert score.induction == pytest.approx(float(w[second, second - 11].mean()), rel=1e-3)


def test_head_health_probe():
    ctx = context()
    view = compute("head_health", ctx, {"probe": True, "probe_len": 16})
    assert view.source == "probe" and view.sequence_length == 33  # BOS + 2 × 16
    assert view.induction_positions >= 16
    ids = probe_ids(ctx.internals, 16, 0)
    assert ids[1:17] == ids[17:] and ids[0] == ctx.loaded.tokenizer.bos_token_id
    assert all(s.label in {"sink", "previous-token", "induction", "diffuse", "focused"} for s in view.scores)


def test_head_health_run_without_repeats_has_no_induction():
    loaded = tiny_loaded("llama")
    ids = list(range(10, 10 + T))
    view = compute("head_health", context(ids=ids), {})
    assert view.induction_positions == 0 and all(s.induction is None for s in view.scores)
    assert loaded is not None
