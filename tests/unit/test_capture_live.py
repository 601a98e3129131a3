"""The capture kept while generating: recorded from the prefill chunks and the decode steps over
the KV cache, it must equal what the unmodified model computes over the whole run (eager
`output_hidden_states` / `output_attentions`), on every family, and leave generation unchanged.

The prefill is cut into chunks of 7 positions and the prompt is longer than the tiny models'
sliding windows (8), so chunk offsets, cached keys and windows all take part. The tolerance is
looser than the teacher-forced capture's (1e-5): decode steps take other kernel paths than one
forward over the whole run (a single query; Mamba's recurrent step instead of its chunked scan),
which moves fp32 rounding by up to ~4e-5 on these sharp random models.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from test_families import fresh
from test_internals import eager_reference
from transformers import DynamicCache

from llmvis.capture import Capture, Recorder
from llmvis.capture_cache import CaptureCache
from llmvis.generation import attention_ahead, start_generation
from llmvis.internals import Internals
from llmvis.kept_attention import Staircase
from llmvis.trace import GenerationRequest, SamplingParams
from tiny_models import ARCHITECTURES, RECURRENT, tiny_loaded

generate_module = importlib.import_module(
    "llmvis.generation.generate"
)  # the package re-exports a function of that name
PROMPT = "the quick brown fox jumps over the lazy dog, then the dog sleeps all day"
NEW = 6
TOL = 1e-4


class Sink:
    def __init__(self) -> None:
        self.kept: list[tuple[list[int], Capture]] = []
        self.asked: list[int] = []

    def fits(self, positions: int) -> bool:
        self.asked.append(positions)
        return True

    def staircase(self, positions: int) -> Staircase | None:
        return None  # (the rows of Ā made while generating: tested below)

    def __call__(self, ids: list[int], capture: Capture, mean_attention: dict[int, Staircase]) -> None:
        self.kept.append((ids, capture))


def _request(**params) -> GenerationRequest:
    params = {"temperature": 0, "max_new_tokens": NEW, **params}
    return GenerationRequest(mode="completion", prompt=PROMPT, params=SamplingParams(**params))


def _generate(loaded, sink=None, **params):
    generation = start_generation(loaded, _request(**params), keep_capture=sink)
    events = list(generation)
    return generation.trace, events


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(generate_module, "PREFILL_CHUNK", 7)
    monkeypatch.setattr(generate_module, "DEFERRED_CHUNK", 7)


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a not in RECURRENT])
def test_the_capture_kept_while_generating_equals_the_models_own(arch):
    loaded = tiny_loaded(arch)
    sink = Sink()
    trace, _ = _generate(loaded, sink)
    assert len(sink.kept) == 1
    ids, capture = sink.kept[0]
    assert ids == trace.ids and len(ids) > 8 + 7  # beyond a window and a chunk
    assert sink.asked == [trace.prompt_len + NEW]
    ref = eager_reference(arch, ids)
    t = len(ids)
    for layer, theirs in enumerate(ref.hidden_states[:-1]):  # HF's last one is after the final norm
        assert capture.residual[layer].shape == (t, theirs.shape[-1])
        assert (capture.residual[layer] - theirs[0]).abs().max().item() <= TOL * max(1.0, theirs.abs().max().item())
    cache = CaptureCache()
    internals = Internals(loaded, ids, cache=cache)
    cache.put(internals.key, capture, capture.nbytes)
    logits = internals.logits(internals.residual(internals.n_layers))
    assert (logits - ref.logits[0]).abs().max().item() <= TOL * max(1.0, ref.logits.abs().max().item())
    layers = internals.attention_layers()
    assert len(layers) == len(ref.attentions) > 0
    for layer, theirs in zip(layers, ref.attentions, strict=True):
        assert (internals.attention(layer) - theirs[0]).abs().max().item() <= TOL
    for layer in range(internals.n_layers):  # what the blocks add is the next residual
        total = capture.residual[layer] + capture.attn[layer] + capture.mlp[layer]
        if capture.extra is not None:
            total = total + capture.extra[layer]
        assert torch.allclose(total, capture.residual[layer + 1], atol=1e-5)


def test_keeping_the_capture_leaves_generation_unchanged():
    loaded = tiny_loaded("llama")

    def hooks() -> dict[str, tuple[int, int]]:  # transformers installs hooks of its own: count ours
        return {n: (len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in loaded.model.named_modules()}

    before = hooks()
    plain, _ = _generate(loaded, temperature=0.9, seed=3)
    kept, _ = _generate(loaded, Sink(), temperature=0.9, seed=3)
    assert kept.ids == plain.ids
    for a, b in zip(kept.tokens, plain.tokens, strict=True):
        assert (a.stats is None) == (b.stats is None)
        if a.stats is not None and b.stats is not None:
            assert a.stats.raw_prob == pytest.approx(b.stats.raw_prob, abs=1e-6)
    assert not loaded.model._forward_hooks and not loaded.model._forward_pre_hooks
    assert hooks() == before  # the recorder's hooks are gone


def test_a_run_too_long_for_the_budget_keeps_nothing_and_a_cancelled_one_keeps_its_tokens():
    loaded = tiny_loaded("llama")

    class Full(Sink):
        def fits(self, positions: int) -> bool:
            return False

    full = Full()
    _generate(loaded, full)
    assert full.kept == []
    sink = Sink()
    generation = start_generation(loaded, _request(max_new_tokens=50), keep_capture=sink)
    for event in generation:
        if event.type == "token" and len(generation.trace.generated) == 3:
            generation.cancel.set()
    assert generation.trace.finish_reason == "cancelled"
    ids, capture = sink.kept[0]
    assert ids == generation.trace.ids and capture.residual[0].shape[0] == len(ids)


def test_the_self_check_verifies_the_capture_kept_while_generating(arch):
    """Every attention-only family keeps it; recurrent mixers (Mamba, linear attention) do not."""
    report = fresh(tiny_loaded(arch)).info.internals
    assert report is not None and report.live_capture == (arch not in RECURRENT), report
    assert report.capture_bytes_per_token and report.capture_bytes_per_token > 0


def test_the_self_check_refuses_a_kept_capture_that_is_off(monkeypatch):
    """A recorder that ignored each forward's offset would place decode steps' keys wrong."""
    from llmvis.capture import _Session

    real = _Session.begin
    monkeypatch.setattr(_Session, "begin", lambda self, offset: real(self, 0))
    report = fresh(tiny_loaded("llama")).info.internals
    assert report is not None and report.verified and not report.live_capture


@pytest.mark.parametrize("dim", [0, 1])
def test_decode_rows_go_into_one_reserved_buffer_in_order(dim):
    """Single positions are copied into a buffer reserved once (no tensor kept per step);
    chunks before, between and after them keep their places, and overflow still joins."""
    from llmvis.capture import _Rows

    g = torch.Generator().manual_seed(0)

    def piece(n: int) -> torch.Tensor:
        shape = [n, 4] if dim == 0 else [3, n, 4]
        return torch.randn(shape, generator=g)

    pieces = [piece(5), piece(1), piece(1), piece(3), *[piece(1) for _ in range(4)]]
    rows = _Rows(dim, capacity=4)
    for p in pieces:
        rows.append(p)
    assert len(rows) == len(pieces) and rows.buffer is not None
    assert rows.buffer.shape[dim] == 4 and len(rows.chunks) == 3  # 5 | the two singles | 3; then buffered
    assert torch.equal(rows.join(), torch.cat(pieces, dim))
    assert rows.chunks == [] and rows.buffer is None


def test_the_server_keeps_a_runs_capture_on_the_cpu_only_unless_asked():
    """On an accelerator the hooks' per-step work costs generation speed, and a capture after the
    run is cheap: the server keeps the capture while generating only for a model on the CPU (or
    offloaded to disk)."""
    import dataclasses

    from llmvis.server.background import KeepCapture
    from llmvis.server.slot import ModelSlot

    loaded = fresh(tiny_loaded("llama"))
    assert loaded.info.internals is not None and loaded.info.internals.live_capture
    slot = ModelSlot(loaded, 1 << 30)
    assert KeepCapture(slot, loaded).fits(100)
    for device in ("cuda:0", "cuda:0+cpu"):
        on_gpu = dataclasses.replace(loaded, info=loaded.info.model_copy(update={"device": device}))
        assert not KeepCapture(slot, on_gpu).fits(100)
        assert KeepCapture(slot, on_gpu, accelerators=True).fits(100)
    offloaded = dataclasses.replace(loaded, info=loaded.info.model_copy(update={"device": "cpu+disk"}))
    assert KeepCapture(slot, offloaded).fits(100)
    assert not KeepCapture(slot, loaded).fits(1 << 30)  # over the cache's budget
    trace, _ = _generate(loaded, KeepCapture(slot, loaded))
    kept = Internals(loaded, trace.ids, cache=slot.cache)
    assert len(slot.cache) == 1 and kept.capture() is slot.cache.get(kept.key)  # kept, found by its views


def test_the_known_rows_of_mean_attention_made_while_generating_are_the_runs_own(arch, monkeypatch):
    """A causal row of Ā depends on nothing after it: the rows of the known positions, made from
    the prefill's records beside the decode steps (attention_ahead.py), are the whole run's."""
    monkeypatch.setattr(attention_ahead, "MEAN_ROWS", 4)
    loaded = tiny_loaded(arch)
    run = loaded.tokenizer(PROMPT).input_ids[:18]
    cache = DynamicCache(config=loaded.model.config)
    with torch.no_grad(), Recorder(loaded.arch, steps=1) as recorder:
        for chunk in (run[:7], run[7:14], run[14:17], run[17:]):  # a prefill in chunks, a decode step
            if len(chunk) == 1:
                records = recorder.known_records()
            with recorder.forward(len(chunk)):
                loaded.model(input_ids=torch.tensor([chunk]), **loaded.cache_kwargs(cache))
        job = attention_ahead.MeanAttentionJob(records, 17, lambda: Staircase(24, 4))
        job._thread.join()  # (done with every layer: take() would stop it)
        kept = job.take()
    whole = Internals(loaded, run)
    assert sorted(kept) == whole.attention_layers() and all(r is None for r in records) == (not kept)
    for layer, stairs in kept.items():
        assert stairs.filled == 16  # whole blocks of the 17 known rows
        stairs.cut_to(len(run))
        rows = list(range(16))
        assert torch.allclose(stairs.rows_of(rows, 16), whole.mean_attention(layer, rows), atol=TOL), (arch, layer)


def test_a_run_hands_the_rows_of_mean_attention_it_made_to_the_summary_ahead(monkeypatch):
    """Through the server's sink: the rows made while generating wait in the cache where the
    summary ahead (or a rollout) goes on from them, and the layer's Ā ends as a fresh one."""
    from llmvis.generation.overlap import can_overlap
    from llmvis.server.background import KeepCapture
    from llmvis.server.slot import ModelSlot

    monkeypatch.setattr(attention_ahead, "MEAN_ROWS", 4)
    monkeypatch.setattr("llmvis.server.background.MEAN_ROWS", 4)
    monkeypatch.setattr("llmvis.internals.MEAN_ROWS", 4)
    take = attention_ahead.MeanAttentionJob.take
    monkeypatch.setattr(attention_ahead.MeanAttentionJob, "take", lambda job: (job._thread.join(), take(job))[1])
    loaded = fresh(tiny_loaded("llama"))
    slot = ModelSlot(loaded, 1 << 30)
    trace, _ = _generate(loaded, KeepCapture(slot, loaded), max_new_tokens=40)
    internals = Internals(loaded, trace.ids, cache=slot.cache)
    started = {
        layer: slot.cache.started((internals.key, "mean_attention", layer)) for layer in range(internals.n_layers)
    }
    known = len(trace.ids) - len(trace.generated)
    if not can_overlap(loaded):  # (one thread: no core beside the decode)
        assert set(started.values()) == {None}
        return
    fresh_run = Internals(loaded, trace.ids)
    rows = list(range(len(trace.ids)))
    for layer, stairs in started.items():
        assert stairs is not None and stairs.filled == known // 4 * 4 and stairs.t == len(trace.ids)
        assert internals.keep_mean_attention(layer)  # goes on from the rows made meanwhile
        whole = internals.mean_attention(layer, rows)
        assert torch.allclose(whole, fresh_run.mean_attention(layer, rows), atol=TOL), layer


