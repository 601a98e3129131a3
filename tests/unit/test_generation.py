"""Generation fidelity against transformers' own generate(), on every tiny architecture."""

from __future__ import annotations

import copy
import dataclasses
import sys
import threading

import pytest
import torch

from llmvis.generation import (
    GenerationError,
    PromptStatsEvent,
    StartEvent,
    TokenEvent,
    generate,
    start_generation,
)
from llmvis.generation import overlap as overlap_module
from llmvis.generation import stats as stats_module
from llmvis.generation.head import defers_prompt_logits, supports_deferred_head
from llmvis.generation.sampling import build_processors
from llmvis.trace import ChatMessage, GenerationRequest, SamplingParams, Trace
from tiny_models import HYBRIDS, tiny_loaded
from trace_helpers import cancel_after

generate_module = sys.modules["llmvis.generation.generate"]

PROMPT = "The capital of France is Paris. Once upon a time"


def _request(**params) -> GenerationRequest:
    return GenerationRequest(mode="completion", prompt=PROMPT, params=SamplingParams(**params))


def _hf_generate(loaded, ids, **kwargs):
    out = loaded.model.generate(
        torch.tensor([ids]),
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=True,
        pad_token_id=0,
        **kwargs,
    )
    return out.sequences[0, len(ids) :].tolist(), out


def test_greedy_equals_hf_generate_and_raw_probs_equal_hf_logits(arch):
    loaded = tiny_loaded(arch)
    trace = generate(loaded, _request(temperature=0, max_new_tokens=16))
    prompt_ids = trace.ids[: trace.prompt_len]
    hf_tokens, out = _hf_generate(loaded, prompt_ids, do_sample=False, max_new_tokens=16)
    ours = [t.id for t in trace.generated]
    assert ours == hf_tokens[: len(ours)]
    assert len(ours) == len(hf_tokens)
    for token, logits, scores in zip(trace.generated, out.logits, out.scores, strict=True):
        raw = torch.softmax(logits[0].float(), -1)
        assert abs(token.stats.raw_prob - raw[token.id].item()) <= 1e-5
        assert token.stats.rank == 0  # greedy always takes the raw argmax
        assert token.stats.gap_to_top1 == 0
        top_ids = [c.id for c in token.stats.top]
        assert top_ids == raw.topk(len(top_ids)).indices.tolist()
        for cand in token.stats.top:
            assert abs(cand.raw_prob - raw[cand.id].item()) <= 1e-5
        sampled = torch.softmax(scores[0].float(), -1)
        assert abs(token.stats.sampled_prob - sampled[token.id].item()) <= 1e-5
        entropy = -(raw * raw.clamp_min(1e-30).log()).sum().item()
        assert abs(token.stats.raw_entropy - entropy) <= 1e-4


def test_sampled_probs_equal_hf_processed_scores():
    loaded = tiny_loaded("llama")
    params = dict(temperature=0.7, top_k=20, top_p=0.9, max_new_tokens=12)
    request = _request(seed=1234, **params)
    trace = generate(loaded, request)
    prompt_ids = trace.ids[: trace.prompt_len]
    torch.manual_seed(1234)  # same stream as our seeded CPU generator
    hf_tokens, out = _hf_generate(
        loaded, prompt_ids, do_sample=True, temperature=0.7, top_k=20, top_p=0.9, max_new_tokens=12
    )
    ours = [t.id for t in trace.generated]
    assert ours == hf_tokens[: len(ours)]
    for token, logits, scores in zip(trace.generated, out.logits, out.scores, strict=False):
        sampled = torch.softmax(scores[0].float(), -1)
        raw = torch.softmax(logits[0].float(), -1)
        assert abs(token.stats.sampled_prob - sampled[token.id].item()) <= 1e-5
        assert abs(token.stats.raw_prob - raw[token.id].item()) <= 1e-5
        for cand in token.stats.top:
            assert abs(cand.sampled_prob - sampled[cand.id].item()) <= 1e-5
        # top-k 20 leaves exactly 20 or fewer tokens with non-zero sampled mass
        assert int((sampled > 0).sum()) <= 20


def test_processors_match_hf_warpers_on_random_logits():
    torch.manual_seed(0)
    logits = torch.randn(1, 400) * 3
    params = SamplingParams(temperature=0.5, top_k=7, top_p=0.8)
    processed = build_processors(params)(torch.zeros(1, 1, dtype=torch.long), logits.clone())
    kept = torch.isfinite(processed[0])
    assert 1 <= int(kept.sum()) <= 7
    # temperature scales the logits that survive
    assert torch.allclose(processed[0][kept], logits[0][kept] / 0.5)


