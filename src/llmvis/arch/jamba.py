"""Jamba: attention layers and Mamba layers interleaved, each with a feed-forward (an MLP or a
mixture of experts) behind its `pre_ff_layernorm`. The Mamba layers have no attention to show;
their contributions are captured like any layer's."""

from llmvis.arch.base import Architecture
from llmvis.arch.registry import family


@family("jamba")
class Jamba(Architecture):
    family = "Jamba (attention + Mamba layers)"
    mlp_norm = "pre_ff_layernorm"
