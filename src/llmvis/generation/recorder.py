"""The bookkeeping of one run, shared by its two producers: local generation (generate.py) and
remote engines (remote/generate.py).

Both render the prompt with the model's chat template, check the params against the model,
turn ids into tokens with UTF-8-safe pieces and labels, fill one Trace and time the run. Only
where the numbers come from differs: the local loop computes each token's statistics, an engine
sends them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from llmvis.generation.chat import build_prompt
from llmvis.generation.errors import GenerationError
from llmvis.generation.events import DoneEvent, StartEvent, TokenEvent
from llmvis.models.info import ModelInfo
from llmvis.tokens import IncrementalDetokenizer, Labeler
from llmvis.trace import FinishReason, GenerationRequest, Role, SamplingParams, Timings, Token, TokenStats, Trace


class RunRecorder:
    """One run's Trace as it grows. `known` are the ids fed before generation: the prompt, then a
    fork's forced tokens (which count as generated, with the statistics the caller gives them)."""

    def __init__(self, tokenizer: Any, labeler: Labeler, info: ModelInfo, request: GenerationRequest) -> None:
        prompt = build_prompt(tokenizer, request)
        self.prompt_ids: list[int] = prompt.ids
        self.roles: list[Role | None] = prompt.roles
        self.forced: list[int] = list(request.forced_tokens)
        self.known: list[int] = self.prompt_ids + self.forced
        self.prompt_text: str = prompt.text
        self.params = checked_params(request, len(self.prompt_ids), info)
        self.reply_role: Role | None = "assistant" if request.mode == "chat" else None
        self.labeler = labeler
        self.detok = IncrementalDetokenizer(tokenizer)
        self.trace = Trace(
            request=request,
            params=self.params,
            model=info,
            prompt_len=len(self.prompt_ids),
            title=request.title(),
        )
        self.t0 = time.perf_counter()
        self.first_token_s = 0.0

    def start(self) -> None:
        """The run's clock starts now (the recorder may be made before the run is queued)."""
        self.t0 = time.perf_counter()

    def add_known(self, stats: Sequence[TokenStats | None]) -> StartEvent:
        """Record the known tokens, `stats[pos]` each; returns the run's start event."""
        for pos, token_id in enumerate(self.known):
            is_prompt = pos < len(self.prompt_ids)
            role = self.roles[pos] if is_prompt else self.reply_role
            kind = "prompt" if is_prompt else "generated"
            self._append(token_id, self.detok.push(token_id), kind, role, stats[pos])
        return StartEvent(
            run_id=self.trace.id, prompt_tokens=list(self.trace.tokens), params=self.params, model=self.trace.model
        )

    def add_generated(self, token_id: int, stats: TokenStats, text: str | None = None) -> TokenEvent:
        """Record a generated token: its piece from the detokenizer, or `text` as an engine named it."""
        piece = self.detok.push(token_id) if text is None else text
        token = self._append(token_id, piece, "generated", self.reply_role, stats)
        if not self.first_token_s:
            self.first_token_s = time.perf_counter() - self.t0
        return TokenEvent(token=token)

    def finish(self, reason: FinishReason, prefill_s: float | None = None, error: str | None = None) -> DoneEvent:
        """Close the trace: finish reason, error, timings (`prefill_s`: when it was measured apart
        from the first token, as locally)."""
        total = time.perf_counter() - self.t0
        prefill = self.first_token_s if prefill_s is None else prefill_s
        n = len(self.trace.generated) - len(self.forced)
        self.trace.finish_reason = reason
        self.trace.error = error
        self.trace.timings = Timings(
            prefill_s=prefill,
            first_token_s=self.first_token_s,
            decode_s=max(0.0, total - prefill),
            total_s=total,
            tokens_per_s=n / total if total > 0 else 0.0,
        )
        return DoneEvent(run_id=self.trace.id, finish_reason=reason, timings=self.trace.timings, text=self.trace.text)

    def fail(self, exc: BaseException, prefill_s: float | None = None) -> None:
        """Close the trace of a run that an exception ended (a closed generator: cancelled)."""
        reason: FinishReason = "cancelled" if isinstance(exc, GeneratorExit) else "error"
        self.finish(reason, prefill_s, str(exc) or type(exc).__name__)

    def _append(self, token_id: int, piece: str, kind: Any, role: Role | None, stats: TokenStats | None) -> Token:
        token = Token(
            position=len(self.trace.tokens),
            id=token_id,
            text=piece,
            label=self.labeler(token_id, piece),
            kind=kind,
            role=role,
            special=token_id in self.labeler.special_ids,
            stats=stats,
        )
        self.trace.tokens.append(token)
        return token


def checked_params(request: GenerationRequest, prompt_len: int, info: ModelInfo) -> SamplingParams:
    """The request's params with the seed resolved (a drawn one is recorded, so every run can be
    replayed), after checking that forced ids and the length fit the model."""
    forced = request.forced_tokens
    if any(not 0 <= t < info.vocab_size for t in forced):
        raise GenerationError(f"forced token ids must be in [0, {info.vocab_size})")
    start_len, wanted = prompt_len + len(forced), request.params.max_new_tokens
    if start_len + wanted > info.context_length:
        raise GenerationError(
            f"prompt ({start_len} tokens) + max_new_tokens ({wanted}) = {start_len + wanted} "
            f"exceeds the model's context length ({info.context_length})"
        )
    seed = request.params.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    return request.params.model_copy(update={"seed": seed})
