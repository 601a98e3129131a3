"""Events streamed while a run generates: start, one token event per token, done.

When the prompt's statistics are deferred (generation/head.py), the start event's prompt tokens
have none yet and one `prompt_stats` event brings them as soon as they are ready: between two
token events (generation/overlap.py) or after the last one, always before done.

The server forwards them as SSE events of the same names; `error` is added there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol

from pydantic import BaseModel

from llmvis.models.info import ModelInfo
from llmvis.trace import FinishReason, SamplingParams, Timings, Token, TokenStats, Trace


class StartEvent(BaseModel):
    type: Literal["start"] = "start"
    run_id: str
    prompt_tokens: list[Token]
    params: SamplingParams
    model: ModelInfo


class TokenEvent(BaseModel):
    type: Literal["token"] = "token"
    token: Token


class PromptStatsEvent(BaseModel):
    type: Literal["prompt_stats"] = "prompt_stats"
    run_id: str
    stats: list[TokenStats | None]  # one per token the start event announced; the first is None


class DoneEvent(BaseModel):
    type: Literal["done"] = "done"
    run_id: str
    finish_reason: FinishReason
    timings: Timings
    text: str


GenerationEvent = StartEvent | TokenEvent | PromptStatsEvent | DoneEvent


class RunProducer(Protocol):
    """A run being produced (generate.Generation, remote.generate.RemoteGeneration): an iterator
    of its events, and the Trace they have filled so far."""

    trace: Trace

    def __iter__(self) -> Iterator[GenerationEvent]: ...

    def __next__(self) -> GenerationEvent: ...
