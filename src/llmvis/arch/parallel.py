"""Parallel blocks: attention and the MLP both read the layer's input (through one shared norm
or two), and both add to the residual at once: x + attn(n1(x)) + mlp(n2(x)). GPT-J, Phi-1/2,
Cohere always; GPT-NeoX (Pythia) and StableLM when `use_parallel_residual` is set, otherwise
they are sequential like Llama."""

from typing import Any

from llmvis.arch.base import Architecture
from llmvis.arch.registry import family


@family("gptj")
class GptJ(Architecture):
    family = "GPT-J (parallel)"
    wiring = "parallel"
    mlp_norm = "ln_1"
    mlp_reads = "input"


@family("phi")
class Phi(Architecture):
    family = "Phi-1/2 (parallel)"
    wiring = "parallel"
    mlp_norm = "input_layernorm"
    mlp_reads = "input"


@family("cohere")
class Cohere(Architecture):
    family = "Cohere (parallel)"
    wiring = "parallel"
    mlp_norm = "input_layernorm"
    mlp_reads = "input"

    @property
    def logit_multiplier(self) -> float:
        return float(self.config.logit_scale)


class _MaybeParallel(Architecture):
    def __init__(self, model: Any) -> None:
        super().__init__(model)
        if getattr(self.config, "use_parallel_residual", False):
            self.wiring = "parallel"
            self.mlp_reads = "input"


@family("gpt_neox")
class GptNeoX(_MaybeParallel):
    family = "GPT-NeoX / Pythia"
    # NeoX gives the MLP its own norm (post_attention_layernorm) even in parallel blocks


@family("stablelm")
class StableLm(_MaybeParallel):
    family = "StableLM"

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        if self.wiring == "parallel":
            self.mlp_norm = "input_layernorm"  # shared with attention
