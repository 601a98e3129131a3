"""Which heads and which MLP neurons moved the prediction: direct effects finer than a block.

Both views explain the logit of the token at `position` (read at position − 1, as in
`residual_stream`), or with a `foil` the difference logit(token) − logit(foil), through the
final norm linearised at the final residual (layers.py's docstring has the maths), so every
number here is a share of the residual-stream view's block effects:

- `head_contributions`: every layer × head. Head h's output is its mix of values
  Σ_j a_hj v_j (recomputed attention weights, recorded values) through the model's own output
  projection with the other heads zeroed; the projection's bias is the block's rest. Heads +
  rest equal the captured attention output (checked: a family that gates or mixes heads after
  attention is told, not shown). An output norm (Gemma 2/3) is linearised at the block's output.
- `neuron_contributions`: per layer, the top-k neurons (inputs of the MLP's output projection)
  by |effect|: activation × the read-out direction taken back through the projection (its
  gradient), so the whole layer costs one MLP row and one backward, whatever its width. A
  mixture of experts is explained per expert (its chosen experts and the shared one) instead.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, Field

from llmvis.analyses.common import check_layer, check_token_id, id_label, objective_text, round4
from llmvis.analyses.layers import _predicted, direct_effects
from llmvis.analyses.registry import ViewContext, ViewParamError, register
from llmvis.arch import NotAvailable
from llmvis.internals import Internals


class TargetParams(BaseModel):
    position: int | None = Field(
        default=None, ge=1, description="position of the predicted token (default: last); read at position-1"
    )
    token_id: int | None = Field(
        default=None, ge=0, description="token whose logit is explained (default: the token at `position`)"
    )
    foil: int | None = Field(
        default=None, ge=0, description="a contrast token: explain logit(token) − logit(foil) instead"
    )


class Target(BaseModel):
    position: int
    source_position: int = Field(description="position whose residual stream is read (position-1)")
    token_id: int
    token_label: str
    foil_id: int | None = None
    foil_label: str | None = None
    objective: str = Field(description="what the effects explain")


def resolve_target(ctx: ViewContext, p: TargetParams) -> Target:
    pos, src = _predicted(ctx, p.position)
    token = check_token_id(ctx, ctx.trace.tokens[pos].id if p.token_id is None else p.token_id)
    foil = None if p.foil is None else check_token_id(ctx, p.foil, "foil")
    if foil == token:
        raise ViewParamError("the foil is the token itself: choose another token to contrast with")
    return Target(
        position=pos,
        source_position=src,
        token_id=token,
        token_label=id_label(ctx, token),
        foil_id=foil,
        foil_label=None if foil is None else id_label(ctx, foil),
        objective=objective_text(ctx, token, foil),
    )


# ----------------------------------------------------------------------------- heads


class HeadContributionsView(BaseModel):
    target: Target
    layers: int
    heads: int
    effects: list[list[float] | None] = Field(description="[layer][head] direct effect on the objective")
    norms: list[list[float] | None] = Field(description="[layer][head] ‖what the head adds to the residual‖")
    rest: list[float | None] = Field(description="[layer] effect of the output projection's bias (and norm)")
    block: list[float | None] = Field(description="[layer] the attention block's effect (= Σ heads + rest)")
    missing_layers: dict[int, str] = Field(default_factory=dict, description="layers without heads to show, and why")
    linearisation: str


@register(
    "head_contributions",
    "Head contributions",
    TargetParams,
    HeadContributionsView,
    needs_internals=True,
    uses=("attention", "contributions"),
)
def head_contributions(ctx: ViewContext, p: TargetParams) -> HeadContributionsView:
    """Every head's direct effect on the token's logit (or on target − foil)."""
    internals = ctx.require_internals()
    target = resolve_target(ctx, p)
    src, n = target.source_position, internals.n_layers
    missing = internals.missing_attention()
    outputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    refused: dict[int, str] = {}
    for layer in internals.attention_layers(required=True):
        try:
            outputs[layer] = internals.head_outputs(layer, src)
        except NotAvailable as exc:
            refused[layer] = str(exc)
    if not outputs:
        raise NotAvailable(f"no layer's heads can be separated: {next(iter(refused.values()))}")
    missing.update(refused)
    shown = sorted(outputs)
    heads = torch.cat([outputs[layer][0] for layer in shown])  # [len(shown) · H, d]
    rests = torch.stack([outputs[layer][1] for layer in shown])
    blocks = torch.stack([internals.attn_out(layer)[src].float().cpu() for layer in shown])
    final = internals.residual(n)[src].float().cpu()
    effects, _, how = direct_effects(
        internals, torch.cat([heads, rests, blocks]), final, target.token_id, target.foil_id
    )
    h = internals.n_heads
    per_head = effects[: len(shown) * h].reshape(len(shown), h)
    norms = heads.norm(dim=-1).reshape(len(shown), h)
    row = {layer: i for i, layer in enumerate(shown)}
    k = len(shown)

    def per_layer(values: torch.Tensor) -> list:
        return [round4(values[row[layer]]) if layer in row else None for layer in range(n)]

    return HeadContributionsView(
        target=target,
        layers=n,
        heads=h,
        effects=per_layer(per_head),
        norms=per_layer(norms),
        rest=per_layer(effects[k * h : k * h + k]),
        block=per_layer(effects[k * h + k : k * h + 2 * k]),
        missing_layers=missing,
        linearisation=how,
    )


# ----------------------------------------------------------------------------- neurons


class NeuronContributionsParams(TargetParams):
    layer: int | None = Field(default=None, ge=0, description="one decoder layer (default: every layer)")
    top_k: int = Field(default=10, ge=1, le=100, description="neurons listed per layer, by |effect|")


class Neuron(BaseModel):
    neuron: int = Field(description="index in the MLP's hidden layer (the output projection's input)")
    activation: float
    effect: float = Field(description="direct effect on the objective")
    norm: float = Field(description="‖what the neuron writes into the MLP's output‖")


class Expert(BaseModel):
    expert: int | None = Field(description="expert index; None for the shared expert")
    weight: float | None = Field(description="the router's weight for it (None: shared)")
    effect: float


class NeuronLayer(BaseModel):
    layer: int
    kind: str = Field(description="gated, plain, or experts")
    mlp_effect: float = Field(description="the whole MLP's direct effect (from the captured output)")
    rest_effect: float = Field(description="effect of what no neuron writes: the output bias (and norm)")
    neurons_effect: float | None = Field(description="Σ over every neuron's effect (+ rest = mlp_effect)")
    neurons: int | None = Field(description="how many neurons the layer has")
    top: list[Neuron] = Field(default_factory=list, description="top-k neurons by |effect|")
    experts: list[Expert] = Field(default_factory=list, description="mixtures: each chosen and shared expert")


class NeuronContributionsView(BaseModel):
    target: Target
    layers: list[NeuronLayer]
    linearisation: str


def _neuron_layer(
    internals: Internals, layer: int, src: int, direction: torch.Tensor, mlp_effect: float, top_k: int
) -> NeuronLayer:
    kind = internals.arch.mlp_kind(layer)
    if kind == "experts":
        parts, shared = internals.expert_parts(layer, src)
        routing = internals.routing(layer)
        effects = parts.float().cpu() @ direction
        experts = [
            Expert(expert=int(e), weight=round4(float(w)), effect=round4(float(x)))
            for e, w, x in zip(routing.chosen[src], routing.weights[src], effects, strict=True)
        ]
        if shared is not None:
            experts.append(Expert(expert=None, weight=None, effect=round4(float(shared.float().cpu() @ direction))))
        rest = mlp_effect - float(sum(float(x) for x in effects)) - (0.0 if shared is None else experts[-1].effect)
        return NeuronLayer(
            layer=layer, kind=kind, mlp_effect=round4(mlp_effect), rest_effect=round4(rest),
            neurons_effect=None, neurons=None, experts=experts,
        )  # fmt: skip
    acts = internals.mlp_activations(layer, slice(src, src + 1))[0].float().cpu()
    effects, rest = internals.neuron_effects(layer, src, direction, acts)
    k = min(top_k, effects.shape[0])
    chosen = effects.abs().topk(k).indices
    parts = internals.neuron_parts(layer, src, chosen.tolist(), acts)
    norms = parts.norm(dim=-1) * abs(internals.arch.contribution_scale)
    top = [
        Neuron(
            neuron=int(i), activation=round4(float(acts[i])), effect=round4(float(effects[i])), norm=round4(float(m))
        )
        for i, m in zip(chosen.tolist(), norms, strict=True)
    ]
    return NeuronLayer(
        layer=layer, kind=kind, mlp_effect=round4(mlp_effect), rest_effect=round4(rest),
        neurons_effect=round4(float(effects.sum())), neurons=int(effects.shape[0]), top=top,
    )  # fmt: skip


@register(
    "neuron_contributions",
    "Neuron contributions",
    NeuronContributionsParams,
    NeuronContributionsView,
    needs_internals=True,
    uses=("mlp", "experts", "contributions"),
)
def neuron_contributions(ctx: ViewContext, p: NeuronContributionsParams) -> NeuronContributionsView:
    """The MLP neurons (or experts) with the largest direct effect on the token's logit."""
    internals = ctx.require_internals()
    target = resolve_target(ctx, p)
    src, n = target.source_position, internals.n_layers
    layers = list(range(n)) if p.layer is None else [check_layer(ctx, p.layer)]
    final = internals.residual(n)[src].float().cpu()
    direction = internals.readout_direction(final, target.token_id, target.foil_id)
    mlp = torch.stack([internals.mlp_out(layer)[src].float().cpu() for layer in layers])
    _, _, how = direct_effects(internals, mlp[:1], final, target.token_id, target.foil_id)
    mlp_effects = (mlp @ direction).tolist()
    return NeuronContributionsView(
        target=target,
        layers=[
            _neuron_layer(internals, layer, src, direction, effect, p.top_k)
            for layer, effect in zip(layers, mlp_effects, strict=True)
        ],
        linearisation=how,
    )
