"""GPT-Neo: GPT-2's layout, with local attention layers (a band of `window_size` keys) and no
1/sqrt(d) scaling. Its attention does not go through the AttentionInterface: its `_attn` (the
weights from the rotated-free queries and keys) reports them to the capture."""

from collections.abc import Callable
from typing import Any

import torch

from llmvis.arch.base import Architecture
from llmvis.arch.registry import family


@family("gpt_neo")
class GptNeo(Architecture):
    family = "GPT-Neo (local attention layers)"
    mlp_norm = "ln_2"

    def attn_out_projection(self, layer: int) -> Any:
        return self.layers[layer].attn.attention.out_proj

    def record_attention(self, layer: int, report: Callable[..., None]) -> Callable[[], None]:
        attn = self.layers[layer].attn.attention
        original = attn._attn

        def _attn(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any = None) -> Any:
            q_len, k_len = query.shape[-2], key.shape[-2]
            allowed = attn.bias[0, 0, k_len - q_len : k_len, :k_len]  # causal, or the local band
            if attention_mask is not None:
                allowed = allowed & (attention_mask.reshape(-1, q_len, k_len)[0] == 0)
            report(query, key, allowed, scaling=1.0, value=value)
            return original(query, key, value, attention_mask)

        attn._attn = _attn
        return lambda: delattr(attn, "_attn")
