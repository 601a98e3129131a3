"""RunRecorder: the run bookkeeping both producers (local generation, remote engines) share."""

from __future__ import annotations

import pytest

from llmvis.generation import GenerationError
from llmvis.generation.recorder import RunRecorder
from llmvis.trace import GenerationRequest, SamplingParams, TokenStats
from tiny_models import tiny_loaded

STATS = TokenStats(raw_prob=0.5, rank=0, raw_entropy=1.0, logit_gap=0.1, gap_to_top1=0.0)


def _recorder(**request) -> RunRecorder:
    loaded = tiny_loaded("llama")
    return RunRecorder(loaded.tokenizer, loaded.labeler, loaded.info, GenerationRequest(**request))


def test_the_done_event_carries_the_pieces_the_token_events_streamed():
    rec = _recorder(mode="completion", prompt="Hi", params=SamplingParams(seed=3))
    start = rec.add_known([None] * len(rec.known))
    assert "".join(t.text for t in start.prompt_tokens) == "Hi"
    ids = rec.detok.tokenizer(" a🙂 b", add_special_tokens=False).input_ids
    events = [rec.add_generated(i, STATS) for i in ids]
    assert "" in [e.token.text for e in events]  # a piece waits for the emoji's last byte
    done = rec.finish("length")
    assert done.text == rec.trace.text == "".join(e.token.text for e in events) == " a🙂 b"
    assert rec.trace.params.seed == 3 and rec.trace.timings.total_s >= rec.trace.timings.decode_s >= 0


def test_runs_are_titled_by_what_the_user_typed():
    assert _recorder(mode="completion", prompt="one\n  two").trace.title == "one two"
    chat = _recorder(messages=[{"role": "user", "content": "x" * 200}])
    assert len(chat.trace.title) == 80 and chat.trace.title.endswith("…")
    assert chat.params.seed is not None  # drawn and recorded


def test_engine_named_tokens_keep_the_engines_text_and_unknown_ids_a_label():
    rec = _recorder(mode="completion", prompt="Hi")
    rec.add_known([None] * len(rec.known))
    token = rec.add_generated(-1, STATS, "\u2028odd").token
    assert token.text == "\u2028odd" and token.label == "\\u2028odd"
    rec.fail(RuntimeError("engine gone"))
    assert rec.trace.finish_reason == "error" and rec.trace.error == "engine gone"


def test_forced_ids_outside_the_vocabulary_are_refused():
    with pytest.raises(GenerationError, match="forced token ids"):
        _recorder(mode="completion", prompt="Hi", forced_tokens=[10**6])
