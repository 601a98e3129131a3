"""BLOOM: ALiBi (a per-head bias growing with the key's position, no rotary embedding), and
blocks that add the residual themselves: the attention module and the MLP take it as their
second argument and return residual + output. Its attention does not go through the
AttentionInterface: the fused query/key/value projection's output is split with the module's
own `_reshape` and reported with the layer's ALiBi bias and mask."""

from collections.abc import Callable
from typing import Any

import torch

from llmvis.arch.base import Architecture, NotAvailable, removing
from llmvis.arch.registry import family


@family("bloom")
class Bloom(Architecture):
    family = "BLOOM (ALiBi)"

    def __init__(self, model: Any) -> None:
        if getattr(model.config, "apply_residual_connection_post_layernorm", False):
            raise NotAvailable("this BLOOM adds the normalised stream as its residual: there is no residual stream")
        super().__init__(model)

    def contribution(self, args: tuple[Any, ...], output: Any) -> torch.Tensor:
        return super().contribution(args, output) - args[1][0]  # output − the residual it was given

    def run_mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(layer)(x, torch.zeros_like(x))  # with no residual to add: what the MLP adds

    def record_attention(self, layer: int, report: Callable[..., None]) -> Callable[[], None]:
        attn = self.layers[layer].self_attention
        call: dict[str, Any] = {}

        def before(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
            call.update(alibi=kwargs["alibi"], mask=kwargs.get("attention_mask"))

        def fused(_module: Any, _args: Any, qkv: torch.Tensor) -> None:
            query, key, value = attn._reshape(qkv)
            alibi = call["alibi"].reshape(-1, call["alibi"].shape[-1])  # [heads, keys]: scores = alibi + q·kᵀ / sqrt(d)
            report(query, key, call["mask"], scaling=attn.inv_norm_factor, key_bias=alibi, value=value)

        handles = [
            attn.register_forward_pre_hook(before, with_kwargs=True),
            attn.query_key_value.register_forward_hook(fused),
        ]
        return removing(handles)
