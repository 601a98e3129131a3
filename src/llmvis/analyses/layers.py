"""Views over the residual stream, layer by layer.

Index convention: hidden state `l` (0..L) is the residual stream *entering* decoder layer l;
0 is the embedding output and L the last layer's output (before the final norm).

- `layer_similarity`: cosine between hidden states — consecutive ones, each against the last,
  and the full (L+1)×(L+1) matrix — at one position and averaged over positions.
- `residual_stream`: per layer, the norms of the residual and of what attention and the MLP
  add, and each contribution's direct effect on the logit of the predicted token (or on its
  difference from a foil's: why this token rather than that one).
- `logit_lens`: the final norm + unembedding applied to every hidden state at one position,
  with the rank and probability of the target, a foil and up to 5 watched tokens per layer.

`position` in `residual_stream` and `logit_lens` is the position of the token being
*predicted* (as in the `tokens` view): the model chose it reading the residual stream at
position − 1, so position 0 (never predicted) is not allowed.

Direct logit effect (linearisation): the final norm is y = g ⊙ (x − μ(x)) / s(x) + b (μ the
mean for a LayerNorm, 0 for an RMSNorm; s the std or rms). Freezing s at its value for the
final residual x_L makes it linear, so each contribution c (embedding, every attention and MLP
output, which sum to x_L) gets effect  W_U[token] · (g ⊙ (c − μ(c)) / s(x_L)). These effects
plus the constant W_U[token] · b (and the read-out's bias) sum exactly to the token's logit,
before any final soft-capping. g, b, μ and s are measured on the model's own norm module
(internals.norm_linearisation), so Gemma's (1 + w), OLMo's weightless LayerNorm and Cohere's
biasless one are all handled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import BaseModel, Field

from llmvis.analyses.common import check_position, check_token_id, id_label, objective_text, round4
from llmvis.analyses.registry import ViewContext, ViewParamError, register
from llmvis.internals import Internals

SIM_CHUNK = 128  # positions per chunk when averaging cosines over the run
MAX_WATCHED = 5  # tokens the logit lens follows beside the target and the foil


def _hidden_at(internals: Internals, pos: int) -> torch.Tensor:
    """[L+1, d] every hidden state at one position, fp32 on CPU."""
    return torch.stack([internals.residual(i)[pos].float().cpu() for i in range(internals.n_layers + 1)])


def _predicted(ctx: ViewContext, position: int | None) -> tuple[int, int]:
    """(position of the predicted token, position whose residual predicts it)."""
    t = len(ctx.trace.tokens)
    pos = t - 1 if position is None else position
    check_position(ctx, pos)
    if t < 2:
        raise ViewParamError("this run has a single token: no token in it was predicted by the model")
    if pos < 1:
        raise ViewParamError(f"position 0 is not predicted by anything: choose a position in 1..{t - 1}")
    return pos, pos - 1


# ----------------------------------------------------------------------------- layer_similarity


class LayerSimilarityParams(BaseModel):
    position: int | None = Field(default=None, ge=0, description="position (default: last)")


class LayerSimilarityView(BaseModel):
    position: int
    layers: int = Field(description="L; hidden states are indexed 0..L")
    consecutive: list[float] = Field(description="[L] cos(h_l, h_l+1) at `position`")
    consecutive_mean: list[float] = Field(description="[L] the same, averaged over all positions")
    vs_last: list[float] = Field(description="[L+1] cos(h_l, h_L) at `position`")
    vs_last_mean: list[float] = Field(description="[L+1] the same, averaged over all positions")
    matrix: list[list[float]] = Field(description="[L+1][L+1] cos(h_i, h_j) at `position`")
    matrix_mean: list[list[float]] = Field(description="[L+1][L+1] averaged over all positions")


def cosine_matrix(h: torch.Tensor) -> torch.Tensor:
    """h: [n, d] → [n, n] cosine similarities (0 for a zero vector)."""
    unit = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return unit @ unit.T


def mean_cosine_matrix(internals: Internals, pause: Callable[[], None] = lambda: None) -> torch.Tensor:
    """[L+1, L+1] cos(h_i[t], h_j[t]) averaged over positions t, in chunks of positions; one
    per run, kept beside its capture (a pass over every hidden state: 0.1–0.2 s at T = 1,536,
    0.7 s at T = 4,224 on one core; computed ahead, `pause()` runs between chunks)."""
    key = (internals.key, "mean_cosine")
    if (kept := internals.cache.get(key)) is not None:
        return kept
    n, t = internals.n_layers + 1, internals.n_positions
    # (the sum so far, the next chunk): a view asked meanwhile goes on from where the summary was
    total, start = internals.cache.started(key) or (torch.zeros(n, n, dtype=torch.float64), 0)
    dev = internals.residual(0).device  # where the capture is (a GPU's: no copy of every hidden state)
    for a in range(start, t, SIM_CHUNK):  # (a device map's layers may sit on several devices: .to(dev))
        h = torch.stack([internals.residual(i)[a : a + SIM_CHUNK].float().to(dev) for i in range(n)])
        unit = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [n, c, d]
        total = total + torch.einsum("icd,jcd->ij", unit, unit).double().cpu()
        done = internals.cache.paused_part_way(key, (total, a + SIM_CHUNK), pause) if a + SIM_CHUNK < t else None
        if done is not None:  # the view let in finished it
            return done  # type: ignore[no-any-return]
    internals.cache.finish(key)
    mean = (total / t).float()
    internals.keep(key, mean, mean.numel() * 4)
    return mean


def warm_layer_similarity(internals: Internals, pause: Callable[[], None]) -> None:
    """The run's mean cosine matrix, computed ahead (analyses/warm.py)."""
    mean_cosine_matrix(internals, pause)