def test_same_seed_same_tokens_and_other_seed_differs():
    loaded = tiny_loaded("qwen3")
    a = generate(loaded, _request(temperature=1.5, top_k=None, top_p=1.0, seed=7, max_new_tokens=24))
    b = generate(loaded, _request(temperature=1.5, top_k=None, top_p=1.0, seed=7, max_new_tokens=24))
    c = generate(loaded, _request(temperature=1.5, top_k=None, top_p=1.0, seed=8, max_new_tokens=24))
    assert a.ids == b.ids
    assert a.ids != c.ids
    assert a.params.seed == 7


def test_unseeded_run_records_the_seed_it_used():
    loaded = tiny_loaded("llama")
    first = generate(loaded, _request(temperature=1.2, max_new_tokens=10))
    again = generate(loaded, _request(temperature=1.2, max_new_tokens=10, seed=first.params.seed))
    assert first.params.seed is not None
    assert first.ids == again.ids


@pytest.mark.parametrize(
    ("deferred", "overlap"),
    [(True, True), (True, False), (False, False)],
    ids=["deferred-beside-decode", "deferred-after-decode", "eager"],
)
def test_prompt_token_stats_come_from_prefix_logits(arch, deferred, overlap, monkeypatch):
    """Every prefill path, across chunk boundaries, equals one full forward's softmax."""
    monkeypatch.setattr(generate_module, "PREFILL_CHUNK", 7)
    monkeypatch.setattr(generate_module, "DEFERRED_CHUNK", 11)
    monkeypatch.setattr(overlap_module, "PIECE", 5)
    monkeypatch.setattr(generate_module, "can_overlap", lambda loaded: overlap)
    monkeypatch.setattr(stats_module, "CPU_ROW_BLOCK", 3)  # blocks that straddle chunks
    base = tiny_loaded(arch)  # (OPT's head cannot be replayed without its decoder: the probe says no)
    loaded = dataclasses.replace(base, deferred_head=deferred and defers_prompt_logits(base))
    trace = generate(loaded, _request(temperature=0, max_new_tokens=2))
    assert trace.prompt_len > 10  # spans several chunks
    _assert_prompt_stats_match_forward(loaded, trace)


def test_deferred_prompt_stats_replay_the_models_own_head():
    """Gemma soft-caps its logits after lm_head: with logits far past the cap, replayed prompt
    statistics still equal the full forward's, and differ from a bare lm_head's."""
    loaded = tiny_loaded("gemma3_text")
    model = copy.deepcopy(loaded.model)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(60.0)
    capped = dataclasses.replace(loaded, model=model, deferred_head=None)
    assert defers_prompt_logits(capped)
    trace = generate(capped, _request(temperature=0, max_new_tokens=1))
    _assert_prompt_stats_match_forward(capped, trace)
    ids = torch.tensor([trace.ids[: trace.prompt_len]])
    with torch.no_grad():
        hidden = model.model(ids).last_hidden_state[0]
        uncapped = torch.softmax(model.lm_head(hidden).float(), -1)
    assert (
        max(
            abs(trace.tokens[p].stats.raw_prob - uncapped[p - 1, trace.ids[p]].item())
            for p in range(1, trace.prompt_len)
        )
        > 1e-3
    )


def test_models_whose_forward_cannot_keep_one_logit_take_the_eager_path():
    loaded = tiny_loaded("llama")

    class NoLogitsToKeep(type(loaded.model)):
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
            return super().forward(input_ids=input_ids, cache=cache, use_cache=use_cache)

    model = copy.deepcopy(loaded.model)
    model.__class__ = NoLogitsToKeep
    assert not supports_deferred_head(model, torch.device("cpu"))
    eager = dataclasses.replace(loaded, model=model, deferred_head=None)
    events = list(start_generation(eager, _request(temperature=0, max_new_tokens=2)))
    assert all(t.stats is not None for t in events[0].prompt_tokens[1:])
    assert not any(isinstance(e, PromptStatsEvent) for e in events)


