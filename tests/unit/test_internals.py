"""Internals: the captured residual stream and recomputed attention equal the model's own.

The reference is the same tiny model (same seed, same weights) run with the eager kernel and
`output_attentions=True, output_hidden_states=True`; mistral and gemma3 use a sliding window
of 8, so runs are 24 tokens long to exercise it.
"""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmvis.arch import NotAvailable
from llmvis.capture_cache import CaptureCache
from llmvis.internals import Internals
from tiny_models import HYBRIDS, tiny_loaded
from trace_helpers import random_ids

T = 24
TOL = 1e-5


def eager_reference(arch: str, ids: list[int], layers: int = 2):
    """The unmodified HF model (same weights) with the eager kernel: the numbers to equal."""
    model = tiny_loaded(arch, layers, attn="eager").model
    with torch.no_grad():
        return model(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)


def attention_layers(arch: str, internals: Internals) -> list[int]:
    """The layers with attention: every one, except the other mixers of a hybrid (named, not drawn)."""
    layers = internals.attention_layers()
    if arch in HYBRIDS:
        assert layers and len(layers) < internals.n_layers
        for layer in set(range(internals.n_layers)) - set(layers):
            with pytest.raises(NotAvailable, match=f"layer {layer} has no softmax attention"):
                internals.attention(layer)
    else:
        assert layers == list(range(internals.n_layers))
    return layers


def layer_output(internals: Internals, layer: int) -> torch.Tensor:
    """A layer's input plus everything it added: attention, MLP and any extra part (Gemma 4, Falcon-H1)."""
    total = internals.residual(layer) + internals.attn_out(layer) + internals.mlp_out(layer)
    extra = internals.extra_out(layer)
    return total if extra is None else total + extra


def run(arch: str, layers: int = 2, n: int = T, seed: int = 1):
    loaded = tiny_loaded(arch, layers)
    ids = random_ids(loaded, n, seed=seed)
    return loaded, ids, Internals(loaded, ids)


def test_attention_equals_eager(arch):
    _, ids, internals = run(arch)
    ref = eager_reference(arch, ids)
    layers = attention_layers(arch, internals)
    assert len(ref.attentions) == len(layers)  # a hybrid's forward returns its attention layers' only
    for layer, theirs in zip(layers, ref.attentions, strict=True):
        ours = internals.attention(layer)
        assert ours.shape == (internals.n_heads, T, T)
        assert (ours - theirs[0]).abs().max().item() <= TOL


def test_gemma3_global_and_local_layers_equal_eager():
    """Six layers: five sliding (local rope) and one full-attention layer (global rope)."""
    _, ids, internals = run("gemma3_text", layers=6)
    assert internals.visible_keys(0, [T - 1]).item() == 8 and internals.visible_keys(5, [T - 1]).item() == T
    ref = eager_reference("gemma3_text", ids, layers=6)
    for layer in range(6):
        assert (internals.attention(layer) - ref.attentions[layer][0]).abs().max().item() <= TOL


def test_attention_rows_sum_to_one_and_are_causal(arch):
    """Each query spreads its weight over the keys it may see, and nothing beyond them; a model
    with attention sinks (gpt-oss) gives the rest to its sink."""
    _, _, internals = run(arch)
    q, k = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    for layer in attention_layers(arch, internals):
        w = internals.attention(layer)
        sums = w.sum(-1)
        if internals.record(layer).sinks is None:
            assert torch.allclose(sums, torch.ones(internals.n_heads, T), atol=1e-5)
        else:
            assert (sums < 1).all() and (sums > 0).all()
        seen = internals.visible_keys(layer, range(T))
        inside = (k <= q) & (q - k < seen[:, None])  # keys older than the window get nothing
        assert w[:, ~inside].abs().max().item() == 0.0 and w[:, inside].min().item() >= 0.0
        assert (w > 0).any(-1).all()  # (Gemma 4's random q/k norms are so sharp that weights underflow to 0)


def test_sliding_window_matters():
    """Guard that the window test above is not vacuous: mistral's window of 8 bites at T=24."""
    _, _, internals = run("mistral")
    assert internals.visible_keys(0, [20]).item() == 8
    w = internals.attention(0)
    assert w[:, 20, :13].abs().max().item() == 0.0 and w[:, 20, 13:21].min().item() > 0


