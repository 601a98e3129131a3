"""View `embedding`: the run's tokens as points in 2D or 3D, from any layer's residual stream.

`layer = 0` is the input of the first decoder layer, i.e. the input embeddings; `layer = L`
is the output of the last layer (before the final norm). PCA is exact (SVD of the centred
data, or for many points the eigenvectors of its covariance, in float64) and comes with its
explained variance ratios; UMAP and t-SNE are on request (slower, seeded, run on the top 50
principal components as is usual for both).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from llmvis.analyses.common import check_layer, round4
from llmvis.analyses.registry import ViewContext, ViewParamError, register
from llmvis.arch import NotAvailable
from llmvis.umap_process import PROCESS, UmapUnavailable

Method = Literal["pca", "umap", "tsne"]
MIN_POINTS_NONLINEAR = 10  # fewer points give UMAP/t-SNE nothing to find neighbours in
EXACT_SVD_MAX = 1024  # exact when min(points, width) is at most this, randomised otherwise
PRE_PCA = 50  # UMAP/t-SNE run on this many principal components


class EmbeddingParams(BaseModel):
    layer: int = Field(default=0, ge=0, description="0 = input embeddings; L = last layer's output")
    method: Method = Field(default="pca", description="pca (instant), umap or tsne (seconds)")
    dims: int = Field(default=2, ge=2, le=3, description="2 or 3 dimensions")
    max_points: int = Field(
        default=4096, ge=2, le=8192, description="evenly spaced subset of positions when the run is longer"
    )
    exclude_first: bool = Field(default=False, description="leave out position 0, often an outlier (attention sink)")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="random state of UMAP/t-SNE")
    neighbors: int | None = Field(
        default=None, ge=2, le=200, description="UMAP n_neighbors; None = min(15, points − 1)"
    )
    perplexity: float | None = Field(
        default=None, ge=1.0, le=100.0, description="t-SNE perplexity; None = min(30, (points − 1) / 3)"
    )


class EmbeddingView(BaseModel):
    layer: int
    source: str
    method: Method
    dims: int
    solver: str = Field(description="how the projection was computed")
    prompt_len: int
    positions: list[int] = Field(description="[n] position of each point")
    labels: list[str] = Field(description="[n] token label of each point")
    coords: list[list[float]] = Field(description="[n, dims]")
    explained_variance_ratio: list[float] | None = Field(
        description="[dims] share of the total variance on each PCA axis (PCA only)"
    )
    scree: list[float] | None = Field(description="ratios of the first ≤ 10 components (PCA only)")


def pca(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """PCA of `x: [n, d]`. Returns (coords: [n, k], axes: [k, d], ratios: [k], solver).

    Axes are unit vectors, signed so that each axis's largest-magnitude entry is positive;
    ratios are each axis's variance over the total variance. Components beyond the data's
    rank come back as zeros.
    """
    n, d = x.shape
    c = x.to(torch.float64)
    c = c - c.mean(dim=0, keepdim=True)
    total = float((c * c).sum())
    if d <= EXACT_SVD_MAX and n >= 2 * d:
        # more points than twice the width: the d × d covariance's eigenvectors are the same axes
        # in a quarter of an SVD's time (0.04 s against 0.14 s for 1,664 points of width 576)
        lam, vecs = torch.linalg.eigh(c.T @ c)  # ascending
        s, vh = lam.flip(0).clamp_min(0).sqrt(), vecs.flip(1).T
        solver = "exact (covariance eigenvectors)"
    elif min(n, d) <= EXACT_SVD_MAX:
        _, s, vh = torch.linalg.svd(c, full_matrices=False)
        solver = "exact SVD"
    else:
        q = min(k + 20, n, d)
        _, s, v = torch.pca_lowrank(c.float(), q=q, center=False, niter=6)
        s, vh = s.to(torch.float64), v.T.to(torch.float64)
        solver = f"randomised SVD (q={q})"
    axes = torch.zeros(k, d, dtype=torch.float64)
    sv = torch.zeros(k, dtype=torch.float64)
    m = min(k, s.numel())
    axes[:m], sv[:m] = vh[:m], s[:m]
    peak = axes.abs().argmax(dim=1)
    sign = torch.sign(axes.gather(1, peak[:, None]))[:, 0]
    axes = axes * torch.where(sign == 0, 1.0, sign)[:, None]
    ratios = sv * sv / total if total > 0 else torch.zeros(k, dtype=torch.float64)
    return c @ axes.T, axes, ratios, solver


def _pick(n: int, max_points: int, exclude_first: bool) -> list[int]:
    """Evenly spaced positions (at most max_points), optionally without position 0."""
    pool = list(range(1 if exclude_first else 0, n))
    if len(pool) <= max_points:
        return pool
    idx = np.linspace(0, len(pool) - 1, max_points).round().astype(int)
    return [pool[i] for i in sorted(set(idx.tolist()))]


def _nonlinear(x: torch.Tensor, p: EmbeddingParams) -> tuple[np.ndarray, str]:
    """UMAP or t-SNE of `x: [n, d]` (reduced to PRE_PCA components first) → [n, dims]."""
    n = x.shape[0]
    if n < MIN_POINTS_NONLINEAR:
        raise ViewParamError(
            f"{p.method} needs at least {MIN_POINTS_NONLINEAR} tokens, this selection has {n}; "
            "use method=pca or a longer run"
        )
    if x.shape[1] > PRE_PCA:
        x = pca(x, min(PRE_PCA, n))[0]
    data = x.to(torch.float32).numpy()
    if p.method == "umap":
        k = min(p.neighbors or 15, n - 1)
        try:
            coords = PROCESS.fit(data, p.dims, k, p.seed)  # compiled ahead by compile_umap_soon
        except UmapUnavailable as exc:
            raise NotAvailable(str(exc)) from exc
        return coords, f"UMAP (n_neighbors={k}) on top {data.shape[1]} PCs"
    from sklearn.manifold import TSNE

    perplexity = min(p.perplexity or 30.0, (n - 1) / 3)
    tsne = TSNE(n_components=p.dims, perplexity=perplexity, init="pca", random_state=p.seed)
    return np.asarray(tsne.fit_transform(data)), (f"t-SNE (perplexity={perplexity:.3g}) on top {data.shape[1]} PCs")


def compile_umap_soon() -> bool:
    """Start UMAP's process (llmvis/umap_process.py), which compiles at once at the lowest
    priority; whether this call started it. The server calls it when the Embedding tab first
    asks for a projection (PCA, at once), so a switch to UMAP a few seconds later finds it
    compiled, or nearly, while the views and the page asked meanwhile keep the CPU."""
    return PROCESS.start()


def _source(layer: int, layers: int) -> str:
    if layer == 0:
        return "input embeddings"
    if layer == layers:
        return f"residual stream after the last layer ({layers - 1}), before the final norm"
    return f"residual stream entering layer {layer}"


@register("embedding", "Embedding projection", EmbeddingParams, EmbeddingView, needs_internals=True)
def embedding_view(ctx: ViewContext, p: EmbeddingParams) -> EmbeddingView:
    """Project the selected tokens' residual vectors to 2D/3D with PCA, UMAP or t-SNE."""
    internals = ctx.require_internals()
    layer = check_layer(ctx, p.layer, allow_final=True)
    positions = _pick(internals.n_positions, p.max_points, p.exclude_first)
    if len(positions) < p.dims + 1:
        raise ViewParamError(
            f"a {p.dims}D projection needs at least {p.dims + 1} tokens, this selection has {len(positions)}"
        )
    x = internals.residual(layer)[positions].detach().to("cpu", torch.float32)
    ratios = scree = None
    if p.method == "pca":
        coords_t, _, ratio_t, solver = pca(x, max(p.dims, min(10, len(positions) - 1)))
        coords = coords_t[:, : p.dims].numpy()
        ratios, scree = round4(ratio_t[: p.dims]), round4(ratio_t)
    else:
        coords, solver = _nonlinear(x, p)
    labels = [ctx.trace.tokens[i].label for i in positions]
    return EmbeddingView(
        layer=layer,
        source=_source(layer, internals.n_layers),
        method=p.method,
        dims=p.dims,
        solver=solver,
        prompt_len=ctx.trace.prompt_len,
        positions=positions,
        labels=labels,
        coords=round4(coords),
        explained_variance_ratio=ratios,
        scree=scree,
    )
