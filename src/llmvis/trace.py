"""The record of one run: its tokens, their statistics, the params and the model.

A Trace is what generation produces, what the store persists and what every view reads.
It is a pydantic model so that the same object is the JSON file format and the API schema;
`TRACE_VERSION` is bumped on any incompatible change and checked when reading.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from llmvis.models.info import ModelInfo
from llmvis.plan import Intervention

TRACE_VERSION = 1
TITLE_CHARS = 80

Role = Literal["system", "user", "assistant", "tool"]
Mode = Literal["chat", "completion"]
FinishReason = Literal["eos", "stop", "length", "cancelled", "error"]


class SamplingParams(BaseModel):
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="0 = greedy (argmax)")
    top_k: int | None = Field(default=50, ge=1, le=100, description="None = off")
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=128, ge=1, le=32_768)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="None = random, recorded")
    top_n: int = Field(default=10, ge=1, le=50, description="candidates kept per token")
    stop: list[str] = Field(default_factory=list, max_length=16, description="extra stop strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class ChatMessage(BaseModel):
    role: Role
    content: str


class Candidate(BaseModel):
    """One of the top-N tokens the model considered at a position."""

    id: int
    label: str = Field(description="readable form of the token (bytes shown as <0x..>)")
    logit: float = Field(description="raw logit, before any processing")
    raw_prob: float = Field(description="softmax of the raw logits")
    sampled_prob: float | None = Field(
        default=None, description="probability after temperature/top-k/top-p; None for prompt tokens"
    )


class TokenStats(BaseModel):
    """What the model thought of a token at its position, given the prefix."""

    raw_prob: float
    sampled_prob: float | None = None
    rank: int = Field(description="0 = the model's top choice in the raw distribution")
    raw_entropy: float = Field(description="entropy of the raw distribution, in nats")
    sampled_entropy: float | None = None
    logit_gap: float = Field(description="logit of top-1 minus logit of top-2")
    gap_to_top1: float = Field(description="logit of top-1 minus logit of this token (0 when it is top-1)")
    top: list[Candidate] = Field(default_factory=list)
    entropy_upper: float | None = Field(
        default=None,
        description="remote engines: the entropy lies in [raw_entropy, entropy_upper] (only top-N is known)",
    )
    missing_mass: float | None = Field(
        default=None, description="remote engines: probability mass outside the returned candidates"
    )


class Token(BaseModel):
    position: int
    id: int
    text: str = Field(description="UTF-8-safe piece: joined pieces equal the decoded text")
    label: str = Field(description="readable label, never empty")
    kind: Literal["prompt", "generated"]
    role: Role | None = None
    special: bool = Field(default=False, description="a special token such as <|im_end|>")
    stats: TokenStats | None = Field(default=None, description="None for the first prompt token")


class Timings(BaseModel):
    prefill_s: float = 0.0
    first_token_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0
    tokens_per_s: float = 0.0


class GenerationRequest(BaseModel):
    """What the user asked for: a prompt (completion) or a conversation (chat)."""

    mode: Mode = "chat"
    prompt: str = Field(default="", max_length=200_000)
    messages: list[ChatMessage] = Field(default_factory=list, max_length=512)
    system: str | None = Field(default=None, max_length=50_000)
    params: SamplingParams = Field(default_factory=SamplingParams)
    forced_tokens: list[int] = Field(
        default_factory=list,
        max_length=100_000,
        description="token ids appended after the prompt before generation starts (used by fork)",
    )
    interventions: list[Intervention] = Field(
        default_factory=list, max_length=64, description="applied while generating (a fork under intervention)"
    )

    @property
    def user_text(self) -> str:
        """What the user typed: the prompt, or the last user message in chat mode."""
        if self.prompt:
            return self.prompt
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return self.messages[-1].content if self.messages else ""

    def title(self) -> str:
        """A run's default title: what the user typed, on one line, cut to TITLE_CHARS."""
        text = " ".join(self.user_text.split())
        return (text[: TITLE_CHARS - 1] + "…") if len(text) > TITLE_CHARS else (text or "untitled run")


class Trace(BaseModel):
    version: int = TRACE_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created: float = Field(default_factory=time.time)
    title: str = ""
    request: GenerationRequest
    params: SamplingParams = Field(description="the params actually used (seed resolved)")
    model: ModelInfo
    tokens: list[Token] = Field(default_factory=list)
    prompt_len: int = 0
    finish_reason: FinishReason = "length"
    error: str | None = None
    timings: Timings = Field(default_factory=Timings)
    parent_id: str | None = Field(default=None, description="the run this one was forked from")
    fork_position: int | None = None

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def generated(self) -> list[Token]:
        return self.tokens[self.prompt_len :]

    @property
    def text(self) -> str:
        """The generated text (pieces joined)."""
        return "".join(t.text for t in self.generated)

    def to_json(self) -> str:
        return self.model_dump_json()

    def _repr_html_(self) -> str:
        """In Jupyter, `display(trace)`: the run's chips and candidates (see llmvis.notebook)."""
        from llmvis.notebook import trace_html

        return trace_html(self)

    @classmethod
    def from_json(cls, data: str | bytes) -> Trace:
        import json

        raw = json.loads(data)
        version = raw.get("version")
        if version != TRACE_VERSION:
            raise ValueError(f"trace version {version} is not supported (expected {TRACE_VERSION})")
        return cls.model_validate(raw)
