"""View `experts`: how a mixture-of-experts model routes its tokens.

Per MoE layer the layer's own router is run on what its MLP read (from the capture), so the
chosen experts and their weights are the ones the model used. The view gives, for one layer,
every token's router probabilities and chosen experts; for every MoE layer, how the run's
tokens spread over the experts (and how even that is: the entropy of the token shares over
log E); and for the selected token its routing through all MoE layers, with what each chosen
expert (and the shared expert, where the model has one) added to the residual stream there.
Those parts sum to the layer's MLP output (tests/unit/test_experts.py).
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, Field

from llmvis.analyses.common import bin_starts, check_layer, default_position, pool_bins, round4
from llmvis.analyses.registry import ViewContext, ViewParamError, register
from llmvis.arch import NotAvailable

MAX_CELLS = 120_000  # tokens × experts of the probability grid; longer runs are max-pooled over tokens


class ExpertsParams(BaseModel):
    layer: int | None = Field(default=None, ge=0, description="MoE layer of the token grid (default: the first)")
    position: int | None = Field(default=None, ge=0, description="token whose routing is followed (default: last)")


class TokenRouting(BaseModel):
    experts: list[int] = Field(description="the experts the token was sent to, most likely first")
    weights: list[float] = Field(description="what the layer weighed each chosen expert by")


class LayerLoad(BaseModel):
    layer: int
    tokens: list[int] = Field(description="[E] tokens of the run sent to each expert")
    weight: list[float] = Field(description="[E] the expert's routing weight, summed over the run's tokens")
    balance: float = Field(description="entropy of the token shares / log E: 1 = every expert equally used")


class ExpertPart(BaseModel):
    expert: int | None = Field(description="None: the shared expert, which every token goes through")
    weight: float | None
    norm: float = Field(description="‖what it added to the residual stream‖")


class ExpertsView(BaseModel):
    n_experts: int
    top_k: int
    router: str = Field(description="how the router's logits become each expert's probability")
    moe_layers: list[int]
    dense_layers: list[int] = Field(description="layers whose MLP is not a mixture (not shown)")
    layer: int
    bin_size: int = Field(description="tokens per row of `probs` (1 unless the run is long)")
    bin_starts: list[int]
    probs: list[list[float]] = Field(description="[rows][E] router probability (max over a row's tokens)")
    routing: list[TokenRouting] = Field(description="[T] every token's chosen experts in `layer`")
    loads: list[LayerLoad] = Field(description="one per MoE layer")
    position: int
    position_probs: list[list[float]] = Field(description="[MoE layers][E] the token's router probabilities")
    position_routing: list[TokenRouting] = Field(description="[MoE layers] the token's chosen experts")
    parts: list[ExpertPart] = Field(description="what the token's experts added in `layer`, shared expert last")


def _routing(chosen: torch.Tensor, weights: torch.Tensor) -> TokenRouting:
    return TokenRouting(experts=[int(e) for e in chosen], weights=round4(weights))


def _load(layer: int, chosen: torch.Tensor, weights: torch.Tensor, n_experts: int) -> LayerLoad:
    tokens = torch.bincount(chosen.reshape(-1), minlength=n_experts)
    weight = torch.zeros(n_experts).index_add_(0, chosen.reshape(-1), weights.reshape(-1).float())
    share = tokens.double() / max(1, int(tokens.sum()))
    entropy = float(torch.special.entr(share).sum())
    return LayerLoad(
        layer=layer,
        tokens=tokens.tolist(),
        weight=round4(weight),
        balance=round4(entropy / math.log(n_experts)) if n_experts > 1 else 1.0,
    )


@register("experts", "Experts", ExpertsParams, ExpertsView, needs_internals=True, uses=("experts",))
def experts(ctx: ViewContext, p: ExpertsParams) -> ExpertsView:
    """Router probabilities, chosen experts and their spread, per MoE layer and token."""
    internals = ctx.require_internals()
    arch = internals.arch
    moe = [i for i in range(internals.n_layers) if arch.mlp_kind(i) == "experts"]
    if not moe:
        raise NotAvailable("no layer of this model is a mixture of experts")
    layer = moe[0] if p.layer is None else check_layer(ctx, p.layer)
    if layer not in moe:
        raise ViewParamError(f"layer {layer}'s MLP is not a mixture of experts: the MoE layers are {moe}")
    pos = default_position(ctx, p.position)
    routings = {i: internals.routing(i) for i in moe}
    here = routings[layer]
    n_experts, top_k = here.probs.shape[1], here.chosen.shape[1]
    size, starts = bin_starts(here.probs.shape[0], max(1, MAX_CELLS // n_experts))
    routed, shared = internals.expert_parts(layer, pos)
    parts = [
        ExpertPart(expert=int(e), weight=round4(float(w)), norm=round4(float(part.float().norm())))
        for e, w, part in zip(here.chosen[pos], here.weights[pos], routed, strict=True)
    ]
    if shared is not None:
        parts.append(ExpertPart(expert=None, weight=None, norm=round4(float(shared.float().norm()))))
    return ExpertsView(
        n_experts=n_experts,
        top_k=top_k,
        router="sigmoid of each expert's logit" if arch.router_kind == "sigmoid" else "softmax over the experts",
        moe_layers=moe,
        dense_layers=[i for i in range(internals.n_layers) if i not in moe],
        layer=layer,
        bin_size=size,
        bin_starts=starts,
        probs=round4(pool_bins(here.probs, size, 1)),
        routing=[_routing(c, w) for c, w in zip(here.chosen, here.weights, strict=True)],
        loads=[_load(i, r.chosen, r.weights, n_experts) for i, r in routings.items()],
        position=pos,
        position_probs=[round4(routings[i].probs[pos]) for i in moe],
        position_routing=[_routing(routings[i].chosen[pos], routings[i].weights[pos]) for i in moe],
        parts=parts,
    )