@register("layer_similarity", "Layer similarity", LayerSimilarityParams, LayerSimilarityView, needs_internals=True)
def layer_similarity(ctx: ViewContext, p: LayerSimilarityParams) -> LayerSimilarityView:
    """How much each layer changes the residual stream (cosine between hidden states)."""
    internals = ctx.require_internals()
    pos = check_position(ctx, len(ctx.trace.tokens) - 1 if p.position is None else p.position)
    n = internals.n_layers
    at = cosine_matrix(_hidden_at(internals, pos))
    mean = mean_cosine_matrix(internals)
    idx = torch.arange(n)
    return LayerSimilarityView(
        position=pos,
        layers=n,
        consecutive=round4(at[idx, idx + 1]),
        consecutive_mean=round4(mean[idx, idx + 1]),
        vs_last=round4(at[:, n]),
        vs_last_mean=round4(mean[:, n]),
        matrix=round4(at),
        matrix_mean=round4(mean),
    )


# ----------------------------------------------------------------------------- residual_stream


class ResidualStreamParams(BaseModel):
    position: int | None = Field(
        default=None, ge=1, description="position of the predicted token (default: last); read at position-1"
    )
    token_id: int | None = Field(
        default=None, ge=0, description="token whose logit is decomposed (default: the token at `position`)"
    )
    foil: int | None = Field(
        default=None, ge=0, description="a contrast token: decompose logit(token) − logit(foil) instead"
    )


class ResidualLayer(BaseModel):
    layer: int
    residual_norm: float = Field(description="‖h_l‖, the stream entering this layer")
    attn_norm: float = Field(description="‖attention output added by this layer‖")
    mlp_norm: float = Field(description="‖MLP output added by this layer‖")
    attn_logit: float = Field(description="direct effect of the attention output on the token's logit")
    mlp_logit: float = Field(description="direct effect of the MLP output on the token's logit")
    extra_norm: float | None = Field(default=None, description="‖the layer's extra part‖ (see `extra_part`)")
    extra_logit: float | None = Field(default=None, description="direct effect of the layer's extra part")


class ResidualStreamView(BaseModel):
    position: int
    source_position: int = Field(description="position whose residual stream is shown (position-1)")
    token_id: int
    token_label: str
    foil_id: int | None = None
    foil_label: str | None = None
    objective: str = Field(description="what the effects explain: the token's logit, or its difference from the foil's")
    embedding_norm: float
    embedding_logit: float = Field(description="direct effect of the embedding (h_0)")
    final_norm: float = Field(description="‖h_L‖")
    logit: float = Field(
        description="the objective before final soft-capping (= the sum of all effects and the constant)"
    )
    layers: list[ResidualLayer]
    linearisation: str
    extra_part: str | None = Field(
        default=None, description="what a layer adds beyond attention and MLP, where the family has more (Gemma 4)"
    )


