"""Attention and layer views on the bundled SmolLM2-135M: one test per view, real behaviour."""

from __future__ import annotations

import pytest
import torch

from llmvis.analyses import ViewContext, compute
from trace_helpers import view_context

pytestmark = pytest.mark.integration

PROMPT = (
    "The capital of France is Paris. The capital of Italy is Rome. "
    "The capital of Germany is Berlin. The capital of France is Paris."
)


@pytest.fixture(scope="module")
def ctx(bundled) -> ViewContext:
    ids = bundled.tokenizer(PROMPT)["input_ids"]
    return view_context(bundled, ids, 10)


def test_recomputed_attention_equals_eager_on_the_bundled_model(ctx):
    model = ctx.loaded.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            ref = model(torch.tensor([ctx.trace.ids]), output_attentions=True).attentions
    finally:
        model.set_attn_implementation(previous)
    worst = max((ctx.internals.attention(i) - ref[i][0]).abs().max().item() for i in range(30))
    assert worst <= 1e-5


def test_attention(ctx):
    view = compute("attention", ctx, {"layer": 5, "head": 0})
    t = len(ctx.trace.tokens)
    m = torch.tensor(view.matrix)
    assert m.shape == (t, t) and m.triu(1).abs().max() == 0
    assert torch.allclose(m.sum(-1), torch.ones(t), atol=2e-3)
    row = compute("attention", ctx, {"position": t - 1})
    assert torch.tensor(row.rows).shape == (30, 9, t)


def test_multi_head(ctx):
    view = compute("multi_head", ctx, {"layer": 3})
    assert view.heads == 9 and len(view.matrices) == 9 and len(view.rows) == 9


def test_head_entropy(ctx):
    ent = torch.tensor(compute("head_entropy", ctx, {}).entropy)
    assert ent.shape == (30, 9) and (ent >= 0).all() and (ent <= 1.0001).all()
    assert ent.min() < 0.5  # a trained model has sharp heads, unlike a random one


def test_head_health_finds_induction_and_sink_heads(ctx):
    view = compute("head_health", ctx, {"probe": True})
    labels = {s.label for s in view.scores}
    assert {"induction", "sink"} <= labels
    best = max(view.scores, key=lambda s: s.induction or 0.0)
    assert best.induction > 0.5 and best.layer > 0  # induction needs an earlier layer


def test_layer_similarity(ctx):
    view = compute("layer_similarity", ctx, {})
    diag = torch.tensor(view.matrix).diagonal()
    assert torch.allclose(diag, torch.ones(31), atol=1e-3)
    # Middle layers change the stream little; it approaches its final direction near the end.
    assert sorted(view.consecutive_mean)[15] > 0.9
    assert view.vs_last_mean[-2] > view.vs_last_mean[1]


def test_residual_stream(ctx):
    view = compute("residual_stream", ctx, {})
    total = view.embedding_logit + sum(x.attn_logit + x.mlp_logit for x in view.layers)
    assert total == pytest.approx(view.logit, rel=1e-2, abs=0.05)
    assert len(view.layers) == 30


def test_logit_lens(ctx):
    pos = len(ctx.trace.tokens) - 1  # the final "." after a repeated sentence: easy to predict
    view = compute("logit_lens", ctx, {"position": pos})
    last = view.layers[-1]
    assert last.target_prob == pytest.approx(ctx.trace.tokens[pos].stats.raw_prob, rel=1e-3)
    assert last.target_rank == 0 and last.target_prob > 0.3
    assert view.layers[0].target_prob < last.target_prob  # the prediction forms over the layers
