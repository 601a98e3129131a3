"""View `attribution`: rollout algebra, gradient × input, integrated gradients' completeness."""

from __future__ import annotations

import copy
import os
from types import SimpleNamespace

import pytest
import torch

from llmvis.analyses import attribution as attr
from llmvis.analyses.registry import ViewContext, ViewParamError, compute
from llmvis.capture_cache import CaptureCache
from llmvis.internals import MEAN_ROWS, Internals
from llmvis.kept_attention import SpillFile, Staircase
from llmvis.models.loaded import LoadedModel
from tiny_models import tiny_loaded
from trace_helpers import make_trace, random_ids, view_context

T = 20


def _ctx(arch: str = "llama", n: int = T, loaded: LoadedModel | None = None) -> ViewContext:
    """A run on a tiny model (`loaded`, when given, replaces it in the context)."""
    tiny = tiny_loaded(arch)
    ids = random_ids(tiny, n, seed=7)
    loaded = loaded or tiny
    return ViewContext(make_trace(tiny, ids, n // 2), loaded, Internals(loaded, ids))


class _FakeAttention:
    """Internals stand-in: every layer's attention is `matrix` for every head."""

    def __init__(self, matrix: torch.Tensor, layers: int = 1, heads: int = 2):
        self.w = matrix.float().expand(heads, -1, -1)
        self.n_layers, self.n_positions = layers, matrix.shape[0]
        self.cache, self.key = CaptureCache(), "fake"  # nothing computed ahead

    def mean_attention(self, layer: int, rows: list[int]) -> torch.Tensor:
        return self.w[:, rows].mean(0)

    def keep_mean_attention(self, layer: int) -> bool:
        return False

    def attention_layers(self, required: bool = False) -> list[int]:
        return list(range(self.n_layers))

    def missing_attention(self) -> dict[int, str]:
        return {}


def _uniform_causal(n: int) -> torch.Tensor:
    a = torch.tril(torch.ones(n, n, dtype=torch.float64))
    return a / a.sum(dim=-1, keepdim=True)


def _naive_rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """Textbook rollout: Â = rownorm(½·mean_h A + ½·I), R = Â_{L−1} ⋯ Â_0 (explicit identity)."""
    n = attentions[0].shape[-1]
    r = torch.eye(n, dtype=torch.float64)
    for a in attentions:
        m = 0.5 * a.double().mean(0) + 0.5 * torch.eye(n, dtype=torch.float64)
        r = (m / m.sum(-1, keepdim=True)) @ r
    return r


# ----------------------------------------------------------------------------- rollout


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(9).expand(3, 9, 9)
    r = attr.rollout(lambda layer, rows: eye[:, rows].mean(0), range(4), 9, chunk=4)
    assert torch.equal(r, torch.eye(9, dtype=torch.float64))


def test_rollout_equals_textbook_product():
    g = torch.Generator().manual_seed(0)
    atts = []
    for _ in range(3):
        a = torch.rand(2, 11, 11, generator=g, dtype=torch.float64).tril()
        atts.append(a / a.sum(-1, keepdim=True))
    fast = attr.rollout(lambda layer, rows: atts[layer][:, rows].mean(0), range(3), 11, chunk=4)
    assert torch.allclose(fast, _naive_rollout(atts), atol=1e-12)


def test_rollout_rows_sum_to_one_on_a_model(arch):
    ctx = _ctx(arch)
    internals = ctx.internals

    def att(layer, rows):
        return internals.attention(layer)[:, rows].mean(0)

    full = attr.rollout(att, internals.attention_layers(), T, chunk=6)
    for layer in internals.attention_layers():  # the causal head mean the view's rollout reads
        rows = [3, 7, T - 1]
        theirs = internals.attention(layer)[:, rows].mean(0)
        assert torch.allclose(internals.mean_attention(layer, rows), theirs, atol=1e-6)
        short = internals.attention(layer)[:, [2, 5], :6].mean(0)  # keys up to the last row's
        assert torch.allclose(internals.mean_attention(layer, [2, 5]), short, atol=1e-6)
    assert torch.allclose(full.sum(-1), torch.ones(T, dtype=torch.float64), atol=1e-6)
    assert (full >= 0).all() and torch.equal(full, full.tril())  # causal
    view = compute("attribution", ctx, {"position": T - 1})
    assert sum(view.scores) == pytest.approx(1.0, abs=1e-3)
    assert view.scores == pytest.approx(full[T - 2, : T - 1].tolist(), rel=1e-3, abs=1e-6)
    assert view.share == pytest.approx(view.scores, rel=1e-3, abs=1e-6)


def test_rollout_view_closed_forms():
    trace = _ctx().trace
    pos = 12
    identity = compute("attribution", ViewContext(trace, None, _FakeAttention(torch.eye(T), 3)), {"position": pos})
    assert identity.scores == [0.0] * (pos - 1) + [1.0]
    # One layer of uniform causal attention: row pos−1 of ½·U + ½·I, U's row being 1/pos each.
    uniform = compute("attribution", ViewContext(trace, None, _FakeAttention(_uniform_causal(T))), {"position": pos})
    expected = [0.5 / pos] * pos
    expected[-1] += 0.5
    assert uniform.scores == pytest.approx(expected, rel=1e-4)
    assert uniform.positions == list(range(pos)) and uniform.objective == "attention flow"


# ----------------------------------------------------------------------------- gradients


class _LinearLM(torch.nn.Module):
    """logits[t] = W · Σ_{s≤t} e_s, so the target's logit is linear in every input embedding."""

    def __init__(self, vocab: int, d: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, d)
        self.head = torch.nn.Linear(d, vocab, bias=False)
        self.eval()

    def get_input_embeddings(self):
        return self.emb

    def forward(self, inputs_embeds, **kwargs):
        return SimpleNamespace(logits=self.head(inputs_embeds.cumsum(dim=1)))


def _linear_ctx():
    tiny = tiny_loaded("llama")
    model = _LinearLM(tiny.info.vocab_size)
    loaded = LoadedModel(model, tiny.tokenizer, tiny.info)
    trace = make_trace(tiny, random_ids(tiny, T, seed=8), T // 2)
    pos = 15
    ids = torch.tensor(trace.ids[:pos])
    target = trace.ids[pos]
    with torch.no_grad():
        expected = model.emb(ids) @ model.head.weight[target]  # e_s · w_target, exactly
    return ViewContext(trace, loaded, None), pos, expected


@pytest.mark.parametrize("method", ["grad_x_input", "integrated_gradients"])
def test_gradient_methods_on_a_linear_model(method):
    ctx, pos, expected = _linear_ctx()
    view = compute(
        "attribution", ctx, {"position": pos, "method": method, "steps": 8, "baseline": "zero", "keep_first": False}
    )
    assert view.scores == pytest.approx(expected.tolist(), rel=1e-3, abs=1e-5)
    assert view.output == pytest.approx(float(expected.sum()), rel=1e-3)  # completeness
    if method == "integrated_gradients":
        assert view.baseline_output == pytest.approx(0.0, abs=1e-6)
        assert abs(view.delta) < 1e-4 and not view.kept_first


def test_integrated_gradients_keep_first_on_a_linear_model():
    """Baseline = zeros except position 0 kept: position 0 scores 0, the others e_s · w."""
    ctx, pos, expected = _linear_ctx()
    view = compute(
        "attribution", ctx, {"position": pos, "method": "integrated_gradients", "steps": 8, "baseline": "zero"}
    )
    assert view.kept_first
    assert view.scores == pytest.approx([0.0, *expected[1:].tolist()], rel=1e-3, abs=1e-5)
    assert view.baseline_output == pytest.approx(float(expected[0]), rel=1e-3, abs=1e-5)
    one = compute("attribution", ctx, {"position": 1, "method": "integrated_gradients", "steps": 8})
    assert not one.kept_first  # a single source token is never kept (nothing would be left)


def test_grad_x_input_matches_finite_differences():
    """score_s = d/dα y(…, α·e_s, …) at α = 1: checked by central differences in float64."""
    tiny = tiny_loaded("llama")
    model = copy.deepcopy(tiny.model).double()
    loaded = LoadedModel(model, tiny.tokenizer, tiny.info)
    ids = random_ids(tiny, 10, seed=9)
    target = ids[-1]
    scores, output = attr.grad_x_input(loaded, ids[:-1], target, "logit")
    f = attr.objective_fn(model, target, "logit")
    e = model.get_input_embeddings()(torch.tensor([ids[:-1]])).detach()
    h = 1e-3  # the norms compute in fp32 even in a float64 model: not smaller
    with torch.no_grad():
        assert float(f(e)[0]) == pytest.approx(output, rel=1e-9)
        for s in (0, 4, 8):
            up, down = e.clone(), e.clone()
            up[0, s] *= 1 + h
            down[0, s] *= 1 - h
            fd = float(f(up)[0] - f(down)[0]) / (2 * h)
            assert float(scores[s]) == pytest.approx(fd, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("arch_name", ["llama", "gemma3_text"])
@pytest.mark.parametrize("objective", ["logit", "log_prob"])
def test_output_equals_the_models_own_forward(arch_name, objective):
    ctx = _ctx(arch_name)
    pos = 14
    view = compute("attribution", ctx, {"position": pos, "method": "grad_x_input", "objective": objective})
    with torch.no_grad():
        logits = ctx.loaded.model(torch.tensor([ctx.trace.ids[:pos]])).logits[0, -1].float()
    if objective == "log_prob":
        logits = torch.log_softmax(logits, -1)
    assert view.output == pytest.approx(float(logits[ctx.trace.ids[pos]]), rel=1e-3, abs=1e-5)
    assert view.objective == objective


@pytest.mark.parametrize("baseline", ["zero", "pad"])
def test_integrated_gradients_completeness(baseline):
    """Σ scores = y(input) − y(baseline) up to the reported delta, y computed independently here.

    The pad token (id 5 here: the tiny model's real pad id 0 has a zero embedding) gives a
    path away from the origin, where the RMSNorm is smooth: 64 steps must converge there.
    The zero baseline crosses the norm's near-singularity at 0, so only completeness is
    checked for it (the delta is what tells the user how far off it is).
    """
    tiny = tiny_loaded("llama")
    pad = 5
    loaded = LoadedModel(tiny.model, SimpleNamespace(pad_token_id=pad), tiny.info)
    ctx = _ctx(loaded=loaded)
    pos, target = 14, ctx.trace.ids[14]
    view = compute(
        "attribution", ctx, {"position": pos, "method": "integrated_gradients", "steps": 64, "baseline": baseline}
    )
    model = loaded.model
    with torch.no_grad():
        embed = model.get_input_embeddings()
        e = embed(torch.tensor([ctx.trace.ids[:pos]]))
        base = torch.zeros_like(e) if baseline == "zero" else embed(torch.full((1, pos), pad))
        base[:, 0] = e[:, 0]  # keep_first (the default)
        y_in = float(model(inputs_embeds=e).logits[0, -1, target])
        y_base = float(model(inputs_embeds=base).logits[0, -1, target])
    assert view.output == pytest.approx(y_in, rel=1e-3, abs=1e-5)
    assert view.baseline_output == pytest.approx(y_base, rel=1e-3, abs=1e-5)
    gap = y_in - y_base
    rounding = 1e-3 * sum(abs(s) for s in view.scores)  # scores are rounded to 4 digits
    assert abs(sum(view.scores) - gap) <= abs(view.delta) + rounding + 1e-5
    if baseline == "pad":
        assert abs(view.delta) <= 0.02 * max(1.0, abs(gap))
    assert view.steps == 64 and view.kept_first and view.scores[0] == 0.0


def test_no_grads_left_on_parameters():
    ctx = _ctx("qwen3")
    model = ctx.loaded.model
    flags = [p.requires_grad for p in model.parameters()]
    for method in ("grad_x_input", "integrated_gradients"):
        compute("attribution", ctx, {"method": method, "steps": 4})
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert not model.training


def test_gradients_inside_inference_mode():
    """The server may call views under inference_mode/no_grad: the result must not change."""
    ctx = _ctx("llama")
    for method in ("grad_x_input", "integrated_gradients"):
        plain = compute("attribution", ctx, {"method": method, "steps": 4})
        with torch.inference_mode():
            inside = compute("attribution", ctx, {"method": method, "steps": 4})
        assert inside.scores == plain.scores and any(s != 0 for s in plain.scores)


# ----------------------------------------------------------------------------- params and size


@pytest.mark.parametrize(
    "params,match",
    [
        ({"position": 0}, "position"),
        ({"position": T}, "beyond the run"),
        ({"steps": 1}, "steps"),
        ({"method": "saliency"}, "method"),
        ({"objective": "prob"}, "objective"),
        ({"baseline": "noise"}, "baseline"),
    ],
)
def test_bad_params(params, match):
    with pytest.raises(ViewParamError, match=match):
        compute("attribution", _ctx(), params)


def test_missing_model_or_internals():
    trace = _ctx().trace
    with pytest.raises(ViewParamError, match="weights"):
        compute("attribution", ViewContext(trace), {"method": "grad_x_input"})
    with pytest.raises(ViewParamError, match="weights"):
        compute("attribution", ViewContext(trace), {"method": "rollout"})


def test_json_size_at_4096():
    loaded = tiny_loaded("llama", layers=1)
    ids = random_ids(loaded, 4096)
    ctx = view_context(loaded, ids, 4000)
    for params in ({"method": "rollout"}, {"method": "grad_x_input"}, {"method": "integrated_gradients", "steps": 2}):
        view = compute("attribution", ctx, params)
        assert len(view.scores) == 4095
        assert len(view.model_dump_json()) <= 1_000_000, params


def test_the_rollout_computed_ahead_gives_every_targets_row(arch):
    """With every layer's head-mean attention kept ahead, each target's rollout is the same."""
    ctx = _ctx(arch)
    internals = ctx.internals
    targets = [1, 5, T // 2, T - 1]
    own = [compute("attribution", ctx, {"position": t}).scores for t in targets]
    paused = []
    attr.warm_rollout(internals, lambda: paused.append(1))
    layers = internals.attention_layers()
    assert len(paused) >= len(layers)  # after each layer (and each chunk of rows it computes)
    for layer in layers:
        kept = internals.cache.peek((internals.key, "mean_attention", layer))
        assert isinstance(kept, Staircase) and kept.complete and kept.spill is None
        whole = internals.mean_attention(layer, range(T))
        assert torch.allclose(whole, internals.attention(layer).mean(0), atol=1e-6)
    for t, scores in zip(targets, own, strict=True):
        assert compute("attribution", ctx, {"position": t}).scores == pytest.approx(
            scores, rel=1e-5, abs=1e-7
        )  # Ā whole vs by rows: other matmul shapes


@pytest.mark.parametrize("method", ["grad_x_input", "integrated_gradients"])
def test_a_foil_attributes_the_difference(method):
    """With a foil the objective is y(target) − y(foil), so gradient scores are the difference
    of the two single-token attributions (both linear in y), and the output their gap."""
    ctx = _ctx("llama")
    pos = 14
    foil = (ctx.trace.ids[pos] + 5) % 200
    base = {"position": pos, "method": method, "steps": 16}
    both = compute("attribution", ctx, {**base, "foil": foil})
    one = compute("attribution", ctx, base)
    with torch.no_grad():
        logits = ctx.loaded.model(torch.tensor([ctx.trace.ids[:pos]])).logits[0, -1].float()
    assert both.output == pytest.approx(float(logits[ctx.trace.ids[pos]] - logits[foil]), rel=1e-3, abs=1e-4)
    assert both.foil_id == foil and "foil" in both.objective and one.foil_id is None
    ids, loaded = ctx.trace.ids, ctx.loaded
    if method == "grad_x_input":
        a, _ = attr.grad_x_input(loaded, ids[:pos], ids[pos], "logit")
        b, _ = attr.grad_x_input(loaded, ids[:pos], foil, "logit")
    else:
        a = attr.integrated_gradients(loaded, ids[:pos], ids[pos], "logit", 16, "pad", True)[0]
        b = attr.integrated_gradients(loaded, ids[:pos], foil, "logit", 16, "pad", True)[0]
    scale = float((a - b).abs().max())
    assert torch.allclose(torch.tensor(both.scores), a - b, rtol=2e-3, atol=1e-3 * scale)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "rollout", "foil": 3}, "a foil needs a gradient method"),
        ({"method": "grad_x_input", "foil": 10**6}, "out of range"),
    ],
)
def test_bad_foils_are_refused(params, message):
    with pytest.raises(ViewParamError, match=message):
        compute("attribution", _ctx("llama"), {"position": 5, **params})


def test_a_layers_head_mean_pauses_after_each_chunk_of_rows():
    """A waiting view gets the model between chunks of query rows, not only between layers."""
    internals = _ctx("llama").internals
    paused = []
    assert internals.keep_mean_attention(1, chunk=5, pause=lambda: paused.append(1))
    assert len(paused) == -(-T // 5) - 1  # between two chunks
    assert isinstance(internals.cache.peek((internals.key, "mean_attention", 1)), Staircase)
    assert torch.allclose(internals.mean_attention(1, range(T)), internals.attention(1).mean(0), atol=1e-6)


def test_a_view_let_in_part_way_through_a_layer_goes_on_from_the_summarys_rows(monkeypatch):
    """A view that needs a layer's Ā while the summary ahead is part-way through it (at one of
    its pauses) computes the remaining rows only, into the same Ā; the summary then finds the
    layer kept and stops: every row is computed once."""
    internals = _ctx("llama").internals
    view = Internals(internals.loaded, internals.ids, cache=internals.cache)  # a request's own
    key = (internals.key, "mean_attention", 1)
    rows: list[int] = []
    real = Internals._weights
    monkeypatch.setattr(
        Internals, "_weights", staticmethod(lambda r, q, end: rows.extend(q.tolist()) or real(r, q, end))
    )
    paused: list[int] = []

    def pause() -> None:
        paused.append(1)
        if len(paused) == 2:
            assert internals.cache.started(key) is not None
            assert view.keep_mean_attention(1)

    internals.capture()
    assert internals.keep_mean_attention(1, chunk=5, pause=pause)
    assert len(paused) == 2 and sorted(rows) == list(range(T))
    assert internals.cache.started(key) is None
    torch.testing.assert_close(internals.mean_attention(1, range(T)), internals.attention(1).mean(0), atol=1e-6, rtol=0)


def test_a_head_mean_the_memory_cannot_hold_is_spilled_to_disk_and_read_back(tmp_path):
    """Beyond the memory budget, Ā goes to a file (within the spill budget) and gives the same
    rollouts; another run's spill drops this one's (its file goes once nothing reads it); with
    no spill budget it is not kept, and rollouts compute it again."""
    loaded = tiny_loaded("llama")
    ids = random_ids(loaded, T, seed=7)
    probe = Internals(loaded, ids)
    reference = [
        compute("attribution", ViewContext(make_trace(loaded, ids, T // 2), loaded, probe), {"position": p})
        for p in (T - 1, 5)
    ]
    room = probe.capture().nbytes + 1000  # the capture, and not one layer's Ā
    cache = CaptureCache(max_bytes=room, spill_bytes=1 << 30)
    internals = Internals(loaded, ids, cache=cache)
    ctx = ViewContext(make_trace(loaded, ids, T // 2), loaded, internals)
    attr.warm_rollout(internals, lambda: None)
    layers = internals.attention_layers()
    files = []
    for layer in layers:
        kept = cache.peek((internals.key, "mean_attention", layer))
        assert isinstance(kept, Staircase) and kept.spill is not None and kept.complete
        files.append(kept.spill.path)
        assert torch.allclose(
            internals.mean_attention(layer, range(T)), probe.mean_attention(layer, range(T)), atol=1e-6
        )
        assert torch.allclose(
            internals.mean_attention(layer, [9, 2, 3]), probe.mean_attention(layer, [9, 2, 3]), atol=1e-6
        )
    assert cache.bytes <= room and cache.stats()["spilled_bytes"] == len(layers) * Staircase.nbytes(T, MEAN_ROWS)
    for p, ref in zip((T - 1, 5), reference, strict=True):
        assert compute("attribution", ctx, {"position": p}).scores == pytest.approx(ref.scores, rel=1e-5, abs=1e-7)
    del kept
    other = Internals(loaded, random_ids(loaded, T, seed=8), cache=cache)
    assert other.keep_mean_attention(layers[0])  # one run on disk at a time: the newest
    assert (internals.key, "mean_attention", layers[0]) not in cache
    assert not any(os.path.exists(f) for f in files)
    assert not Internals(loaded, ids, cache=CaptureCache(max_bytes=room)).keep_mean_attention(layers[0])


def test_a_spill_that_fails_is_not_kept_and_the_rollout_computes_again(monkeypatch):
    """A disk that fails or fills while Ā is written: nothing is kept, the view still answers."""
    loaded = tiny_loaded("llama")
    ids = random_ids(loaded, T, seed=9)
    reference = compute("attribution", ViewContext(make_trace(loaded, ids, T // 2), loaded, Internals(loaded, ids)), {})
    probe = Internals(loaded, ids)
    cache = CaptureCache(max_bytes=probe.capture().nbytes + 1000, spill_bytes=1 << 30)
    internals = Internals(loaded, ids, cache=cache)

    def full(self, block):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SpillFile, "append", full)
    assert not internals.keep_mean_attention(internals.attention_layers()[0])
    view = compute("attribution", ViewContext(make_trace(loaded, ids, T // 2), loaded, internals), {})
    assert view.scores == pytest.approx(reference.scores, rel=1e-5, abs=1e-7)
    assert cache.stats()["spilled_bytes"] == 0


def test_a_staircase_gives_any_rows_of_its_matrix():
    """Blocks [a:b, :b] of a lower-triangular matrix, in memory or in a file: any rows, in any
    order, up to any end, equal the matrix's; consecutive rows of one block in memory are a view."""
    t, rows = 11, 4
    dense = torch.tril(torch.rand(t, t))
    for spill in (None, SpillFile()):
        kept = Staircase(t, rows, spill)
        for a in range(0, t, rows):
            b = min(t, a + rows)
            kept.append(dense[a:b, :b])
        assert kept.complete
        for asked in ([0], [4, 5, 6], [10, 3, 7], list(range(t)), [8, 9, 10]):
            end = max(asked) + 1
            assert torch.equal(kept.rows_of(asked, end), dense[asked, :end]), (spill, asked)
    view = Staircase(t, rows)
    for a in range(0, t, rows):
        view.append(dense[a : min(t, a + rows), : min(t, a + rows)])
    assert view.rows_of([5, 6], 7).data_ptr() == view.block(1)[1:].data_ptr()
    path = spill.path
    del kept, spill
    assert not os.path.exists(path)
    with pytest.raises(ValueError, match="must be"):
        Staircase(t, rows).append(dense[:3, :3])
