"""Views tokens, uncertainty, activations, embedding, attribution on the bundled SmolLM2.

One run: "The capital of France is" followed by 8 greedy tokens (" Paris", ...).
"""

from __future__ import annotations

import pytest
import torch

from llmvis.analyses import compute
from trace_helpers import view_context

pytestmark = pytest.mark.integration

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def run(bundled):
    tok = bundled.tokenizer
    ids = tok(PROMPT)["input_ids"]
    prompt_len = len(ids)
    with torch.no_grad():
        for _ in range(8):
            ids.append(int(bundled.model(torch.tensor([ids], device=bundled.device)).logits[0, -1].argmax()))
    ctx = view_context(bundled, ids, prompt_len)
    return ctx, prompt_len


def test_tokens(run):
    ctx, p = run
    view = compute("tokens", ctx, {"sort": "entropy"})
    assert view.position == p and view.chosen.label == " Paris"
    assert view.chosen.rank == 0 and view.candidates[0].chosen
    assert sum(c.raw_prob for c in view.candidates) <= 1.0 + 1e-3
    ranks = [compute("tokens", ctx, {"position": i}).chosen.rank for i in range(p, p + 8)]
    assert ranks == [0] * 8  # greedy: every generated token is top-1
    ent = [view.entropy[i] for i in view.order[:-1]]
    assert ent == sorted(ent, reverse=True)


def test_uncertainty(run):
    ctx, _ = run
    view = compute("uncertainty", ctx, {"limit": 3})
    assert view.considered == 8 and view.not_top1_count == 0 and view.not_top1 == []
    assert len(view.hotspots) == 3 and all("not_top1" not in h.reasons for h in view.hotspots)
    assert view.by_entropy[0].entropy >= view.by_entropy[-1].entropy


def test_activations(run):
    ctx, _ = run
    view = compute("activations", ctx, {"bins": 32})
    t, info = len(ctx.trace.tokens), ctx.trace.model
    assert len(view.mlp.layers) == len(view.attn.layers) == info.layers
    for dist, width in ((view.mlp, info.intermediate_size), (view.attn, info.hidden_size)):
        assert dist.edges == sorted(dist.edges) and len(dist.edges) == 33
        for row in dist.layers:
            assert row.n == t * width
            assert sum(row.counts) + row.underflow + row.overflow == row.n
            assert row.std > 0 and row.min <= row.mean <= row.max


def test_embedding(run):
    ctx, _ = run
    view = compute("embedding", ctx, {"dims": 3})
    ratios = view.explained_variance_ratio
    assert ratios == sorted(ratios, reverse=True) and sum(view.scree) <= 1.0 + 1e-3
    assert view.labels[:2] == ["The", " capital"] and len(view.coords) == len(ctx.trace.tokens)
    mid = compute("embedding", ctx, {"layer": 15, "method": "tsne", "exclude_first": True})
    assert mid.positions[0] == 1 and len(mid.coords) == len(ctx.trace.tokens) - 1


def test_attribution(run):
    ctx, p = run
    roll = compute("attribution", ctx, {"position": p})
    assert roll.target_label == " Paris" and sum(roll.scores) == pytest.approx(1.0, abs=1e-3)
    grad = compute("attribution", ctx, {"position": p, "method": "grad_x_input"})
    with torch.no_grad():
        logit = ctx.loaded.model(torch.tensor([ctx.trace.ids[:p]])).logits[0, -1, ctx.trace.ids[p]]
    assert grad.output == pytest.approx(float(logit), rel=1e-3)
    ig = compute("attribution", ctx, {"position": p, "method": "integrated_gradients", "steps": 32})
    gap = ig.output - ig.baseline_output
    assert abs(sum(ig.scores) - gap) <= abs(ig.delta) + 1e-2
    assert abs(ig.delta) <= 0.05 * abs(gap)  # measured 0.15 of 14.3 at 32 steps
    assert ig.scores[0] == 0.0 and ig.kept_first