def test_the_deferred_head_keeps_only_its_own_threads_forwards():
    """A forward of the same model in another thread while the prefill's hook is on (a view, or a
    background capture of another server on a shared model) is not kept as the prompt's states."""
    from llmvis.generation.head import DeferredHead

    model = tiny_loaded("llama").model
    head = DeferredHead(model)
    with torch.inference_mode(), head.capture():
        other = threading.Thread(target=lambda: model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=False))
        other.start()
        other.join()
        model(input_ids=torch.tensor([[4, 5]]), use_cache=False)
    assert [c.shape[0] for c in head.chunks] == [2]


@pytest.mark.parametrize("overlap", [True, False], ids=["beside-decode", "after-decode"])
def test_deferred_prompt_stats_arrive_once_between_start_and_done(overlap, monkeypatch):
    monkeypatch.setattr(generate_module, "can_overlap", lambda loaded: overlap)
    loaded = tiny_loaded("qwen3")
    assert defers_prompt_logits(loaded)
    for new in (1, 3, 40):  # the worker finishes after the last step, or before it
        events = list(start_generation(loaded, _request(temperature=0, max_new_tokens=new)))
        start, done = events[0], events[-1]
        assert isinstance(start, StartEvent) and all(t.stats is None for t in start.prompt_tokens)
        assert done.type == "done"
        stats_events = [e for e in events if isinstance(e, PromptStatsEvent)]
        assert len(stats_events) == 1 and sum(isinstance(e, TokenEvent) for e in events) == new
        stats_event = stats_events[0]
        assert len(stats_event.stats) == len(start.prompt_tokens) and stats_event.stats[0] is None
        assert all(s is not None for s in stats_event.stats[1:])


def test_prompt_stats_beside_decode_split_the_threads_and_give_them_back(monkeypatch):
    """While the loop decodes on n-1 threads the worker computes on one; afterwards the caller,
    and threads that start using torch later, have every thread again."""
    seen: dict[str, int] = {}
    pieces = overlap_module.prompt_row_pieces

    def watched(head, ids, top_n, piece):
        seen["worker"] = torch.get_num_threads()
        yield from pieces(head, ids, top_n, piece)

    def step_threads(module, args, kwargs):
        if threading.current_thread() is threading.main_thread() and kwargs["input_ids"].shape[1] == 1:
            seen.setdefault("decode", torch.get_num_threads())

    monkeypatch.setattr(overlap_module, "prompt_row_pieces", watched)
    loaded = tiny_loaded("llama")
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    handle = loaded.model.register_forward_pre_hook(step_threads, with_kwargs=True)
    try:
        assert overlap_module.can_overlap(loaded)
        trace = generate(loaded, _request(temperature=0, max_new_tokens=4))
        assert all(t.stats is not None for t in trace.tokens[1:])
        assert seen == {"worker": 1, "decode": 2}
        assert torch.get_num_threads() == 3
        fresh: list[int] = []
        thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert fresh == [3]
    finally:
        handle.remove()
        torch.set_num_threads(before)


def test_a_failing_prompt_stats_worker_fails_the_run_and_gives_the_threads_back(monkeypatch):
    def broken(head, ids, top_n, piece):
        raise RuntimeError("worker broke")
        yield

    monkeypatch.setattr(overlap_module, "prompt_row_pieces", broken)
    monkeypatch.setattr(generate_module, "can_overlap", lambda loaded: True)
    before = torch.get_num_threads()
    generation = start_generation(tiny_loaded("llama"), _request(temperature=0, max_new_tokens=3))
    with pytest.raises(RuntimeError, match="worker broke"):
        list(generation)
    assert torch.get_num_threads() == before


def _assert_prompt_stats_match_forward(loaded, trace):
    # a recurrent layer's scan (Mamba, delta-net) carried over prefill chunks rounds differently
    # from one scan over the whole prompt: 1e-5-level differences in fp32
    tol = 5e-5 if loaded.info.model_type in HYBRIDS else 1e-5
    ids = torch.tensor([trace.ids[: trace.prompt_len]])
    with torch.no_grad():
        logits = loaded.model(ids).logits[0].float()
    assert trace.tokens[0].stats is None
    for pos in range(1, trace.prompt_len):
        probs = torch.softmax(logits[pos - 1], -1)
        stats = trace.tokens[pos].stats
        assert abs(stats.raw_prob - probs[trace.ids[pos]].item()) <= tol
        assert stats.rank == int((logits[pos - 1] > logits[pos - 1, trace.ids[pos]]).sum())
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum().item()
        assert abs(stats.raw_entropy - entropy) <= 1e-4
        best = probs.topk(len(stats.top)).values  # compared by value: capped logits tie
        assert torch.allclose(probs[[c.id for c in stats.top]], best, atol=1e-6)
        assert max(abs(c.raw_prob - probs[c.id].item()) for c in stats.top) <= tol, [
            (c.raw_prob, probs[c.id].item()) for c in stats.top
        ]
        assert stats.sampled_prob is None


