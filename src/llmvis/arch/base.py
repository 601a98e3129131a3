"""The architecture seam: where a decoder family keeps its parts and how a block is wired.

Internals (capture, recompute) and views ask an `Architecture` instead of probing modules:
where the decoder, its layers, the final norm and the unembedding are; in each layer, which
module's output attention adds to the residual stream and which one the MLP adds; what the MLP
reads; where its neuron activations are (the input of its output projection); what kind of MLP
it is. The default answers are found structurally (by the names transformers uses across
families) and fit Llama-shaped decoders; a family whose modules differ overrides them in a file
of its own (see arch/__init__.py).

Attention itself needs no per-family code for families whose attention calls transformers'
AttentionInterface: the capture records the rotated queries and keys, the scaling, soft-cap,
sinks and mask that the module hands to it (capture.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

MlpKind = Literal["gated", "plain", "experts"]
Wiring = Literal["sequential", "parallel"]

_DECODERS = ("model", "transformer", "gpt_neox", "language_model", "decoder")
_LAYERS = ("layers", "h", "blocks")
_FINAL_NORMS = ("norm", "ln_f", "final_layer_norm", "norm_f", "final_layernorm")
_ATTENTIONS = ("self_attn", "attn", "attention", "self_attention")
_MIXERS = ("linear_attn", "mamba", "mixer")  # the token mixers of hybrid layers that are not attention
_MLPS = ("mlp", "feed_forward", "block_sparse_moe", "ffn")
_ATTN_OUT_PROJECTIONS = ("o_proj", "c_proj", "dense", "out_proj", "wo")
_OUT_PROJECTIONS = ("down_proj", "c_proj", "fc2", "dense_4h_to_h", "fc_out", "w2", "wo")
_EXPERT_PARTS = ("experts", "router", "gate")
_ROUTERS = ("router", "gate")


@dataclass
class Routing:
    """What a mixture-of-experts layer's router decided for each token."""

    probs: torch.Tensor  # [T, E] fp32: the router's probability of each expert (router_kind says how)
    chosen: torch.Tensor  # [T, k] long: the experts each token was sent to, most likely first
    weights: torch.Tensor  # [T, k] fp32: what the layer weighs each chosen expert by


def text_config(config: Any) -> Any:
    """The decoder's config (multimodal configs nest it as text_config)."""
    getter = getattr(config, "get_text_config", None)
    return getter() if getter is not None else config


class NotAvailable(Exception):
    """A part or a view this model does not have, with the reason (the server answers 422)."""


def child(module: nn.Module, names: tuple[str, ...], what: str) -> Any:
    """The first of `names` that `module` has, or NotAvailable naming what is missing."""
    for name in names:
        found = getattr(module, name, None)
        if isinstance(found, nn.Module):
            return found
    raise NotAvailable(f"{type(module).__name__} has no {what} (looked for {', '.join(names)})")


