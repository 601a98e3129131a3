"""Views layer_similarity, residual_stream, logit_lens: closed-form checks on tiny models."""

from __future__ import annotations

import pytest
import torch

from llmvis.analyses import ViewContext, ViewParamError, compute
from tiny_models import tiny_loaded
from trace_helpers import make_trace, random_ids, view_context

T = 24


def context(arch: str = "llama", n: int = T) -> ViewContext:
    loaded = tiny_loaded(arch)
    ids = random_ids(loaded, n, seed=4)
    return view_context(loaded, ids, n // 2)


def final_logits(ctx: ViewContext, pos: int, capped: bool = True) -> torch.Tensor:
    """The model's own logits at `pos` from its plain forward; `capped=False`: the same forward
    with the final soft-cap switched off in its config (which the forward reads at each call)."""
    model = ctx.loaded.model
    cap = getattr(model.config, "final_logit_softcapping", None)
    try:
        if not capped:
            model.config.final_logit_softcapping = None
        with torch.no_grad():
            return model(torch.tensor([ctx.trace.ids])).logits[0, pos].float()
    finally:
        model.config.final_logit_softcapping = cap


# ----------------------------------------------------------------------------- logit_lens


def test_logit_lens_last_layer_is_the_model_distribution(arch):
    ctx = context(arch)
    view = compute("logit_lens", ctx, {"position": 15, "top_k": 5})
    assert view.source_position == 14 and len(view.layers) == 3  # hidden states 0..L
    last = view.layers[-1]
    probs = torch.softmax(final_logits(ctx, 14), -1)
    top_p, top_i = probs.topk(5)
    assert [t.id for t in last.top] == top_i.tolist()
    assert [t.prob for t in last.top] == pytest.approx(top_p.tolist(), rel=1e-3)
    stats = ctx.trace.tokens[15].stats  # recorded from an independent forward
    assert last.target_prob == pytest.approx(stats.raw_prob, rel=1e-3)
    assert last.target_rank == stats.rank and view.token_id == ctx.trace.tokens[15].id


def test_logit_lens_middle_layer_is_norm_and_unembedding_of_that_layer():
    ctx = context("qwen3")
    view = compute("logit_lens", ctx, {"position": 10})
    hidden = ctx.internals.residual(1)[9]
    with torch.no_grad():
        expected = torch.softmax(ctx.loaded.model.lm_head(ctx.loaded.model.model.norm(hidden)), -1)
    assert view.layers[1].target_prob == pytest.approx(float(expected[ctx.trace.tokens[10].id]), rel=1e-3)
    assert view.layers[1].top[0].id == int(expected.argmax())


@pytest.mark.parametrize("params", [{"position": 0}, {"position": T}, {"top_k": 0}, {"top_k": 21}])
def test_logit_lens_bad_params(params):
    with pytest.raises(ViewParamError):
        compute("logit_lens", context(), params)


# ----------------------------------------------------------------------------- residual_stream


def test_residual_contributions_sum_to_final_residual(arch):
    ctx = context(arch)
    it = ctx.internals
    parts = [
        it.attn_out(i) + it.mlp_out(i) + (it.extra_out(i) if it.arch.extra_part else 0) for i in range(it.n_layers)
    ]
    assert torch.allclose(it.residual(0) + sum(parts), it.residual(it.n_layers), atol=1e-5)


def test_residual_stream_effects_sum_to_the_logit(arch):
    ctx = context(arch)
    view = compute("residual_stream", ctx, {"position": 20})
    token = ctx.trace.tokens[20].id
    logit = float(final_logits(ctx, 19, capped=False)[token])
    effects = view.embedding_logit + sum(x.attn_logit + x.mlp_logit + (x.extra_logit or 0.0) for x in view.layers)
    assert (view.extra_part is None) == all(x.extra_logit is None for x in view.layers)
    assert view.logit == pytest.approx(logit, rel=1e-3, abs=1e-3)
    assert effects == pytest.approx(logit, rel=1e-2, abs=1e-2)  # each term rounded to 4 digits


def test_residual_stream_norms():
    ctx = context()
    view = compute("residual_stream", ctx, {"position": 5, "token_id": 7})
    it = ctx.internals
    assert view.token_id == 7 and view.source_position == 4
    assert view.layers[1].residual_norm == pytest.approx(float(it.residual(1)[4].norm()), rel=1e-3)
    assert view.layers[0].attn_norm == pytest.approx(float(it.attn_out(0)[4].norm()), rel=1e-3)
    assert view.layers[1].mlp_norm == pytest.approx(float(it.mlp_out(1)[4].norm()), rel=1e-3)
    assert view.final_norm == pytest.approx(float(it.residual(2)[4].norm()), rel=1e-3)


@pytest.mark.parametrize("params", [{"position": 0}, {"position": T}, {"token_id": 10**6}])
def test_residual_stream_bad_params(params):
    with pytest.raises(ViewParamError):
        compute("residual_stream", context(), params)


# ----------------------------------------------------------------------------- layer_similarity


def test_layer_similarity(arch):
    ctx = context(arch)
    view = compute("layer_similarity", ctx, {"position": 7})
    m = torch.tensor(view.matrix)
    assert m.shape == (3, 3)
    assert torch.allclose(m.diagonal(), torch.ones(3), atol=1e-4)  # a layer with itself is 1
    assert torch.allclose(m, m.T)
    assert torch.allclose(torch.tensor(view.matrix_mean).diagonal(), torch.ones(3), atol=1e-4)
    assert view.vs_last[-1] == pytest.approx(1.0) and view.vs_last_mean[-1] == pytest.approx(1.0)
    h0, h1 = ctx.internals.residual(0)[7], ctx.internals.residual(1)[7]
    assert view.consecutive[0] == pytest.approx(float(torch.cosine_similarity(h0, h1, dim=0)), rel=1e-3)
    all0, all1 = ctx.internals.residual(0), ctx.internals.residual(1)
    mean01 = float(torch.cosine_similarity(all0, all1, dim=-1).mean())
    assert view.consecutive_mean[0] == pytest.approx(mean01, rel=1e-3)
    # the run's mean is kept: another position reads it, and it is the same
    kept = ctx.internals.cache.peek((ctx.internals.key, "mean_cosine"))
    assert kept is not None and torch.allclose(kept, torch.tensor(view.matrix_mean), atol=1e-4)
    assert compute("layer_similarity", ctx, {"position": 3}).matrix_mean == view.matrix_mean


def test_layer_similarity_mean_computed_ahead_pauses_between_chunks(monkeypatch):
    """The summary ahead lets a waiting view in between chunks of positions, and keeps the same mean."""
    from llmvis.analyses import layers

    ctx = context("llama")
    monkeypatch.setattr(layers, "SIM_CHUNK", 4)
    paused: list[int] = []
    layers.warm_layer_similarity(ctx.internals, lambda: paused.append(1))
    assert len(paused) == -(-ctx.internals.n_positions // 4) - 1
    kept = ctx.internals.cache.peek((ctx.internals.key, "mean_cosine"))
    fresh = context("llama")
    assert kept is not None and torch.allclose(kept, layers.mean_cosine_matrix(fresh.internals), atol=1e-5)


def test_a_view_let_in_part_way_through_the_layer_similarity_summary_goes_on_from_there(monkeypatch):
    """A view asked at one of the summary's pauses adds the chunks left to the sum so far (each
    chunk is read once) and keeps the mean; the summary then finds it kept and stops."""
    from llmvis.analyses import layers
    from llmvis.internals import Internals

    ctx = context("llama")
    internals = ctx.internals
    monkeypatch.setattr(layers, "SIM_CHUNK", 4)
    read: list[int] = []
    real = Internals.residual
    monkeypatch.setattr(Internals, "residual", lambda self, i: read.append(i) or real(self, i))
    view = Internals(internals.loaded, internals.ids, cache=internals.cache)
    got: list[torch.Tensor] = []
    paused: list[int] = []

    def pause() -> None:
        paused.append(1)
        if len(paused) == 2:
            got.append(layers.mean_cosine_matrix(view))

    internals.capture()
    read.clear()
    layers.warm_layer_similarity(internals, pause)
    chunks = -(-internals.n_positions // 4)
    assert len(paused) == 2 and len(read) == chunks * (internals.n_layers + 1) + 2  # (+2: each probes the device)
    kept = internals.cache.peek((internals.key, "mean_cosine"))
    assert kept is got[0]
    assert torch.allclose(kept, layers.mean_cosine_matrix(context("llama").internals), atol=1e-5)


def test_layer_similarity_bad_position():
    with pytest.raises(ViewParamError):
        compute("layer_similarity", context(), {"position": T})


def test_views_need_internals():
    loaded = tiny_loaded("llama")
    trace = make_trace(loaded, random_ids(loaded, 8), 4)
    for name in ("logit_lens", "residual_stream", "layer_similarity", "attention", "head_entropy"):
        with pytest.raises(ViewParamError):
            compute(name, ViewContext(trace, None, None), {})
