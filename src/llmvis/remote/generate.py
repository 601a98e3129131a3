"""Runs on a remote engine: the same events and Trace as local generation.

The prompt is rendered and tokenised locally (the model's own chat template), so the prompt
tokens shown are the ones sent, and a fork is the same request with the forced tokens appended.
The text goes to /v1/completions, which every OpenAI-compatible engine serves; each streamed
token comes with its logprob and the top-N alternatives, which become the token's statistics.
Prompt tokens get none: engines do not return them in the stream.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

from llmvis.generation.errors import GenerationError
from llmvis.generation.events import GenerationEvent
from llmvis.generation.recorder import RunRecorder
from llmvis.remote.client import EngineError
from llmvis.remote.model import RemoteModel
from llmvis.remote.stats import Returned, inherited, remote_stats
from llmvis.trace import FinishReason, GenerationRequest, Trace

LOGPROB_LIMITS = (20, 5, 1)  # the usual engine limits on top logprobs, tried in turn


class RemoteGeneration:
    """An iterator of events for one run on the engine; `trace` holds what arrived so far."""

    def __init__(
        self,
        remote: RemoteModel,
        request: GenerationRequest,
        cancel: threading.Event | None = None,
        parent: Trace | None = None,
    ) -> None:
        """`parent`: for a fork, the run it forks, whose statistics the kept tokens inherit."""
        self.remote = remote
        self.parent = parent
        self.cancel = cancel or threading.Event()
        self.recorder = RunRecorder(remote.tokenizer, remote.token_map.labeler, remote.info, request)
        self.params = self.recorder.params
        self.trace = self.recorder.trace
        forced = self.recorder.forced
        self.text = self.recorder.prompt_text + (
            remote.tokenizer.decode(forced, skip_special_tokens=False) if forced else ""
        )
        self._events = self._run()

    def __iter__(self) -> Iterator[GenerationEvent]:
        return self

    def __next__(self) -> GenerationEvent:
        return next(self._events)

    def body(self, logprobs: int | None = None) -> dict[str, Any]:
        """The /v1/completions request for this run (asking for `logprobs` candidates)."""
        p = self.params
        body: dict[str, Any] = {
            "model": self.remote.engine_model,
            "prompt": self.text,
            "max_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "seed": p.seed,
            "logprobs": logprobs or p.top_n,
        }
        if p.top_p < 1:
            body["top_p"] = p.top_p
        if p.top_k is not None:
            body["top_k"] = p.top_k
        if p.stop:
            body["stop"] = list(p.stop)
        return {**body, **self.remote.extra_body}

    def _run(self) -> Iterator[GenerationEvent]:
        rec, tmap = self.recorder, self.remote.token_map
        rec.start()
        forced = rec.forced
        forced_stats = inherited(self.parent, forced) if self.parent else [None] * len(forced)
        yield rec.add_known([None] * len(rec.prompt_ids) + list(forced_stats))
        finish: FinishReason = "length"
        stream, first, asked = None, None, self.params.top_n
        try:
            stream, first, asked = self._open()
            for chunk in itertools.chain(first, stream):
                if self.cancel.is_set():
                    finish = "cancelled"
                    break
                choice = (chunk.get("choices") or [{}])[0]
                for piece, logprob, top in _tokens_of(choice):
                    chosen = self._returned(piece, logprob)
                    candidates = [self._returned(t, lp) for t, lp in top.items()]
                    stats = remote_stats(chosen, candidates, self.remote.info.vocab_size, asked)
                    yield rec.add_generated(chosen.id, stats, tmap.text(chosen.id, piece))
                if choice.get("finish_reason"):
                    finish = self._finish_reason(choice)
        except EngineError as exc:
            rec.fail(exc)
            raise GenerationError(str(exc)) from exc
        except BaseException as exc:
            rec.fail(exc)
            raise
        finally:
            if stream is not None:
                stream.close()  # on cancel: the engine sees the disconnect and stops generating
        yield rec.finish(finish)

    def _open(self) -> tuple[Any, list[dict[str, Any]], int]:
        """Start the engine's stream: (stream, its first chunks, candidates asked for). An engine
        that refuses that many logprobs (OpenAI allows 5, vLLM 20 unless --max-logprobs) is asked
        again at the next usual limit, which the RemoteModel then remembers for later runs."""
        asked = min(self.params.top_n, self.remote.max_logprobs or self.params.top_n)
        while True:
            stream = self.remote.client.stream_completion(self.body(asked))
            try:
                return stream, [next(stream)], asked
            except StopIteration:
                return stream, [], asked
            except EngineError as exc:
                stream.close()
                lower = next((n for n in LOGPROB_LIMITS if n < asked), None)
                if lower is None or "(HTTP 4" not in str(exc) or "logprob" not in str(exc).lower():
                    raise
                self.remote.max_logprobs = asked = lower

    def _finish_reason(self, choice: dict[str, Any]) -> FinishReason:
        """Engines say "stop" for EOS and stop strings alike; vLLM tells them apart in stop_reason."""
        if choice.get("finish_reason") == "length":
            return "length"
        matched = choice.get("stop_reason")
        if isinstance(matched, str) or (matched is None and self.params.stop and "stop_reason" not in choice):
            return "stop"
        return "eos"

    def _returned(self, piece: str, logprob: float) -> Returned:
        """A token as the engine named it, with its local id and label."""
        token_id = self.remote.token_map.id_of(piece)
        return Returned(token_id, self.remote.token_map.labeler(token_id, piece), logprob)


def _tokens_of(choice: dict[str, Any]) -> Iterator[tuple[str, float, dict[str, float]]]:
    """(piece, logprob, {candidate: logprob}) for each token in a completion chunk."""
    logprobs = choice.get("logprobs")
    if not logprobs:
        if choice.get("text"):
            raise EngineError(
                "the engine returned text without logprobs: it must support `logprobs` on /v1/completions "
                "(llama-cpp-python: start it with --logits_all true)"
            )
        return
    pieces = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or [None] * len(pieces)
    for piece, value, top in zip(pieces, values, tops, strict=False):
        if value is None:
            continue
        yield str(piece), float(value), {str(k): float(v) for k, v in (top or {}).items()}