def test_streaming_yields_start_then_one_event_per_token_then_done():
    loaded = tiny_loaded("llama")
    events = list(start_generation(loaded, _request(temperature=0, max_new_tokens=8)))
    assert isinstance(events[0], StartEvent)
    assert events[-1].type == "done"
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert 1 <= len(tokens) <= 8
    assert [e.token.position for e in tokens] == list(
        range(len(events[0].prompt_tokens), len(events[0].prompt_tokens) + len(tokens))
    )


def test_cancel_stops_within_one_step():
    loaded = tiny_loaded("llama")
    cancel = threading.Event()
    gen = start_generation(loaded, _request(temperature=1.0, max_new_tokens=200, seed=1), cancel)
    cancel_after(gen, cancel, 3)
    assert gen.trace.finish_reason == "cancelled"
    assert len(gen.trace.generated) <= 4


def test_stop_at_eos_and_max_new_tokens():
    loaded = tiny_loaded("gemma3_text")
    trace = generate(loaded, _request(temperature=0, max_new_tokens=5))
    assert trace.finish_reason in ("eos", "length")
    assert len(trace.generated) <= 5
    if trace.finish_reason == "eos":
        assert trace.generated[-1].id in loaded.stop_ids


def test_chat_mode_uses_template_and_roles():
    loaded = tiny_loaded("qwen2")
    request = GenerationRequest(
        mode="chat",
        system="Be brief.",
        messages=[ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="hello")],
        prompt="capital of France?",
        params=SamplingParams(temperature=0, max_new_tokens=4),
    )
    trace = generate(loaded, request)
    prompt_text = "".join(t.text for t in trace.tokens[: trace.prompt_len])
    assert prompt_text.startswith("<|im_start|>system\nBe brief.")
    assert prompt_text.endswith("<|im_start|>assistant\n")
    roles = [t.role for t in trace.tokens[: trace.prompt_len]]
    assert roles[0] == "system" and "user" in roles and roles[-1] == "assistant"
    assert roles.index("user") < len(roles) - roles[::-1].index("user")


def test_chat_without_template_suggests_completion():
    loaded = tiny_loaded("llama")
    tokenizer = loaded.tokenizer
    saved = tokenizer.chat_template
    tokenizer.chat_template = None
    try:
        with pytest.raises(GenerationError, match="Completion"):
            start_generation(loaded, GenerationRequest(mode="chat", prompt="hi"))
    finally:
        tokenizer.chat_template = saved


def test_context_overflow_names_both_numbers():
    loaded = tiny_loaded("llama")
    with pytest.raises(GenerationError, match=r"max_new_tokens \(600\).*512"):
        start_generation(loaded, _request(max_new_tokens=600))


def test_forced_tokens_continue_from_a_fork():
    loaded = tiny_loaded("llama")
    base = generate(loaded, _request(temperature=0, max_new_tokens=10))
    forced = [t.id for t in base.generated[:3]]
    fork = generate(loaded, _request(temperature=0, max_new_tokens=7).model_copy(update={"forced_tokens": forced}))
    assert fork.ids[: len(base.ids)] == base.ids[: len(fork.ids)]


def test_trace_json_round_trip_and_version_check():
    loaded = tiny_loaded("llama")
    trace = generate(loaded, _request(temperature=0, max_new_tokens=4))
    again = Trace.from_json(trace.to_json())
    assert again == trace
    with pytest.raises(ValueError, match="version"):
        Trace.from_json(trace.to_json().replace('"version":1', '"version":99', 1))


def test_stop_string_ends_the_run_where_it_appears():
    loaded = tiny_loaded("qwen3")
    full = generate(loaded, _request(temperature=0, max_new_tokens=40))
    pieces = [t.text for t in full.generated]
    cut = next(i for i in range(5, len(pieces)) if pieces[i].strip())
    stop = pieces[cut].strip()
    first = next(i for i, p in enumerate(pieces) if stop in "".join(pieces[: i + 1]))
    stopped = generate(loaded, _request(temperature=0, max_new_tokens=40, stop=[stop]))
    assert stopped.finish_reason == "stop"
    assert [t.id for t in stopped.generated] == [t.id for t in full.generated[: first + 1]]
