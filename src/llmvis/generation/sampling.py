"""Sampling params (llmvis.trace.SamplingParams) translated to transformers' own logits processors."""

from __future__ import annotations

from transformers import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmvis.trace import SamplingParams


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