def test_attention_row_matches_attention(arch):
    _, _, internals = run(arch)
    for pos in (0, 5, T - 1):
        row = internals.attention_row(pos)
        assert row.shape == (internals.n_layers, internals.n_heads, T)
        layers = attention_layers(arch, internals)
        for layer in layers:
            assert (row[layer] - internals.attention(layer)[:, pos]).abs().max().item() <= TOL
        assert row[[i for i in range(internals.n_layers) if i not in layers]].isnan().all()  # a hybrid's others
        if pos + 1 < T:
            assert row[layers, :, pos + 1 :].abs().max().item() == 0.0


@pytest.mark.parametrize("arch", ["qwen3", "mistral", "llama4_text"])  # causal, a window of 8, chunks of 8
@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.integers(0, T - 1), min_size=1, max_size=T))
def test_attention_query_subsets_match_full(arch, rows):
    """Any set of query rows, in any order (only the columns some row cannot see are masked)."""
    _, _, internals = run(arch)
    layer = attention_layers(arch, internals)[-1]
    full = internals.attention(layer)
    fresh = Internals(internals.loaded, internals.ids)  # no cached matrix: really recomputes
    assert torch.allclose(fresh.attention(layer, slice(3, 10)), full[:, 3:10], atol=1e-6)
    assert torch.allclose(fresh.attention(layer, rows), full[:, rows], atol=1e-6)
    short = fresh.attention(layer, rows, pad=False)
    assert short.shape[-1] == max(rows) + 1 and torch.allclose(short, full[:, rows, : max(rows) + 1], atol=1e-6)
    with mock.patch("llmvis.internals.MEAN_ROWS", 3):  # in pieces of 3 rows
        mean = fresh.mean_attention(layer, rows)
    assert torch.allclose(mean, full[:, rows, : max(rows) + 1].mean(0), atol=1e-6)


def test_hidden_states_and_contributions(arch):
    _, ids, internals = run(arch)
    ref = eager_reference(arch, ids)
    n = internals.n_layers
    for layer in range(n):  # layer inputs equal HF's hidden_states
        assert torch.allclose(internals.residual(layer), ref.hidden_states[layer][0], atol=1e-5)
        assert torch.allclose(layer_output(internals, layer), internals.residual(layer + 1), atol=1e-5)
        assert (internals.extra_out(layer) is None) == (internals.arch.extra_part is None)
    # HF's last hidden state is after the final norm: ours is before it.
    theirs = ref.hidden_states[n][0]
    assert (internals.normed(internals.residual(n)) - theirs).abs().max() <= TOL * max(1.0, float(theirs.abs().max()))
    # (Layer 0's input is whatever the decoder feeds it: token embeddings, plus GPT-2's position
    # embeddings, times Gemma's sqrt(d) or Granite's embedding multiplier: hidden_states[0].)


def test_logits_equal_model_logits(arch):
    loaded, ids, internals = run(arch)
    with torch.no_grad():
        ref = loaded.model(torch.tensor([ids])).logits[0]
    ours = internals.logits(internals.residual(internals.n_layers))
    assert (ours - ref).abs().max().item() <= 1e-4
    if arch == "gemma3_text":  # final soft-capping is applied (cap 30)
        assert ours.abs().max().item() < 30.0


def test_readout_affine_is_the_models_readout_of_one_logit(arch):
    """row · x + base equals unembed(x)[token] (less the foil's) at any x, kept with the run."""
    _, ids, internals = run(arch)
    x = internals.residual(internals.n_layers)[-3:].float()
    full = internals.unembed(x)
    token, foil = ids[-1], ids[0] if ids[0] != ids[-1] else ids[1]
    for f in (None, foil):
        row, base = internals.readout_affine(token, f)
        want = full[:, token] - (full[:, f] if f is not None else 0)
        assert torch.allclose(x @ row + base, want, rtol=1e-4, atol=1e-4)
        assert internals.readout_affine(token, f)[0] is row  # kept: the next view reuses it


def test_mlp_activations_reproduce_mlp_output(arch):
    """The neuron activations, through the MLP's own output projection (and post-norm), give
    what the MLP added; a mixture of experts says why it has no single set of neurons."""
    loaded, _, internals = run(arch)
    for layer in range(internals.n_layers):
        if internals.arch.mlp_kind(layer) == "experts":
            with pytest.raises(NotAvailable, match="mixture of experts"):
                internals.mlp_activations(layer)
            continue
        acts = internals.mlp_activations(layer)
        assert acts.shape[0] == T and acts.shape[1] > loaded.info.hidden_size  # the MLP's hidden width
        with torch.no_grad():
            out = internals.arch.mlp_contribution(layer, acts)
        assert torch.allclose(out, internals.mlp_out(layer), atol=1e-5)


