"""Falcon, both decoder layouts: the new one (Falcon-40B/180B: grouped key/value heads, two
norms feeding attention and the MLP in parallel) and the old one (Falcon-7B: multi-query, one
shared norm, parallel or sequential). Up to transformers 5.24 its attention called SDPA itself,
not through the AttentionInterface: there the fused projection's output is split with the
module's own `_split_heads`, shaped as its forward shapes it and rotated with its own
`apply_rotary_pos_emb`, then reported. Later releases call the interface, which records it."""

import sys
from collections.abc import Callable
from typing import Any

import torch

from llmvis.arch.base import Architecture, NotAvailable, removing
from llmvis.arch.registry import family


@family("falcon")
class Falcon(Architecture):
    family = "Falcon"

    def __init__(self, model: Any) -> None:
        config = model.config
        if getattr(config, "alibi", False):
            raise NotAvailable("Falcon with ALiBi (falcon-rw) is not supported: its attention bias is not recorded")
        super().__init__(model)
        two_norms = config.new_decoder_architecture and (config.num_ln_in_parallel_attn or 2) == 2
        if config.new_decoder_architecture or config.parallel_attn:
            self.wiring = "parallel"
            self.mlp_reads = "input"
            self.mlp_norm = "ln_mlp" if two_norms else "input_layernorm"

    @property
    def calls_attention_interface(self) -> bool:
        return not hasattr(self.layers[0].self_attention, "_split_heads")

    def contribution(self, args: tuple[Any, ...], output: Any) -> torch.Tensor:
        return super().contribution(args, output).clone()  # the layer adds to the MLP's output in place

    def record_attention(self, layer: int, report: Callable[..., None]) -> Callable[[], None] | None:
        if self.calls_attention_interface:
            return None
        attn = self.layers[layer].self_attention
        rotate = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        call: dict[str, Any] = {}

        def before(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
            call.update(rope=kwargs.get("position_embeddings"), mask=kwargs.get("attention_mask"))

        def fused(_module: Any, _args: Any, qkv: torch.Tensor) -> None:
            query, key, value = attn._split_heads(qkv)  # [batch, T, heads, hd]
            batch, t = query.shape[:2]
            kv = attn.num_heads if attn.new_decoder_architecture else attn.num_kv_heads
            query = query.transpose(1, 2).reshape(batch, attn.num_heads, t, attn.head_dim)
            key = key.transpose(1, 2).reshape(batch, kv, t, attn.head_dim)
            value = value.transpose(1, 2).reshape(batch, kv, t, attn.head_dim)
            cos, sin = call["rope"]
            query, key = rotate(query, key, cos, sin)
            report(query, key, call["mask"], scaling=attn.inv_norm_factor, value=value)

        handles = [
            attn.register_forward_pre_hook(before, with_kwargs=True),
            attn.query_key_value.register_forward_hook(fused),
        ]
        return removing(handles)