class Architecture:
    """One loaded model's answers. Subclasses set `model_types` and override what differs."""

    model_types: ClassVar[tuple[str, ...]] = ()
    family: str = "Llama-shaped"
    wiring: Wiring = "sequential"
    # the norm in front of the MLP, and what it reads: the residual after attention ("mid") or
    # the layer's input ("input", parallel blocks); None: the MLP reads it unnormalised
    mlp_norm: str | None = "post_attention_layernorm"
    mlp_reads: Literal["mid", "input"] = "mid"
    # modules whose output is what each block adds to the residual (None: the block itself)
    attn_output_norm: str | None = None
    mlp_output_norm: str | None = None
    # what a layer adds beyond attention and the MLP, if anything (the capture keeps it as a third part),
    # and whether it joins the residual before the MLP reads it (a second mixer beside attention)
    extra_part: str | None = None
    extra_before_mlp: bool = False
    # a token mixer with a recurrent state (Mamba beside attention): its decode steps compute by
    # recurrence what a forward over the whole run computes by a scan, so a capture kept while
    # generating would differ from the teacher-forced one in rounding (hybrids are found by the
    # capture: their layers without attention records)
    recurrent_mixer: bool = False
    # how a mixture's router turns its logits into each expert's probability
    router_kind: Literal["softmax", "sigmoid"] = "softmax"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.config = text_config(model.config)
        self.decoder = self._find_decoder()
        self.layers: list[Any] = list(child(self.decoder, _LAYERS, "list of decoder layers"))
        self.final_norm: Any = child(self.decoder, _FINAL_NORMS, "final norm")
        self.lm_head: Any = model.get_output_embeddings()

    # ------------------------------------------------------------------ where things are

    def _find_decoder(self) -> Any:
        prefix = getattr(self.model, "base_model_prefix", "")
        for name in (prefix, *_DECODERS):
            found = getattr(self.model, name, None) if name else None
            if isinstance(found, nn.Module) and any(
                isinstance(getattr(found, n, None), nn.ModuleList) for n in _LAYERS
            ):
                return found
        return self.model.get_decoder()

    def attention(self, layer: int) -> Any:
        return child(self.layers[layer], _ATTENTIONS, "attention module")

    def mlp(self, layer: int) -> Any:
        return child(self.layers[layer], _MLPS, "MLP")

    def mixer(self, layer: int) -> Any:
        """The layer's token mixer: its softmax attention, or in a hybrid model's other layers a
        linear attention or state-space block."""
        try:
            return self.attention(layer)
        except NotAvailable:
            return child(self.layers[layer], _MIXERS, "attention or other token mixer")

    def attn_added(self, layer: int) -> Any:
        """The module whose output is what attention (the token mixer) adds to the residual stream."""
        if self.attn_output_norm:
            return getattr(self.layers[layer], self.attn_output_norm)
        return self.mixer(layer)

    def mlp_added(self, layer: int) -> Any:
        """The module whose output is what the MLP adds to the residual stream."""
        if self.mlp_output_norm:
            return getattr(self.layers[layer], self.mlp_output_norm)
        return self.mlp(layer)

    def attn_out_projection(self, layer: int) -> Any:
        """The attention's output projection: it reads every head's value mix side by side, head h
        at [h·hd, (h+1)·hd). (Internals checks that the heads add up to what the block added.)"""
        return child(self.attention(layer), _ATTN_OUT_PROJECTIONS, "attention output projection")

    def head_gate(self, layer: int, residual: torch.Tensor) -> torch.Tensor | None:
        """[n, H, hd] what each head's value mix is multiplied by before the output projection,
        from the layer's input `residual: [n, d]` (gated attention); None: nothing (the default)."""
        return None

    # ------------------------------------------------------------------ the MLP

    def mlp_kind(self, layer: int) -> MlpKind:
        mlp = self.mlp(layer)
        if any(isinstance(getattr(mlp, n, None), nn.Module) for n in _EXPERT_PARTS[:2]) or hasattr(mlp, "num_experts"):
            return "experts"
        gated = any(hasattr(mlp, n) for n in ("gate_proj", "gate_up_proj", "w1", "w3"))
        return "gated" if gated else "plain"

    def mlp_input(self, layer: int, residual: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        """[T, d] what the MLP reads, from the layer's input residual and attention's contribution."""
        x = residual + attn_out if self.mlp_reads == "mid" else residual
        if self.mlp_norm is None:
            return x
        norm = getattr(self.layers[layer], self.mlp_norm)
        return norm(x.to(device_of(norm, x.device)))

    def mlp_out_projection(self, layer: int) -> Any:
        """The MLP's output projection: its input are the neuron activations."""
        if self.mlp_kind(layer) == "experts":
            raise NotAvailable(
                "this layer's MLP is a mixture of experts: its neurons belong to the experts, not to one MLP"
            )
        return child(self.mlp(layer), _OUT_PROJECTIONS, "MLP output projection")

    def contribution(self, args: tuple[Any, ...], output: Any) -> torch.Tensor:
        """[T, d] what a block added, from the call of its `attn_added`/`mlp_added` module:
        its output (BLOOM's blocks add the residual themselves and override this)."""
        out = output[0] if isinstance(output, tuple | list) else output
        return out[0] if out.dim() == 3 else out

    def record_attention(self, layer: int, report: Callable[..., None]) -> Callable[[], None] | None:
        """For a family whose attention does not call transformers' AttentionInterface: make
        `layer`'s attention call `report(query, key, mask, scaling=…, key_bias=…)` as it runs,
        and return what undoes that. None (the default): the interface records it."""
        return None

    @property
    def calls_attention_interface(self) -> bool:
        """Whether this model's attention goes through transformers' AttentionInterface (where
        the capture records it and an attention knockout can mask its scores)."""
        return type(self).record_attention is Architecture.record_attention

    def run_mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """The layer's own MLP on `x` (what the capture's forward computed)."""
        out = self.mlp(layer)(x)
        return out[0] if isinstance(out, tuple) else out

    # ------------------------------------------------------------------ mixtures of experts

    def router(self, layer: int) -> Any:
        if self.mlp_kind(layer) != "experts":
            raise NotAvailable(f"layer {layer}'s MLP is not a mixture of experts")
        return child(self.mlp(layer), _ROUTERS, "router")

    def route(self, layer: int, x: torch.Tensor) -> Routing:
        """The layer's own router on what its MLP reads, `x: [T, d]`. Routers of transformers'
        mixtures return (logits, the chosen experts' weights, the chosen experts)."""
        out = self.router(layer)(x)
        if not (isinstance(out, tuple) and len(out) == 3):
            raise NotAvailable(f"layer {layer}'s router does not return (logits, weights, experts)")
        logits, weights, chosen = out
        return Routing(torch.softmax(logits.float(), -1), chosen.long(), weights.float())

    def expert_part(self, layer: int, x: torch.Tensor, expert: int, weight: torch.Tensor) -> torch.Tensor:
        """[T, d] what `expert` adds for each token of `x: [T, d]` at routing weight `weight: [T]`:
        the layer's own experts module, routed to that one expert."""
        experts = child(self.mlp(layer), ("experts",), "experts")
        index = torch.full((x.shape[0], 1), expert, dtype=torch.long, device=x.device)
        return experts(x, index, weight[:, None].to(x.device, x.dtype))

    def shared_part(self, layer: int, x: torch.Tensor) -> torch.Tensor | None:
        """[T, d] what the layer's shared expert adds (through its sigmoid gate where it has
        one), or None without a shared expert."""
        mlp = self.mlp(layer)
        shared = getattr(mlp, "shared_expert", None)
        if shared is None:
            return None
        out = shared(x)
        gate = getattr(mlp, "shared_expert_gate", None)
        return out * torch.sigmoid(gate(x)) if gate is not None else out

    def mlp_projected(self, layer: int, activations: torch.Tensor) -> torch.Tensor:
        """What the MLP's output projection makes of its neuron activations, before any output
        norm: affine in them (a neuron's part is its activation times a column)."""
        return self.mlp_out_projection(layer)(activations)

    def mlp_contribution(self, layer: int, activations: torch.Tensor) -> torch.Tensor:
        """What the MLP adds to the residual, from its neuron activations: its output projection,
        its output norm if any, the block's scale."""
        out = self.mlp_projected(layer, activations)
        if self.mlp_output_norm:
            out = getattr(self.layers[layer], self.mlp_output_norm)(out)
        return out * self.contribution_scale

    # ------------------------------------------------------------------ scales

    @property
    def contribution_scale(self) -> float:
        """What a block adds = this × its output (Granite's residual multiplier)."""
        return 1.0

    @property
    def attn_scale(self) -> float:
        """What attention adds = this × its module's output (Falcon-H1's attention multiplier)."""
        return self.contribution_scale

    @property
    def logit_multiplier(self) -> float:
        """logits = this × lm_head(…), before any soft-cap (Cohere, Granite)."""
        return 1.0

    @property
    def final_softcap(self) -> float | None:
        cap = getattr(self.config, "final_logit_softcapping", None)
        return float(cap) if cap else None

    # ------------------------------------------------------------------ attention geometry

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)


def removing(handles: list[Any]) -> Callable[[], None]:
    """What undoes a family's `record_attention` hooks."""

    def undo() -> None:
        for handle in handles:
            handle.remove()

    return undo


def device_of(module: nn.Module, default: torch.device) -> torch.device:
    """Where `module` computes: its accelerate execution device (offloaded weights sit on
    'meta' between calls), else the device of its first parameter/buffer."""
    for m in (module, *module.children()):
        hook_device = getattr(getattr(m, "_hf_hook", None), "execution_device", None)
        if hook_device is not None:
            return torch.device(hook_device)
    for t in (*module.parameters(), *module.buffers()):
        if t.device.type != "meta":
            return t.device
    return default


def dtype_of(module: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype a module's weights compute in (known even for offloaded 'meta' weights)."""
    for p in module.parameters():
        return p.dtype
    return default
