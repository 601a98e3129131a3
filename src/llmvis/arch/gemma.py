"""Gemma 2, 3 and 4: "sandwich" norms. Each block's output is normalised before it is added to the
residual stream, so what attention and the MLP add is the output of their post-norms; the MLP
reads the pre-feedforward norm of the residual after attention. (Gemma 1 is Llama-shaped.)
Gemma 4's layers also add a per-layer input and scale their output by a learned scalar: the
capture keeps that as each layer's third part, so the residual stream still adds up."""

from llmvis.arch.base import Architecture
from llmvis.arch.registry import family


@family("gemma2", "gemma3_text", "gemma3")
class Gemma(Architecture):
    family = "Gemma 2/3 (sandwich norms)"
    mlp_norm = "pre_feedforward_layernorm"
    attn_output_norm = "post_attention_layernorm"
    mlp_output_norm = "post_feedforward_layernorm"


@family("gemma4_text", "gemma4")
class Gemma4(Gemma):
    family = "Gemma 4 (sandwich norms, per-layer inputs)"
    extra_part = "per-layer input and layer scale"
