"""GPT-2: `transformer.h[i]` with `attn`, `mlp`, LayerNorms `ln_1`, `ln_2`, final `ln_f`."""

from llmvis.arch.base import Architecture
from llmvis.arch.registry import family


@family("gpt2")
class Gpt2(Architecture):
    family = "GPT-2"
    mlp_norm = "ln_2"
