"""Qwen3-Next and Qwen3.5: their attention layers gate each head's output before the output
projection (attn_output × sigmoid(gate), the gate being the second half of each head's q_proj
row). Per-head contributions multiply each head's value mix by its gate, recomputed here from
the layer's input with the layer's own norm and projection."""

from typing import Any

import torch

from llmvis.arch.base import Architecture, device_of, dtype_of
from llmvis.arch.registry import family


@family("qwen3_next", "qwen3_5_text")
class GatedAttention(Architecture):
    family = "Qwen3-Next / Qwen3.5 (gated attention, linear-attention layers)"

    def head_gate(self, layer: int, residual: torch.Tensor) -> torch.Tensor | None:
        attn: Any = self.attention(layer)
        norm = self.layers[layer].input_layernorm
        x = norm(residual.to(device_of(norm, residual.device), dtype_of(norm, residual.dtype)))
        q = attn.q_proj(x.to(device_of(attn.q_proj, x.device), dtype_of(attn.q_proj, x.dtype)))
        gate = q.view(x.shape[0], -1, 2 * attn.head_dim).chunk(2, dim=-1)[1]  # [n, H, hd]
        return torch.sigmoid(gate.float())
