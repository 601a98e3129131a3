"""llmvis: watch a language model think.

import llmvis
loaded = llmvis.load_model()                      # the bundled SmolLM2-135M-Instruct
trace = llmvis.generate(loaded, llmvis.GenerationRequest(prompt="Hi!"))
for event in llmvis.stream(loaded, llmvis.GenerationRequest(prompt="Hi!")): ...
"""

from llmvis.generation import GenerationError, SamplingParams, generate
from llmvis.generation import start_generation as stream
from llmvis.models import LoadedModel, ModelLoadError, load_model
from llmvis.trace import ChatMessage, GenerationRequest, Trace

__version__ = "0.1.0"

__all__ = [
    "ChatMessage",
    "GenerationError",
    "GenerationRequest",
    "LoadedModel",
    "ModelLoadError",
    "SamplingParams",
    "Trace",
    "generate",
    "load_model",
    "stream",
]
