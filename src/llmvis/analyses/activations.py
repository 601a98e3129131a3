"""View `activations`: per-layer distributions of MLP activations and attention outputs.

Each layer gets a histogram over bin edges shared by all layers (so the bars compare across
layers) and its moments. The edges span the pooled values of every layer, optionally
leaving out a small fraction `clip` in each tail so that a few massive activations do not
squash everything else into one bin; values outside the edges are counted in `underflow` /
`overflow`, so counts + underflow + overflow = n always.

Two passes over the layers: the first gets the moments and the range, the second the
counts. Layer values are kept between the passes while they fit in `KEEP_BYTES`, and are
recomputed from the internals otherwise (long runs).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, Field

from llmvis.analyses.common import check_position, round4
from llmvis.analyses.registry import ViewContext, ViewParamError, register
from llmvis.internals import Internals

KEEP_BYTES = 256 << 20  # values kept between the two passes (fp32 bytes)
SAMPLE_VALUES = 1 << 19  # values (over all layers) used to place the clipped range
MLP_ROWS = 512  # tokens per piece of a layer's MLP over every token (a pause after each piece)

Kind = Literal["mlp", "attn"]


class ActivationsParams(BaseModel):
    position: int | None = Field(
        default=None, ge=0, description="one token's activations; None = all tokens of the run"
    )
    bins: int = Field(default=64, ge=4, le=256, description="histogram bins (shared by all layers)")
    clip: float = Field(
        default=0.001,
        ge=0.0,
        le=0.1,
        description="fraction of pooled values left outside the bin range in each tail "
        "(counted in underflow/overflow); 0 = the full min..max range",
    )


class LayerDistribution(BaseModel):
    layer: int
    n: int = Field(description="values summarised: tokens × width")
    counts: list[int] = Field(description="[bins] values in each bin")
    underflow: int = Field(description="values below the first edge")
    overflow: int = Field(description="values above the last edge")
    mean: float
    std: float = Field(description="population standard deviation")
    min: float
    max: float
    abs_max: float
    kurtosis: float | None = Field(
        description="excess kurtosis m4/m2² − 3 (0 for a normal distribution); None if constant"
    )


class Distributions(BaseModel):
    kind: Kind
    what: str
    edges: list[float] = Field(description="[bins + 1] shared bin edges; the last bin includes its right edge")
    layers: list[LayerDistribution]


class ActivationsView(BaseModel):
    position: int | None
    tokens: int = Field(description="tokens included")
    mlp: Distributions
    attn: Distributions


CHUNK = 1 << 22  # values converted to fp64 at a time (bounds temporary memory)


def _chunks(x: torch.Tensor) -> list[torch.Tensor]:
    flat = x.detach().reshape(-1)
    return [flat[i : i + CHUNK].to(torch.float64) for i in range(0, flat.numel(), CHUNK)]


def moments(x: torch.Tensor) -> dict[str, float | None]:
    """mean, std, min, max, abs_max and excess kurtosis of all values of `x` (any shape), in fp64."""
    n = x.numel()
    if n == 0:
        raise ViewParamError("no values to summarise")
    mean = sum(float(c.sum()) for c in _chunks(x)) / n
    m2 = m4 = 0.0
    for c in _chunks(x):
        d2 = (c - mean) ** 2
        m2 += float(d2.sum())
        m4 += float((d2 * d2).sum())
    m2, m4 = m2 / n, m4 / n
    lo, hi = float(x.min()), float(x.max())
    return {
        "mean": mean,
        "std": math.sqrt(m2),
        "min": lo,
        "max": hi,
        "abs_max": max(abs(lo), abs(hi)),
        "kurtosis": m4 / (m2 * m2) - 3.0 if m2 > 0 else None,
    }


def histogram(x: torch.Tensor, edges: torch.Tensor) -> tuple[list[int], int, int]:
    """(counts: [bins], underflow, overflow) of all values of `x` over ascending `edges: [bins+1]`.

    Bins are half-open [e_i, e_i+1) except the last, which includes its right edge.
    """
    e = edges.to(x.device, torch.float64)
    bins = e.numel() - 1
    total = torch.zeros(bins + 2, dtype=torch.int64, device=x.device)
    for v in _chunks(x):
        idx = torch.bucketize(v, e, right=True)  # 0: below e_0, i: bin i-1, bins+1: at/after e_last
        idx[v == e[-1]] = bins
        total += torch.bincount(idx, minlength=bins + 2)
    counts = total.tolist()
    return counts[1 : bins + 1], counts[0], counts[bins + 1]


def _round_out(x: float, up: bool) -> float:
    """`x` to 4 significant digits, rounded away from the data (never inside the range)."""
    r = float(round4(x))
    if (r < x) if up else (r > x):
        step = 10.0 ** (math.floor(math.log10(abs(r) or abs(x))) - 3)
        r = float(round4(r + step if up else r - step))
    return r


def shared_edges(samples: list[torch.Tensor], lo: float, hi: float, bins: int, clip: float) -> torch.Tensor:
    """[bins + 1] equal-width edges over the pooled range (clipped to quantiles when clip > 0).

    Edges are rounded to 4 significant digits (the outer two outwards) before counting, so
    the edges sent are exactly the ones used and clip = 0 leaves nothing outside.
    """
    if clip > 0:
        pooled = torch.cat([s.reshape(-1) for s in samples]).float()
        q = torch.quantile(pooled, torch.tensor([clip, 1.0 - clip]))
        lo, hi = float(q[0]), float(q[1])
    if not hi > lo:
        half = max(abs(lo) * 1e-3, 1e-6)
        lo, hi = lo - half, hi + half
    lo, hi = _round_out(lo, up=False), _round_out(hi, up=True)
    edges = torch.tensor(round4(torch.linspace(lo, hi, bins + 1, dtype=torch.float64)), dtype=torch.float64)
    edges[0], edges[-1] = lo, hi
    return torch.cummax(edges, 0).values  # rounding can tie neighbours, never reverse them


def _sample(v: torch.Tensor, layers: int) -> torch.Tensor:
    """An evenly strided subset of `v`'s values, ≤ SAMPLE_VALUES / layers of them."""
    flat = v.reshape(-1)
    step = max(1, flat.numel() // max(1024, SAMPLE_VALUES // layers))
    return flat[::step].to("cpu", torch.float32)


def _distributions(
    kind: Kind,
    what: str,
    get: Callable[[int], torch.Tensor],
    layers: int,
    p: ActivationsParams,
    pause: Callable[[], None] = lambda: None,
) -> Distributions:
    """Two passes over `get(layer) -> [tokens, width]`: moments and range, then the counts.
    `pause()` runs after each layer of each pass (computed ahead: analyses/warm.py)."""
    kept: dict[int, torch.Tensor] = {}
    stats: list[dict[str, float | None]] = []
    samples: list[torch.Tensor] = []
    used = 0
    for layer in range(layers):
        v = get(layer)
        stats.append(moments(v))
        samples.append(_sample(v, layers))
        if used + v.numel() * 4 <= KEEP_BYTES:
            kept[layer] = v
            used += v.numel() * 4
        pause()
    lo = min(float(s["min"]) for s in stats)  # type: ignore[arg-type]
    hi = max(float(s["max"]) for s in stats)  # type: ignore[arg-type]
    edges = shared_edges(samples, lo, hi, p.bins, p.clip)
    out = []
    for layer in range(layers):
        v = kept.pop(layer) if layer in kept else get(layer)
        counts, under, over = histogram(v, edges)
        s = stats[layer]
        out.append(
            LayerDistribution(
                layer=layer,
                n=v.numel(),
                counts=counts,
                underflow=under,
                overflow=over,
                mean=round4(s["mean"]),
                std=round4(s["std"]),
                min=round4(s["min"]),
                max=round4(s["max"]),
                abs_max=round4(s["abs_max"]),
                kurtosis=None if s["kurtosis"] is None else round4(s["kurtosis"]),
            )
        )
        pause()
    return Distributions(kind=kind, what=what, edges=edges.tolist(), layers=out)


@register(
    "activations",
    "Activation distributions",
    ActivationsParams,
    ActivationsView,
    needs_internals=True,
    uses=("mlp", "one_mlp"),
)
def activations_view(ctx: ViewContext, p: ActivationsParams) -> ActivationsView:
    """Per layer: histogram and moments of MLP activations and of attention outputs."""
    internals = ctx.require_internals()
    pos = None if p.position is None else check_position(ctx, p.position)
    if internals.n_layers < 1:
        raise ViewParamError("this model has no decoder layers")
    if pos is None:
        return all_tokens(internals, p)
    return _activations(internals, p, pos)


def all_tokens(internals: Internals, p: ActivationsParams, pause: Callable[[], None] = lambda: None) -> ActivationsView:
    """The view over every token: the same for every selected token, so it is kept with the run
    (the MLP over every token costs seconds on a long run: 3–4.5 s at T = 1,536 on two cores),
    and computed ahead for the default bins and clip (analyses/warm.py)."""
    key = (internals.key, "activations_all", p.bins, p.clip)
    kept = internals.cache.peek(key)
    if kept is None:
        kept = _activations(internals, p, None, pause)
        internals.keep(key, kept, len(kept.model_dump_json()))
    return kept


def warm_activations(internals: Internals, pause: Callable[[], None]) -> None:
    with contextlib.suppress(ViewParamError):  # the view says why when it is asked
        all_tokens(internals, ActivationsParams(), pause)


def _activations(
    internals: Internals, p: ActivationsParams, pos: int | None, pause: Callable[[], None] = lambda: None
) -> ActivationsView:
    t = internals.n_positions
    rows = slice(None) if pos is None else slice(pos, pos + 1)
    spans = [rows] if pos is not None else [slice(a, a + MLP_ROWS) for a in range(0, t, MLP_ROWS)]

    def mlp(layer: int) -> torch.Tensor:
        parts = []
        for span in spans:  # (a waiting request gets the model between pieces, not a layer's MLP)
            try:
                parts.append(internals.mlp_activations(layer, span).float())
            except NotImplementedError as exc:  # e.g. a non-gated MLP
                raise ViewParamError(f"MLP activations are not available for this model: {exc}") from exc
            if len(spans) > 1:
                pause()
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def attn(layer: int) -> torch.Tensor:
        return internals.attn_out(layer)[rows].float()

    layers = internals.n_layers
    return ActivationsView(
        position=pos,
        tokens=1 if pos is not None else t,
        mlp=_distributions(
            "mlp", "MLP activations after the activation function (input of down_proj)", mlp, layers, p, pause
        ),
        attn=_distributions("attn", "attention output added to the residual stream", attn, layers, p, pause),
    )