def direct_effects(
    internals: Internals, parts: torch.Tensor, final: torch.Tensor, token_id: int, foil: int | None = None
) -> tuple[torch.Tensor, float, str]:
    """(effect of each row of `parts: [n, d]` on `token_id`'s logit (minus `foil`'s), the
    constant part of it, how the final norm was linearised), the norm linearised at `final: [d]`.

    effect(c) = W(g ⊙ (c − μ(c)) / s)[token] with W the logits' linear read-out; the model's own
    modules are called (no weight is read directly), so offloaded or sharded weights work."""
    extra = internals.arch.extra_part
    lin = internals.norm_linearisation(final)
    row, base = internals.readout_affine(token_id, foil)  # the read-out is affine: row · x + base
    direction = lin.adjoint(row)  # one dot product per part
    effects = parts.float().cpu() @ direction
    constant = float(row @ lin.bias.float().cpu()) + base  # the read-out of the norm's bias
    how = (
        f"final {lin.kind} linearised at the final residual: effect(c) = W_U[token] · (g ⊙ "
        f"{'(c − mean(c))' if lin.centred else 'c'} / s(h_L)); the effects of the embedding, every "
        f"attention and MLP output{' and ' + extra if extra else ''} sum to the logit"
        + (" less the norm's and the read-out's bias" if constant - base or base else "")
        + " (before any soft-capping)"
    )
    return effects, constant, how


@register(
    "residual_stream",
    "Residual stream",
    ResidualStreamParams,
    ResidualStreamView,
    needs_internals=True,
    uses=("contributions",),
)
def residual_stream(ctx: ViewContext, p: ResidualStreamParams) -> ResidualStreamView:
    """Norms per layer and each block's direct effect on the predicted token's logit."""
    internals = ctx.require_internals()
    pos, src = _predicted(ctx, p.position)
    token_id = check_token_id(ctx, ctx.trace.tokens[pos].id if p.token_id is None else p.token_id)
    foil = None if p.foil is None else check_token_id(ctx, p.foil, "foil")
    if foil == token_id:
        raise ViewParamError("the foil is the token itself: choose another token to contrast with")
    n = internals.n_layers
    final = internals.residual(n)[src].float().cpu()
    emb = internals.residual(0)[src].float().cpu()
    attn = torch.stack([internals.attn_out(i)[src].float().cpu() for i in range(n)])  # [L, d]
    mlp = torch.stack([internals.mlp_out(i)[src].float().cpu() for i in range(n)])  # [L, d]
    extra = [e for e in (internals.extra_out(i) for i in range(n)) if e is not None]  # Gemma 4, Falcon-H1
    more = torch.stack([e[src].float().cpu() for e in extra]) if extra else torch.zeros(0, emb.shape[0])
    parts = torch.cat([emb[None], attn, mlp, more, final[None]])
    effects, constant, how = direct_effects(internals, parts, final, token_id, foil)
    emb_effect, attn_effect, mlp_effect = effects[0], effects[1 : n + 1], effects[n + 1 : 2 * n + 1]
    extra_effect = effects[2 * n + 1 : -1]
    logit = float(effects[-1]) + constant
    layers = [
        ResidualLayer(
            layer=i,
            residual_norm=round4(float(internals.residual(i)[src].float().norm())),
            attn_norm=round4(float(attn[i].norm())),
            mlp_norm=round4(float(mlp[i].norm())),
            attn_logit=round4(float(attn_effect[i])),
            mlp_logit=round4(float(mlp_effect[i])),
            extra_norm=round4(float(more[i].norm())) if len(more) else None,
            extra_logit=round4(float(extra_effect[i])) if len(more) else None,
        )
        for i in range(n)
    ]
    return ResidualStreamView(
        position=pos,
        source_position=src,
        token_id=token_id,
        token_label=id_label(ctx, token_id),
        foil_id=foil,
        foil_label=None if foil is None else id_label(ctx, foil),
        objective=objective_text(ctx, token_id, foil),
        embedding_norm=round4(float(emb.norm())),
        embedding_logit=round4(float(emb_effect)),
        final_norm=round4(float(final.norm())),
        logit=round4(logit),
        layers=layers,
        linearisation=how,
        extra_part=internals.arch.extra_part,
    )


