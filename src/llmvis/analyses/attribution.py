"""View `attribution`: how much each earlier token contributed to the token at a position.

The token at position `t` is predicted from the logits at position `t − 1`, which see tokens
0..t−1; every method scores those `t` source tokens.

- rollout: attention rollout (Abnar & Zuidema 2020). Each layer's head-averaged attention
  gets the residual connection as an identity term, `Â = ½A + ½I`, rows renormalised; the
  rollout is `Â_{L−1} ··· Â_0` and row `t − 1` is the attribution (non-negative, sums to 1).
  Computed as a row vector times one layer at a time (never a T×T×T product), fetching
  query rows in chunks so memory stays O(heads · chunk · T). On deep models with an
  attention sink nearly all of it flows to position 0 (the bundled model: 1 − 1e-6), a
  known property of rollout; charts may rescale the other positions.
- grad_x_input: `∂y/∂e_s · e_s` per source token, y being the target token's logit (or its
  log-probability) and e_s the input embedding. With a `foil`, y is the difference
  logit(target) − logit(foil) (or of log-probabilities): why this token rather than that one.
- integrated_gradients: captum's IntegratedGradients on the input embeddings from a pad-token
  (or zero) baseline; attributions sum to y(input) − y(baseline) up to the reported delta.
  The pad baseline is the default: on the path from zero, an RMSNorm's output jumps within
  the first few percent (|αe| ≈ √eps), which the quadrature misses, and more steps make the
  delta worse, not better. By default the baseline keeps position 0 as it is (see
  `integrated_gradients`).

The gradient methods run the model's own forward with `inputs_embeds`; only the embeddings
require grad (`torch.autograd.grad`, so no `.grad` is left on any parameter) and the model
stays in eval mode.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from llmvis.analyses.common import check_position, check_token_id, id_label, round4
from llmvis.analyses.registry import ViewContext, ViewParamError, register
from llmvis.internals import MEAN_ROWS, Internals
from llmvis.models.loaded import LoadedModel

Method = Literal["rollout", "grad_x_input", "integrated_gradients"]
Objective = Literal["logit", "log_prob"]
IG_TOKENS_PER_BATCH = 2048  # bounds captum's internal batch: steps × tokens per forward


class AttributionParams(BaseModel):
    position: int | None = Field(default=None, ge=1, description="target token's position (≥ 1); None = the last token")
    method: Method = Field(default="rollout", description="rollout (fast, no gradients) or a gradient method")
    objective: Objective = Field(
        default="logit", description="gradient methods: differentiate the target's logit or log-probability"
    )
    foil: int | None = Field(
        default=None, ge=0, description="gradient methods: attribute objective(target) − objective(foil) instead"
    )
    steps: int = Field(default=32, ge=2, le=512, description="integrated gradients: integration steps")
    baseline: Literal["pad", "zero"] = Field(
        default="pad",
        description="integrated gradients: the pad token's embedding at every position, or zeros "
        "(zeros cross the RMSNorm's near-singularity at the origin and converge poorly: see delta)",
    )
    keep_first: bool = Field(
        default=True,
        description="integrated gradients: the baseline keeps position 0's embedding (the attention "
        "sink), so position 0 scores 0; interpolating it makes the path jump and IG diverge",
    )


class AttributionView(BaseModel):
    method: Method
    objective: str = Field(description="what is attributed: attention flow, logit or log_prob")
    position: int
    target_id: int
    target_label: str
    foil_id: int | None = None
    foil_label: str | None = None
    positions: list[int] = Field(description="[t] source positions 0..t−1")
    labels: list[str] = Field(description="[t] source token labels")
    scores: list[float] = Field(description="[t] signed attribution of each source token")
    share: list[float] = Field(description="[t] |score| / Σ|score|")
    output: float | None = Field(description="objective at the input (gradient methods)")
    baseline_output: float | None = Field(description="objective at the baseline (integrated gradients)")
    delta: float | None = Field(
        description="integrated gradients convergence delta: Σ scores − (output − baseline_output)"
    )
    steps: int | None
    kept_first: bool = Field(description="integrated gradients: position 0 was kept in the baseline")


def rollout(
    mean_attention: Callable[[int, list[int]], torch.Tensor],
    layers: Sequence[int],
    n: int,
    start: torch.Tensor | None = None,
    chunk: int = MEAN_ROWS,
    pause: Callable[[], None] = lambda: None,
) -> torch.Tensor:
    """`start @ Â_{L−1} @ … @ Â_0` over `n` positions; `[k, n]` (`[n, n]` when start is None).

    `mean_attention(layer, rows) -> [len(rows), ≥ max(rows) + 1]` gives a layer's head-mean
    attention Ā of those query rows (keys after a row are 0: causal); `Â = diag(1/s)(½Ā + ½I)`
    with s its row sums, applied as `r Â = ½(r/s)Ā + ½(r/s)` so the identity is never built.
    Only the rows where `r` has weight are fetched, by blocks of `chunk`, last layer first (the
    top layer needs the target row alone), so memory stays O(heads · chunk · n); and only the
    rows of `r` with weight there are multiplied (the whole lower-triangular product: a sixth
    of a dense one). The products run in Ā's precision (fp32 from the capture: converting a kept
    4,096² Ā to fp64 for every target cost 0.6 s at T = 4,096), accumulated in fp64; a kept Ā's
    blocks are read as views, not copied (a target's rollout at T = 4,224 with Ā kept:
    0.24–0.30 s), or from its spill file. `pause()` runs between layers.
    """
    r = torch.eye(n, dtype=torch.float64) if start is None else start.to(torch.float64)
    for layer in reversed(layers):
        out = torch.zeros_like(r)
        needed = torch.nonzero(r.any(0)).flatten().tolist()
        for _, block in itertools.groupby(needed, key=lambda q: q // chunk):  # a kept Ā's blocks
            rows = list(block)
            mean = mean_attention(layer, rows).cpu()  # its own precision: a kept fp32 Ā is not copied
            width = min(n, mean.shape[-1])
            ws = r[:, rows] / (0.5 * mean.sum(dim=-1).double() + 0.5)  # (a sum with dtype= is 35× slower)
            live = torch.nonzero(ws.any(1)).flatten()
            if len(live) < len(ws):
                out[live, :width] += 0.5 * (ws[live].to(mean.dtype) @ mean[:, :width])
            else:
                out[:, :width] += 0.5 * (ws.to(mean.dtype) @ mean[:, :width])
            out[:, rows] += 0.5 * ws
        r = out
        pause()
    return r


def warm_rollout(internals: Internals, pause: Callable[[], None]) -> None:
    """Every attention layer's head-mean attention, computed before the Attribution tab asks and
    kept while the cache has room (L·T² floats: 0.33 GB at T = 1,664 on the bundled model), so
    the rollout of any target is L vector–matrix products instead of L layers' attention."""
    for layer in internals.attention_layers(required=True):
        if not internals.keep_mean_attention(layer, pause=pause):  # pauses within the layer too
            return
        pause()