def test_the_decode_loop_takes_its_core_back_once_the_rows_of_mean_attention_are_made(monkeypatch):
    """The known rows of Ā are made on a core taken from the decode loop, only while they are
    being made: the loop's last steps run on every thread again (when it kept one fewer to the
    end, the bundled model at T = 1,536 generated at 0.59× `generate`'s speed, not 0.83×)."""
    from llmvis.generation.overlap import can_overlap
    from llmvis.server.background import KeepCapture
    from llmvis.server.slot import ModelSlot

    init = attention_ahead.MeanAttentionJob.__init__

    def made_at_once(job, *args):
        init(job, *args)
        job._thread.join()

    monkeypatch.setattr(attention_ahead.MeanAttentionJob, "__init__", made_at_once)
    monkeypatch.setattr(attention_ahead, "MEAN_ROWS", 4)
    monkeypatch.setattr("llmvis.server.background.MEAN_ROWS", 4)
    monkeypatch.setattr("llmvis.internals.MEAN_ROWS", 4)
    loaded = fresh(tiny_loaded("llama"))
    slot = ModelSlot(loaded, 1 << 30)
    seen: list[int] = []  # each forward's thread count, as the loop's thread has it
    handle = loaded.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        overlap = can_overlap(loaded)
        trace, _ = _generate(loaded, KeepCapture(slot, loaded), max_new_tokens=40)
    finally:
        handle.remove()
        torch.set_num_threads(threads)
    internals = Internals(loaded, trace.ids, cache=slot.cache)
    made = [slot.cache.started((internals.key, "mean_attention", layer)) for layer in range(internals.n_layers)]
    if not overlap:  # (not PyTorch's OpenMP backend: no core beside the decode)
        assert made == [None] * internals.n_layers
        return
    assert all(stairs is not None and stairs.filled for stairs in made)
    assert 1 in seen  # the prompt statistics' core, then Ā's
    assert seen[-10:] == [2] * 10, seen  # the last decode steps and the last token's forward