def test_mlp_activations_of_some_rows_on_a_run_not_captured_yet():
    """The first question on a run captures it (every row through the MLP): the rows asked for
    are still the only ones returned, equal to the same rows of the whole."""
    loaded, ids, first = run("llama")
    some = first.mlp_activations(1, slice(3, 6))  # the first call: the capture runs inside it
    whole = Internals(loaded, ids).mlp_activations(1)
    assert some.shape[0] == 3
    torch.testing.assert_close(some, whole[3:6], rtol=1e-5, atol=1e-6)


def test_out_of_range_raises():
    _, _, internals = run("llama")
    with pytest.raises(IndexError):
        internals.attention(2)
    with pytest.raises(IndexError):
        internals.attention_row(T)
    with pytest.raises(IndexError):
        internals.residual(3)
    with pytest.raises(ValueError):
        Internals(internals.loaded, [])


def test_a_runs_summaries_evict_older_runs_never_its_own():
    """put_for: room for run B's entry is made from run A's entries (oldest first), never B's;
    refused when B's own entries leave no room. keep_mean_attention keeps a new run's Ā so."""
    cache = CaptureCache(max_bytes=100)
    cache.put("A", "capture A", 30)
    cache.put(("A", "mean_attention", 0), "Ā A0", 30)
    cache.put("B", "capture B", 30)
    assert cache.put_for("B", ("B", "mean_attention", 0), "Ā B0", 40)
    assert "A" not in cache and ("A", "mean_attention", 0) in cache and "B" in cache  # the oldest went
    assert cache.bytes == 100 and cache.evictions == 1
    assert not cache.could_hold("B", 31) and not cache.put_for("B", ("B", "x"), "too big", 31)
    assert ("A", "mean_attention", 0) in cache  # a refusal evicts nothing
    assert cache.could_hold("B", 30) and cache.put_for("B", ("B", "y"), "fits", 30)
    assert list(cache._entries) == ["B", ("B", "mean_attention", 0), ("B", "y")]

    loaded = tiny_loaded("llama")
    old, new = random_ids(loaded, T, seed=1), random_ids(loaded, T, seed=2)
    probe = Internals(loaded, old).capture()
    room = probe.nbytes + 2 * T * T * 4  # a capture and two layers' Ā
    shared = CaptureCache(max_bytes=room + 100)
    first = Internals(loaded, old, cache=shared)
    assert first.keep_mean_attention(0) and first.keep_mean_attention(1)  # the cache is now full
    second = Internals(loaded, new, cache=shared)
    second.residual(0)  # its capture evicts what it must (plain LRU)
    assert second.keep_mean_attention(0) and second.keep_mean_attention(1)
    assert (second.key, "mean_attention", 1) in shared and second.key in shared


def test_expendable_entries_give_way_to_their_runs_other_summaries():
    """An expendable entry (value outputs: cheap to redo) is evicted for its own run's other
    entries, after other runs' and never for another expendable one; the rest of a run's
    entries are not counted against it."""
    cache = CaptureCache(max_bytes=100)
    cache.put("A", "capture A", 20)
    cache.put("B", "capture B", 30)
    assert cache.put_for("B", ("B", "v", 0), "values 0", 30, expendable=True)
    assert cache.put_for("B", ("B", "v", 1), "values 1", 20, expendable=True)  # fits beside them
    assert not cache.could_hold("B", 30, expendable=True)  # expendables don't evict expendables
    assert not cache.put_for("B", ("B", "v", 2), "values 2", 30, expendable=True)
    assert cache.could_hold("B", 70) and not cache.could_hold("B", 71)  # B's firm bytes: 30
    assert cache.put_for("B", ("B", "mean_attention", 0), "Ā", 50)  # A first, then the oldest values
    assert list(cache._entries) == ["B", ("B", "v", 1), ("B", "mean_attention", 0)]
    assert cache.bytes == 100 and cache.evictions == 2
    cache.discard(("B", "v", 1))
    assert not cache._expendable

    loaded = tiny_loaded("llama")
    internals = Internals(loaded, random_ids(loaded, T, seed=3), cache=CaptureCache(max_bytes=1 << 30))
    assert internals.keep_value_outputs(1)
    kept = internals.kept_value_outputs(1)
    assert kept is not None and torch.allclose(kept, internals.value_outputs(1, T), atol=1e-6)


