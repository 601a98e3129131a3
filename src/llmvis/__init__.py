"""llmvis: watch a language model think.

import llmvis
loaded = llmvis.load_model()                      # the bundled SmolLM2-135M-Instruct
trace = llmvis.generate(loaded, llmvis.GenerationRequest(prompt="Hi!"))
for event in llmvis.stream(loaded, llmvis.GenerationRequest(prompt="Hi!")): ...
forked = llmvis.fork(loaded, trace, position, token_id)   # force a token, generate on
llmvis.show(trace, loaded, views=["logit_lens"])  # in Jupyter: the web app's chips and charts

Names are imported on first use, so `llmvis --version` or `--help` answers without loading torch.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "ChatMessage": "llmvis.trace",
    "GenerationRequest": "llmvis.trace",
    "Trace": "llmvis.trace",
    "GenerationError": "llmvis.generation",
    "SamplingParams": "llmvis.generation",
    "generate": "llmvis.generation",
    "stream": "llmvis.generation",
    "fork": "llmvis.generation.fork",
    "LoadedModel": "llmvis.models",
    "ModelLoadError": "llmvis.models",
    "load_model": "llmvis.models",
    "show": "llmvis.notebook",
    "compare": "llmvis.notebook",
}
_RENAMED = {"stream": "start_generation"}

__all__ = [
    "ChatMessage",
    "GenerationError",
    "GenerationRequest",
    "LoadedModel",
    "ModelLoadError",
    "SamplingParams",
    "Trace",
    "compare",
    "fork",
    "generate",
    "load_model",
    "show",
    "stream",
]

if TYPE_CHECKING:
    from llmvis.generation import GenerationError, SamplingParams, generate
    from llmvis.generation import start_generation as stream
    from llmvis.generation.fork import fork
    from llmvis.models import LoadedModel, ModelLoadError, load_model
    from llmvis.notebook import compare, show
    from llmvis.trace import ChatMessage, GenerationRequest, Trace


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'llmvis' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value
