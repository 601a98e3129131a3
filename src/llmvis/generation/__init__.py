"""Streaming generation with per-token statistics."""

from llmvis.generation.errors import GenerationError
from llmvis.generation.events import (
    DoneEvent,
    GenerationEvent,
    PromptStatsEvent,
    StartEvent,
    TokenEvent,
)
from llmvis.generation.generate import Generation, generate, start_generation
from llmvis.trace import SamplingParams

__all__ = [
    "DoneEvent",
    "Generation",
    "GenerationError",
    "GenerationEvent",
    "PromptStatsEvent",
    "SamplingParams",
    "StartEvent",
    "TokenEvent",
    "generate",
    "start_generation",
]