def _model_of(ctx: ViewContext) -> LoadedModel:
    loaded = ctx.loaded or getattr(ctx.internals, "loaded", None)
    if loaded is None:
        raise ViewParamError("gradient attribution needs the model's weights, which are not loaded")
    return loaded


def objective_fn(
    model: Any, target: int, objective: Objective, foil: int | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`f(embeds: [b, t, d]) -> [b]`: the target's logit (or log-prob) at the last position,
    less the foil's when there is one."""
    kwargs: dict[str, Any] = {"use_cache": False}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1

    def f(embeds: torch.Tensor) -> torch.Tensor:
        logits = model(inputs_embeds=embeds, **kwargs).logits[:, -1, :].float()
        if objective == "log_prob":
            logits = torch.log_softmax(logits, dim=-1)
        return logits[:, target] - logits[:, foil] if foil is not None else logits[:, target]

    return f


def _embeddings(loaded: LoadedModel, ids: list[int]) -> torch.Tensor:
    """`[1, t, d]` input embeddings of `ids`, detached (the model's own embedding module)."""
    x = torch.tensor([ids], device=loaded.device)
    return loaded.model.get_input_embeddings()(x).detach()


def _pad_id(loaded: LoadedModel) -> int:
    tok = loaded.tokenizer
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(tok, name, None)
        if isinstance(value, int):
            return value
    return 0


def grad_x_input(
    loaded: LoadedModel, ids: list[int], target: int, objective: Objective, foil: int | None = None
) -> tuple[torch.Tensor, float]:
    """(scores: [t], objective value) for predicting `target` (rather than `foil`) after `ids`."""
    f = objective_fn(loaded.model, target, objective, foil)
    with torch.inference_mode(False), torch.enable_grad():
        e = _embeddings(loaded, ids).clone().requires_grad_(True)
        y = f(e)
        (grad,) = torch.autograd.grad(y.sum(), e)
    scores = (grad.float() * e.detach().float()).sum(dim=-1)[0]
    return scores, float(y.detach()[0])


def integrated_gradients(
    loaded: LoadedModel,
    ids: list[int],
    target: int,
    objective: Objective,
    steps: int,
    baseline: str,
    keep_first: bool = True,
    foil: int | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[torch.Tensor, float, float, float]:
    """(scores: [t], output, baseline output, convergence delta) with captum's IntegratedGradients;
    `progress(steps done, steps)` after each batch of steps (a long run's IG takes minutes on a CPU).

    With `keep_first` the baseline's position 0 is the input's: on the bundled model the path
    that moves the first token (the attention sink) swings the logit by ±10 and 128 steps
    still miss by 45, while keeping it converges to 1e-5 (measured, "The capital of France is").
    """
    from captum.attr import IntegratedGradients

    f = objective_fn(loaded.model, target, objective, foil)
    done = 0

    def counted(embeds: torch.Tensor) -> torch.Tensor:  # captum calls it once per batch of steps
        nonlocal done
        out = f(embeds)
        done = min(steps, done + embeds.shape[0])
        progress(done, steps)
        return out

    with torch.inference_mode(False), torch.enable_grad():
        e = _embeddings(loaded, ids).clone()
        b = _embeddings(loaded, [_pad_id(loaded)] * len(ids)).clone() if baseline == "pad" else torch.zeros_like(e)
        if keep_first:
            b[:, 0] = e[:, 0]
        batch = max(1, min(steps, IG_TOKENS_PER_BATCH // max(1, len(ids))))
        progress(0, steps)
        attr, delta = IntegratedGradients(counted).attribute(
            e, baselines=b, n_steps=steps, internal_batch_size=batch, return_convergence_delta=True
        )
        with torch.no_grad():
            out, base = float(f(e)[0]), float(f(b)[0])
    return attr.detach().float().sum(dim=-1)[0], out, base, float(delta.reshape(-1)[0])


@register("attribution", "Input attribution", AttributionParams, AttributionView, needs_internals=True)
def attribution_view(ctx: ViewContext, p: AttributionParams) -> AttributionView:
    """Score every token before `position` for its part in predicting the token there."""
    tokens = ctx.trace.tokens
    pos = check_position(ctx, len(tokens) - 1 if p.position is None else p.position)
    if pos < 1:
        raise ViewParamError("position 0 has no earlier tokens to attribute to; choose a position ≥ 1")
    target = tokens[pos].id
    foil = None if p.foil is None else check_token_id(ctx, p.foil, "foil")
    if foil is not None and p.method == "rollout":
        raise ViewParamError("rollout follows attention, not a logit: a foil needs a gradient method")
    if foil == target:
        raise ViewParamError("the foil is the token itself: choose another token to contrast with")
    output = base = delta = None
    kept = False
    if p.method == "rollout":
        internals = ctx.require_internals()
        start = torch.zeros(1, pos, dtype=torch.float64)
        start[0, pos - 1] = 1.0
        layers = internals.attention_layers(required=True)

        def mean_attention(layer: int, rows: list[int]) -> torch.Tensor:
            # a late target reads most of each layer's Ā anyway: compute it whole and keep it (shared
            # with the summaries ahead) while there is room; an early one reads its few rows only
            if 2 * pos >= internals.n_positions:
                internals.keep_mean_attention(layer)
            return internals.mean_attention(layer, rows)

        done = 0

        def layer_done() -> None:
            nonlocal done
            done += 1
            ctx.progress("rollout", done, len(layers))

        ctx.progress("rollout", 0, len(layers))
        scores = rollout(mean_attention, layers, pos, start, pause=layer_done)[0]
        missing = sorted(internals.missing_attention())
        objective = "attention flow" + (f" through the attention layers (not {missing})" if missing else "")
    else:
        loaded = _model_of(ctx)
        ids = ctx.trace.ids[:pos]
        if p.method == "grad_x_input":
            scores, output = grad_x_input(loaded, ids, target, p.objective, foil)
        else:
            kept = p.keep_first and pos >= 2  # with one source token, keeping it leaves nothing
            scores, output, base, delta = integrated_gradients(
                loaded, ids, target, p.objective, p.steps, p.baseline, kept, foil,
                progress=lambda done, total: ctx.progress("steps", done, total),
            )  # fmt: skip
        objective = p.objective if foil is None else f"{p.objective}(target) − {p.objective}(foil)"
    total = float(scores.abs().sum())
    share = scores.abs() / total if total > 0 else torch.zeros_like(scores)
    return AttributionView(
        method=p.method,
        objective=objective,
        position=pos,
        target_id=target,
        target_label=tokens[pos].label,
        foil_id=foil,
        foil_label=None if foil is None else id_label(ctx, foil),
        positions=list(range(pos)),
        labels=[t.label for t in tokens[:pos]],
        scores=round4(scores),
        share=round4(share),
        output=None if output is None else round4(output),
        baseline_output=None if base is None else round4(base),
        delta=None if delta is None else round4(delta),
        steps=p.steps if p.method == "integrated_gradients" else None,
        kept_first=kept,
    )
