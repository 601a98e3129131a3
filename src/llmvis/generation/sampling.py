"""Sampling params and their translation to transformers' own logits processors."""

from __future__ import annotations

from pydantic import BaseModel, Field
from transformers import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


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


def build_processors(params: SamplingParams) -> LogitsProcessorList:
    """The warpers `generate(do_sample=True)` would apply, in the same order."""
    processors = LogitsProcessorList()
    if params.greedy:
        return processors
    if params.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k is not None:
        processors.append(TopKLogitsWarper(top_k=params.top_k, min_tokens_to_keep=1))
    if params.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=params.top_p, min_tokens_to_keep=1))
    return processors