def test_cache_hits_misses_and_eviction():
    loaded = tiny_loaded("llama")
    a, b = random_ids(loaded, T, seed=1), random_ids(loaded, T, seed=2)
    probe = Internals(loaded, a).capture()
    one = probe.nbytes
    # (L+1) residuals + L attn + L mlp: [T, 64] fp32; per layer queries [4 heads, T, 16], keys and
    # values [2 kv heads, T, 16] fp32, and each query's first and last key (int64)
    assert one == (2 * 3 + 1) * T * 64 * 4 + 2 * (T * 64 * 4 + 2 * T * 32 * 4) + 2 * 2 * T * 8
    cache = CaptureCache(max_bytes=int(one * 1.5))  # room for one capture only
    ia, ib = Internals(loaded, a, cache=cache), Internals(loaded, b, cache=cache)
    ia.residual(0)
    assert (cache.misses, cache.hits, cache.evictions) == (1, 0, 0)
    ia.residual(1)
    ia.attn_out(0)
    assert cache.hits == 2
    ib.residual(0)  # evicts a
    assert cache.evictions == 1 and len(cache) == 1 and cache.bytes == one
    ia.residual(0)  # a is recaptured (a miss), b evicted
    assert cache.misses == 3 and cache.evictions == 2
    assert cache.bytes <= cache.max_bytes


def test_attention_matrix_cached_then_hit():
    loaded = tiny_loaded("llama")
    cache = CaptureCache()
    internals = Internals(loaded, random_ids(loaded, T), cache=cache)
    first = internals.attention(0)
    hits = cache.hits
    assert internals.attention(0) is first and cache.hits == hits + 1


def test_oversized_entry_is_kept_alone():
    loaded = tiny_loaded("llama")
    cache = CaptureCache(max_bytes=1000)  # smaller than any capture
    internals = Internals(loaded, random_ids(loaded, T), cache=cache)
    cap = internals.capture()
    internals.residual(1)
    assert cache.misses == 1 and cache.hits == 1 and len(cache) == 1
    internals.attention(0)  # neither the matrix nor helper entries may push the capture out
    internals.attention_row(5)
    assert len(cache) == 1 and cache.evictions == 0 and internals.capture() is cap


def test_key_depends_on_ids():
    loaded = tiny_loaded("llama")
    cache = CaptureCache()
    a = Internals(loaded, random_ids(loaded, T, seed=1), cache=cache)
    b = Internals(loaded, random_ids(loaded, T, seed=2), cache=cache)
    assert a.key != b.key
    a.capture()
    b.capture()
    assert not torch.equal(a.residual(0), b.residual(0)) and len(cache) == 2


def test_capture_ignores_forwards_in_other_threads():
    """Hooks only record the capturing thread's forward (the model may be shared)."""
    import threading

    loaded, ids, internals = run("llama")
    other = random_ids(loaded, 7, seed=9)
    started = threading.Event()
    stop = threading.Event()

    def busy():
        with torch.no_grad():
            while not stop.is_set():
                loaded.model(torch.tensor([other]))
                started.set()

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        started.wait(5)
        cap = internals.capture()
    finally:
        stop.set()
        thread.join()
    assert all(r.shape[0] == T for r in cap.residual)
    reference = Internals(loaded, ids).capture()
    assert torch.allclose(cap.residual[-1], reference.residual[-1])


def test_offloaded_layer_under_a_device_map(tmp_path):
    """A layer whose weights sit on 'meta' between calls (accelerate disk offload) still gives the
    same internals: modules run on their execution device through their own hooks. (Equal to
    fp32 rounding, not bit for bit: reloaded weights may sit at another alignment, and CPU
    kernels may then sum in another order.)"""
    from llmvis.models import load_model
    from tiny_models import save_tiny_model

    folder = save_tiny_model(tmp_path / "tiny", "llama")
    device_map = {
        "model.embed_tokens": "cpu",
        "model.rotary_emb": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.norm": "cpu",
        "lm_head": "cpu",
    }
    plain, mapped = load_model(str(folder)), load_model(str(folder), device_map=device_map)
    assert mapped.model.model.layers[1].input_layernorm.weight.device.type == "meta"
    ids = random_ids(plain, T)
    a, b = Internals(plain, ids), Internals(mapped, ids)
    same = {"rtol": 1e-5, "atol": 1e-6}
    for layer in range(2):
        torch.testing.assert_close(a.attention(layer), b.attention(layer), **same)
        torch.testing.assert_close(a.mlp_activations(layer), b.mlp_activations(layer), **same)
    torch.testing.assert_close(a.attention_row(T - 1), b.attention_row(T - 1), **same)
    torch.testing.assert_close(a.logits(a.residual(2)), b.logits(b.residual(2)), **same)
