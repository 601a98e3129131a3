"""Views `tokens` and `uncertainty`: values equal the trace's statistics, orderings hold, limits hold."""

from __future__ import annotations

import math

import pytest
import torch

from llmvis.analyses import ViewContext, ViewParamError, compute
from llmvis.analyses.common import round4
from tiny_models import tiny_loaded
from trace_helpers import make_trace, random_ids

PROMPT = 12


def _greedy(loaded, ids: list[int], n: int) -> list[int]:
    ids = list(ids)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(loaded.model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids


@pytest.fixture(scope="module")
def trace():
    """12 prompt tokens, 6 greedy tokens (top-1), then 6 random tokens (almost surely not top-1)."""
    loaded = tiny_loaded("llama")
    ids = _greedy(loaded, random_ids(loaded, PROMPT, seed=1), 6) + random_ids(loaded, 6, seed=2)
    return make_trace(loaded, ids, PROMPT)


def test_series_equal_trace_stats(trace):
    view = compute("tokens", ViewContext(trace), {})
    t = len(trace.tokens)
    assert len(view.confidence) == len(view.entropy) == len(view.sampled_confidence) == t
    assert view.entropy[0] is None and view.confidence[0] is None  # position 0 has no prefix
    for tok in trace.tokens[1:]:
        s = tok.stats
        i = tok.position
        assert view.entropy[i] == round4(s.raw_entropy)
        assert view.confidence[i] == round4(s.raw_prob)
        assert view.sampled_confidence[i] == (None if s.sampled_prob is None else round4(s.sampled_prob))


def test_candidates_and_chosen(trace):
    ctx = ViewContext(trace)
    greedy = compute("tokens", ctx, {"position": PROMPT + 1, "top_n": 3})
    assert [c.id for c in greedy.candidates] == [c.id for c in trace.tokens[PROMPT + 1].stats.top[:3]]
    assert [c.chosen for c in greedy.candidates] == [True, False, False]
    assert greedy.chosen.rank == 0 and greedy.chosen.in_top
    assert greedy.chosen.logit == greedy.candidates[0].logit
    assert greedy.candidates[0].sampled_prob == 1.0
    pos = PROMPT + 7
    other = compute("tokens", ctx, {"position": pos})
    s = trace.tokens[pos].stats
    assert other.chosen.rank == s.rank > 0
    assert other.chosen.logit == round4(s.top[0].logit - s.gap_to_top1)
    assert other.chosen.in_top == any(c.id == trace.tokens[pos].id for c in s.top)
    default = compute("tokens", ctx, {})
    assert default.position == PROMPT  # first generated token
    first = compute("tokens", ctx, {"position": 0})
    assert first.candidates == [] and first.chosen.raw_prob is None


def test_sort_orders(trace):
    ctx = ViewContext(trace)
    ent = compute("tokens", ctx, {"sort": "entropy"})
    values = [ent.entropy[i] for i in ent.order[:-1]]
    assert values == sorted(values, reverse=True)
    assert ent.order[-1] == 0  # no stats: last
    prob = compute("tokens", ctx, {"sort": "probability"})
    values = [prob.confidence[i] for i in prob.order[:-1]]
    assert values == sorted(values)
    rev = compute("tokens", ctx, {"sort": "probability", "reverse": True})
    values = [rev.confidence[i] for i in rev.order[:-1]]
    assert values == sorted(values, reverse=True)
    assert compute("tokens", ctx, {}).order == list(range(len(trace.tokens)))
    assert sorted(ent.order) == list(range(len(trace.tokens)))


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("tokens", {"position": 999}, "beyond the run"),
        ("tokens", {"position": -1}, "position"),
        ("tokens", {"top_n": 0}, "top_n"),
        ("tokens", {"sort": "alphabet"}, "sort"),
        ("uncertainty", {"limit": 0}, "limit"),
        ("uncertainty", {"scope": "everything"}, "scope"),
    ],
)
def test_bad_params(trace, name, params, match):
    with pytest.raises(ViewParamError, match=match):
        compute(name, ViewContext(trace), params)


def test_uncertainty_rankings(trace):
    view = compute("uncertainty", ViewContext(trace), {"limit": 4})
    gen = trace.tokens[PROMPT:]
    assert view.considered == len(gen)
    top_ent = sorted(gen, key=lambda t: -t.stats.raw_entropy)[:4]
    assert [h.position for h in view.by_entropy] == [t.position for t in top_ent]
    low = sorted(gen, key=lambda t: t.stats.raw_prob)[:4]
    assert [h.position for h in view.by_low_confidence] == [t.position for t in low]
    missed = {t.position for t in gen if t.stats.rank != 0}
    assert view.not_top1_count == len(missed) == 6
    gaps = [h.gap_to_top1 for h in view.not_top1]
    assert gaps == sorted(gaps, reverse=True) and {h.position for h in view.not_top1} <= missed
    # Each hotspot's reasons are exactly the rankings it appears in.
    sets = {
        "high_entropy": {h.position for h in view.by_entropy},
        "low_confidence": {h.position for h in view.by_low_confidence},
        "not_top1": {h.position for h in view.not_top1},
    }
    assert len(view.hotspots) <= 4
    for h in view.hotspots:
        assert set(h.reasons) == {r for r, s in sets.items() if h.position in s}
        assert h.detail
    counts = [len(h.reasons) for h in view.hotspots]
    assert counts == sorted(counts, reverse=True)


def test_uncertainty_scope(trace):
    ctx = ViewContext(trace)
    gen = compute("uncertainty", ctx, {"limit": 200})
    assert all(h.position >= PROMPT for h in gen.by_entropy)
    everything = compute("uncertainty", ctx, {"scope": "all", "limit": 200})
    assert everything.considered == len(trace.tokens) - 1
    assert {h.position for h in everything.by_entropy} == set(range(1, len(trace.tokens)))


def test_json_size_at_4096():
    loaded = tiny_loaded("llama", layers=1)
    trace = make_trace(loaded, random_ids(loaded, 4096), 2048)
    ctx = ViewContext(trace)
    for name, params in [("tokens", {"top_n": 50, "sort": "entropy"}), ("uncertainty", {"limit": 200})]:
        size = len(compute(name, ctx, params).model_dump_json())
        assert size <= 1_000_000, (name, size)


def test_uncertainty_says_when_a_remote_engine_gave_only_bounds(trace):
    """A remote engine's token: the entropy is a lower bound and a rank past its top-N is '≥ N'."""
    from llmvis.remote.stats import Returned, remote_stats

    remote = trace.model_copy(deep=True)
    tok = remote.tokens[-1]
    tok.stats = remote_stats(
        Returned(tok.id, tok.label, math.log(0.01)),
        [Returned(1, "a", math.log(0.5)), Returned(2, "b", math.log(0.2))],
        vocab=400,
    )
    view = compute("uncertainty", ViewContext(remote), {"limit": 30})
    spot = next(h for h in view.hotspots if h.position == tok.position)
    assert "rank ≥ 2" in spot.detail and spot.entropy_upper == round4(tok.stats.entropy_upper)
    assert spot.entropy <= spot.entropy_upper
    local = next(h for h in view.hotspots if h.position != tok.position)
    assert local.entropy_upper is None and "≥" not in local.detail
