"""Llama 4: experts on every other layer (`interleave_moe_layer_step`), each token sent to its top
experts and a shared expert. Its router scores each expert with a sigmoid, and the chosen
expert reads the token *scaled by* that score (the other families scale the expert's output)."""

from __future__ import annotations

import torch

from llmvis.arch.base import Architecture, Routing
from llmvis.arch.registry import family


@family("llama4_text", "llama4")
class Llama4(Architecture):
    family = "Llama 4"
    router_kind = "sigmoid"

    def route(self, layer: int, x: torch.Tensor) -> Routing:
        router = self.router(layer)
        scores, logits = router(x)  # scores: the sigmoid of the chosen experts' logits, 0 elsewhere
        chosen = torch.topk(logits, router.top_k, dim=-1).indices
        return Routing(torch.sigmoid(logits.float()), chosen, scores.float().gather(-1, chosen))

    def expert_part(self, layer: int, x: torch.Tensor, expert: int, weight: torch.Tensor) -> torch.Tensor:
        experts = self.mlp(layer).experts
        stacked = torch.zeros(experts.num_experts, *x.shape, dtype=x.dtype, device=x.device)
        stacked[expert] = x * weight[:, None].to(x.device, x.dtype)  # the expert reads the scaled token
        return experts(stacked.reshape(-1, x.shape[-1])).reshape(stacked.shape)[expert]
