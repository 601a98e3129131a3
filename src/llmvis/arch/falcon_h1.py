"""Falcon-H1: in every layer a Mamba-2 mixer and attention read the same normed input side by
side, each output scaled by its multiplier, and their sum joins the residual stream; then a
gated MLP (its output scaled by `down_multiplier`) behind `pre_ff_layernorm`. Attention is read
like any layer's; the Mamba mixer's part is kept as each layer's third part."""

from __future__ import annotations

from typing import Any

import torch

from llmvis.arch.base import Architecture
from llmvis.arch.registry import family


@family("falcon_h1")
class FalconH1(Architecture):
    family = "Falcon-H1 (attention and Mamba side by side)"
    mlp_norm = "pre_ff_layernorm"
    extra_part = "Mamba mixer (beside attention)"
    extra_before_mlp = True
    recurrent_mixer = True

    @property
    def attn_scale(self) -> float:
        return float(getattr(self.config, "attention_out_multiplier", 1.0))

    @property
    def logit_multiplier(self) -> float:
        return float(getattr(self.config, "lm_head_multiplier", 1.0))

    def mlp_projected(self, layer: int, activations: torch.Tensor) -> torch.Tensor:
        mlp: Any = self.mlp(layer)
        return mlp.down_proj(activations) * mlp.down_multiplier
