"""OLMo 2: norms after each block instead of before (the block reads the raw residual)."""

from llmvis.arch.base import Architecture
from llmvis.arch.registry import family


@family("olmo2", "olmo3")
class Olmo2(Architecture):
    family = "OLMo 2 (post-norms)"
    mlp_norm = None
    attn_output_norm = "post_attention_layernorm"
    mlp_output_norm = "post_feedforward_layernorm"