# ----------------------------------------------------------------------------- logit_lens


class LogitLensParams(BaseModel):
    position: int | None = Field(
        default=None, ge=1, description="position of the predicted token (default: last); read at position-1"
    )
    top_k: int = Field(default=5, ge=1, le=20, description="tokens listed per layer")
    foil: int | None = Field(default=None, ge=0, description="a contrast token: its rank and logit gap per layer")
    watch: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, max_length=MAX_WATCHED, description=f"up to {MAX_WATCHED} more token ids to follow"
    )


class LensToken(BaseModel):
    id: int
    label: str
    prob: float


class LensLayer(BaseModel):
    layer: int = Field(
        description="hidden state l: 0 = embeddings, L = last layer's output (the model's own prediction)"
    )
    top: list[LensToken]
    target_prob: float = Field(description="probability of the chosen token at this layer")
    target_rank: int = Field(description="its rank, 0 = top-1")
    entropy: float = Field(description="entropy of this layer's distribution, nats")
    foil_prob: float | None = Field(default=None, description="probability of the foil at this layer")
    foil_rank: int | None = Field(default=None, description="the foil's rank, 0 = top-1")
    logit_gap: float | None = Field(default=None, description="logit(target) − logit(foil) at this layer")


class WatchedToken(BaseModel):
    id: int
    label: str
    ranks: list[int] = Field(description="[L+1] rank at each hidden state, 0 = top-1")
    probs: list[float] = Field(description="[L+1] probability at each hidden state")


class LogitLensView(BaseModel):
    position: int
    source_position: int
    token_id: int = Field(description="the token that was chosen at `position`")
    token_label: str
    foil_id: int | None = None
    foil_label: str | None = None
    layers: list[LensLayer] = Field(description="L+1 entries, hidden states 0..L")
    watched: list[WatchedToken] = Field(
        default_factory=list, description="rank trajectories: the target, the foil, then the watched tokens"
    )


@register("logit_lens", "Logit lens", LogitLensParams, LogitLensView, needs_internals=True)
def logit_lens(ctx: ViewContext, p: LogitLensParams) -> LogitLensView:
    """Decode every layer's residual stream with the final norm + unembedding."""
    internals = ctx.require_internals()
    pos, src = _predicted(ctx, p.position)
    target = ctx.trace.tokens[pos].id
    foil = None if p.foil is None else check_token_id(ctx, p.foil, "foil")
    if foil == target:
        raise ViewParamError("the foil is the token itself: choose another token to contrast with")
    followed = list(dict.fromkeys([target, *([] if foil is None else [foil]), *p.watch]))
    for token in p.watch:
        check_token_id(ctx, token, "watch")
    hidden = torch.stack([internals.residual(i)[src] for i in range(internals.n_layers + 1)])
    logits = internals.logits(hidden).float().cpu()  # [L+1, V]
    logp = torch.log_softmax(logits, dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp).sum(-1)
    top_p, top_i = probs.topk(p.top_k, dim=-1)
    ranks = {t: (logits > logits[:, t : t + 1]).sum(-1) for t in followed}
    rank = ranks[target]
    layers = [
        LensLayer(
            layer=i,
            top=[
                LensToken(id=int(t), label=id_label(ctx, int(t)), prob=round4(float(v)))
                for v, t in zip(top_p[i].tolist(), top_i[i].tolist(), strict=True)
            ],
            target_prob=round4(float(probs[i, target])),
            target_rank=int(rank[i]),
            entropy=round4(float(entropy[i])),
            foil_prob=None if foil is None else round4(float(probs[i, foil])),
            foil_rank=None if foil is None else int(ranks[foil][i]),
            logit_gap=None if foil is None else round4(float(logits[i, target] - logits[i, foil])),
        )
        for i in range(hidden.shape[0])
    ]
    watched = [
        WatchedToken(id=t, label=id_label(ctx, t), ranks=ranks[t].tolist(), probs=round4(probs[:, t])) for t in followed
    ]
    return LogitLensView(
        position=pos,
        source_position=src,
        token_id=target,
        token_label=id_label(ctx, target),
        foil_id=foil,
        foil_label=None if foil is None else id_label(ctx, foil),
        layers=layers,
        watched=watched,
    )
