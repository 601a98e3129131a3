"""View `activations`: histograms count every value, moments are right, edges are shared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmvis.analyses import activations as act
from llmvis.analyses.common import round4
from llmvis.analyses.registry import ViewContext, ViewParamError, compute
from tiny_models import tiny_loaded
from trace_helpers import random_ids, view_context


@pytest.fixture(scope="module")
def ctx():
    loaded = tiny_loaded("llama")
    ids = random_ids(loaded, 24, seed=3)
    return view_context(loaded, ids, 16)


def test_kurtosis_of_known_samples():
    two_point = torch.tensor([-1.0, 1.0] * 50)  # m2 = m4 = 1 → 1 − 3
    assert act.moments(two_point)["kurtosis"] == pytest.approx(-2.0)
    spike = torch.tensor([-1.0, 0, 0, 0, 0, 0, 0, 1.0])  # m2 = m4 = 1/4 → 4 − 3
    assert act.moments(spike)["kurtosis"] == pytest.approx(1.0)
    uniform = torch.linspace(-1, 1, 100_001)  # continuous uniform: −6/5
    assert act.moments(uniform)["kurtosis"] == pytest.approx(-1.2, abs=1e-3)
    assert act.moments(torch.full((10,), 3.0))["kurtosis"] is None  # constant: undefined


def test_moments_match_numpy():
    x = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0)) * 2 + 1
    m = act.moments(x)
    a = x.double().numpy().ravel()
    assert m["mean"] == pytest.approx(a.mean(), rel=1e-9)
    assert m["std"] == pytest.approx(a.std(), rel=1e-9)  # population std
    assert m["min"] == a.min() and m["max"] == a.max() and m["abs_max"] == np.abs(a).max()


def test_histogram_counts_every_value():
    x = torch.randn(5000, generator=torch.Generator().manual_seed(1))
    x[:7] = 50.0  # far outliers above
    x[7:10] = -50.0
    edges = torch.linspace(-3, 3, 17, dtype=torch.float64)
    counts, under, over = act.histogram(x, edges)
    assert sum(counts) + under + over == x.numel()
    assert under >= 3 and over >= 7
    inside = x[(x >= -3) & (x <= 3)].double().numpy()
    assert counts == np.histogram(inside, bins=edges.numpy())[0].tolist()  # numpy: last bin closed
    ends = torch.tensor([-3.0, 3.0, 3.0])  # exactly on the edges: first and last bin
    counts, under, over = act.histogram(ends, edges)
    assert counts[0] == 1 and counts[-1] == 2 and under == over == 0


def test_view_stats_equal_internals(ctx):
    view = compute("activations", ctx, {"bins": 32, "clip": 0.0})
    internals = ctx.internals
    assert len(view.mlp.layers) == len(view.attn.layers) == internals.n_layers
    assert len(view.mlp.edges) == len(view.attn.edges) == 33
    for dist, get in ((view.mlp, internals.mlp_activations), (view.attn, internals.attn_out)):
        assert dist.edges == sorted(dist.edges)
        for row in dist.layers:
            values = get(row.layer).double()
            assert row.n == values.numel()
            # clip = 0: the range spans every layer's values, nothing falls outside.
            assert row.underflow == row.overflow == 0 and sum(row.counts) == row.n
            assert row.mean == round4(float(values.mean()))
            assert row.std == round4(float(values.std(unbiased=False)))
            c = values - values.mean()
            kurt = float((c**4).mean() / (c**2).mean() ** 2 - 3)
            assert row.kurtosis == round4(kurt)
            assert row.max == round4(float(values.max()))
            assert dist.edges[0] <= row.min and row.max <= dist.edges[-1]


def test_clipped_range_counts_tails(ctx):
    view = compute("activations", ctx, {"bins": 16, "clip": 0.05})
    tails = 0
    for row in view.mlp.layers + view.attn.layers:
        assert sum(row.counts) + row.underflow + row.overflow == row.n
        tails += row.underflow + row.overflow
    assert tails > 0  # 5% per tail of the pooled values is left outside the edges


def test_every_tokens_view_is_kept_with_the_run_and_computed_ahead(monkeypatch):
    """Over every token, the view is the same for any selected token: computed once (ahead, for
    the default bins and clip, with a pause after each piece of a layer's MLP and after each
    layer of each pass) and then read back."""
    monkeypatch.setattr(act, "MLP_ROWS", 8)  # 24 tokens: three pieces per layer
    loaded = tiny_loaded("llama")
    ids = random_ids(loaded, 24, seed=4)
    reference = compute("activations", view_context(loaded, ids, 16), {})
    ctx = view_context(loaded, ids, 16)
    n = ctx.internals.n_layers
    calls: list[int] = []
    real = ctx.internals.mlp_activations
    monkeypatch.setattr(ctx.internals, "mlp_activations", lambda *a: calls.append(1) or real(*a))
    paused: list[int] = []
    act.warm_activations(ctx.internals, lambda: paused.append(1))
    assert len(calls) == 3 * n  # each layer's MLP once (kept between the passes), in three pieces
    assert len(paused) == len(calls) + 4 * n  # and a pause after each layer of the four passes
    before = len(calls)
    assert compute("activations", ctx, {}) == reference and len(calls) == before
    assert compute("activations", ctx, {"bins": 16}) != reference and len(calls) > before  # other bins


def test_the_mlp_over_every_token_in_pieces_equals_it_whole(monkeypatch):
    """The MLP over every token runs in pieces of MLP_ROWS tokens (a waiting request gets the
    model between them): the same distributions as the whole at once, within float rounding."""
    loaded = tiny_loaded("llama")
    ids = random_ids(loaded, 24, seed=5)
    whole = compute("activations", view_context(loaded, ids, 16), {"clip": 0.0})
    monkeypatch.setattr(act, "MLP_ROWS", 5)
    pieces = compute("activations", view_context(loaded, ids, 16), {"clip": 0.0})
    for a, b in zip(whole.mlp.layers, pieces.mlp.layers, strict=True):
        assert a.n == b.n and sum(a.counts) == sum(b.counts)
        for stat in ("mean", "std", "min", "max"):
            assert getattr(b, stat) == pytest.approx(getattr(a, stat), rel=1e-3, abs=1e-6)
        assert sum(abs(x - y) for x, y in zip(a.counts, b.counts, strict=True)) <= 2  # an edge's tie


def test_one_position(ctx):
    pos = 5
    view = compute("activations", ctx, {"position": pos})
    assert view.position == pos and view.tokens == 1
    row = view.mlp.layers[1]
    values = ctx.internals.mlp_activations(1)[pos].double()
    assert row.n == values.numel() == ctx.trace.model.intermediate_size
    assert row.mean == round4(float(values.mean()))


@pytest.mark.parametrize(
    "params,match",
    [({"position": 24}, "beyond the run"), ({"bins": 2}, "bins"), ({"clip": 0.5}, "clip")],
)
def test_bad_params(ctx, params, match):
    with pytest.raises(ViewParamError, match=match):
        compute("activations", ctx, params)


def test_needs_internals(ctx):
    with pytest.raises(ViewParamError, match="weights"):
        compute("activations", ViewContext(ctx.trace), {})


def test_json_size_at_4096():
    loaded = tiny_loaded("llama", layers=1)
    ids = random_ids(loaded, 4096)
    ctx = view_context(loaded, ids, 4000)
    size = len(compute("activations", ctx, {"bins": 256}).model_dump_json())
    assert size <= 1_000_000, size
