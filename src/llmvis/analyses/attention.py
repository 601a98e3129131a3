"""View `attention`: one layer's attention as a heatmap, or one query row across all layers.

Matrix mode: layer L, one head (or the mean / max over heads), a window [start, end) of
positions used for both axes. Matrices wider than `max_cells` are max-pooled into equal bins
(max keeps a sharp peak visible; a mean would wash it out); `row_indices` / `col_indices` give
the first source position of every bin. Long runs are computed in chunks of query rows and
pooled as they go, so memory stays O(chunk × T) instead of O(H × T²).

Row mode (`position` set): how that position attends to every earlier one, for every layer
and head: `rows: [layers][heads][key bins]`, built without any T×T matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, Field

from llmvis.analyses.common import (
    bin_starts,
    check_head,
    check_layer,
    check_position,
    check_window,
    pool_bins,
    round4,
    token_labels,
)
from llmvis.analyses.registry import ViewContext, register
from llmvis.internals import Internals

# Below this the whole layer is computed at once (and cached). Above it, query rows go in chunks
# of CHUNK_ROWS (at most CHUNK_BYTES): small enough that the product, the mask, the softmax and
# the pooling find each chunk in the CPU's cache, big enough to keep the product efficient. A
# whole layer of the bundled model on 2 cores: T = 1,664 (100 MB), 0.22–0.32 s at once, 0.19 s
# in 64 MB chunks, 0.06–0.08 s in 96 rows; T = 4,224, 0.69–0.77 s in 64 MB chunks, 0.30–0.33 s
# in 96 rows (0.46–0.53 s in 24).
FULL_MATRIX_BYTES = 4 << 20
CHUNK_ROWS = 96
CHUNK_BYTES = 64 << 20
MAX_CELLS = 360  # 360² cells, half of them causal zeros, stay under 1 MB of JSON
ROW_MODE_CELLS = 65_536  # row mode: layers × heads × key bins stays below this

HeadSelector = Annotated[int, Field(ge=0)] | Literal["mean", "max"]
Reduce = Callable[[torch.Tensor], torch.Tensor]


class AttentionParams(BaseModel):
    layer: int | None = Field(
        default=None, ge=0, description="decoder layer 0..L-1 (matrix mode; default: the first with attention)"
    )
    head: HeadSelector = Field(default="mean", description="head index, or 'mean' / 'max' over all heads (matrix mode)")
    start: int | None = Field(default=None, ge=0, description="first position of the window (default 0)")
    end: int | None = Field(default=None, ge=1, description="end of the window, exclusive (default: the run's length)")
    max_cells: int = Field(
        default=256,
        ge=8,
        le=MAX_CELLS,
        description="at most this many bins per axis; larger windows are max-pooled "
        f"(≤ {MAX_CELLS} keeps the JSON under 1 MB at 4 significant digits)",
    )
    position: int | None = Field(
        default=None,
        ge=0,
        description="query-row mode: this position's attention over earlier ones, all layers × heads",
    )


class AttentionView(BaseModel):
    mode: Literal["matrix", "row"]
    n_positions: int
    layers: int
    heads: int
    layer: int | None = Field(description="matrix mode: the layer shown")
    head: int | str | None = Field(description="matrix mode: head index, 'mean' or 'max'")
    start: int = Field(description="window start (matrix mode) or 0 (row mode)")
    end: int = Field(description="window end, exclusive (matrix) or position + 1 (row)")
    pooled: bool = Field(description="true when bins hold more than one position (values are maxima)")
    row_indices: list[int] = Field(description="first source position of each row bin (queries)")
    col_indices: list[int] = Field(description="first source position of each column bin (keys)")
    row_labels: list[str] = Field(description="label of the token at each row_indices entry")
    col_labels: list[str] = Field(description="label of the token at each col_indices entry")
    matrix: list[list[float]] | None = Field(
        default=None, description="matrix mode: [query bin][key bin] attention weights"
    )
    position: int | None = Field(default=None, description="row mode: the query position")
    rows: list[list[list[float]] | None] | None = Field(
        default=None, description="row mode: [layer][head][key bin] attention of `position` (None: no attention)"
    )
    missing_layers: dict[int, str] = Field(
        default_factory=dict, description="layers without attention to show (a hybrid's other mixers), and why"
    )


def head_reducer(head: int | str) -> Reduce:
    """[heads, q, k] → [q, k]: one head, or the mean / max over heads."""
    if head == "mean":
        return lambda w: w.mean(dim=0)
    if head == "max":
        return lambda w: w.amax(dim=0)
    return lambda w: w[int(head)]


def pooled_attention(
    internals: Internals,
    layer: int,
    start: int,
    end: int,
    max_cells: int,
    reduce: Reduce,
    pause: Callable[[], None] = lambda: None,
    kept_as: Any = None,
    each_chunk: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, list[int], list[int]]:
    """reduce(attention[:, start:end, start:end]) max-pooled to ≤ max_cells per axis, on CPU.

    Returns `(pooled: [..., rows, cols], row_indices, col_indices)` with absolute positions.
    Small runs: the layer's full matrix (cached by Internals). Long runs: chunks of query rows,
    each a whole number of row bins, so memory is O(chunk × T) whatever T is. `kept_as`: the
    cache key the caller keeps the result under: the chunks done are left there at each pause,
    for a view let in to go on from (it returns the view's result if it kept one).
    `each_chunk(a, w)`: sees each chunk's weights [H, rows a.., start:end] (long runs only).
    """
    n = end - start
    rsize, ridx = bin_starts(n, max_cells)
    csize, cidx = bin_starts(n, max_cells)
    heads, t = internals.n_heads, internals.n_positions
    if heads * t * t * 4 <= FULL_MATRIX_BYTES:
        w = internals.attention(layer)[:, start:end, start:end]
        pooled = pool_bins(reduce(w), rsize, csize)
    else:
        chunk = max(rsize, chunk_rows(heads * end * 4) // rsize * rsize)
        parts, first = (kept_as is not None and internals.cache.started(kept_as)) or ([], start)
        for a in range(first, end, chunk):
            b = min(end, a + chunk)
            w = internals.attention(layer, slice(a, b))[:, :, start:end]
            if each_chunk is not None:
                each_chunk(a, w)
            parts = [*parts, pool_bins(reduce(w), rsize, csize).cpu()]
            if kept_as is None or b == end:
                pause()  # computed ahead: a waiting view gets the model between chunks
            elif (done := internals.cache.paused_part_way(kept_as, (parts, b), pause)) is not None:
                return done  # type: ignore[no-any-return]
        if kept_as is not None:
            internals.cache.finish(kept_as)
        pooled = torch.cat(parts, dim=-2)
    return pooled.cpu(), [start + i for i in ridx], [start + i for i in cidx]


def chunk_rows(row_bytes: int) -> int:
    """Query rows per chunk: CHUNK_ROWS, fewer where they would exceed CHUNK_BYTES."""
    return max(1, min(CHUNK_ROWS, CHUNK_BYTES // row_bytes))


def attention_rows(
    internals: Internals, layer: int, positions: list[int], pad: bool = True
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield `(chunk_positions, attention: [heads, len(chunk), T])` for query `positions`
    (`pad=False`: keys up to the chunk's last query).

    Chunks of chunk_rows() rows, whatever the run's length.
    """
    chunk = chunk_rows(internals.n_heads * internals.n_positions * 4)
    for i in range(0, len(positions), chunk):
        part = positions[i : i + chunk]
        yield part, internals.attention(layer, part, pad)


def sample_positions(first: int, t: int, max_queries: int) -> list[int]:
    """Up to `max_queries` evenly spaced positions in first..t-1 (all of them when fewer)."""
    n = t - first
    if n <= 0:
        return []
    step = max(1, -(-n // max_queries))
    return list(range(first, t, step))


def first_attention_layer(internals: Internals) -> int:
    """The default layer of a one-layer view: 0, or a hybrid's first attention layer."""
    return internals.attention_layers(required=True)[0]


def row_mode(ctx: ViewContext, internals: Internals, position: int, max_cells: int) -> AttentionView:
    rows = internals.attention_row(position)[:, :, : position + 1]  # [L, H, keys]
    budget = max(8, ROW_MODE_CELLS // (rows.shape[0] * rows.shape[1]))
    size, cidx = bin_starts(position + 1, min(max_cells, budget))
    pooled = pool_bins(rows[:, :, None, :], 1, size)[:, :, 0]
    missing = internals.missing_attention()
    return AttentionView(
        mode="row",
        n_positions=internals.n_positions,
        layers=internals.n_layers,
        heads=internals.n_heads,
        layer=None,
        head=None,
        start=0,
        end=position + 1,
        pooled=size > 1,
        row_indices=[position],
        col_indices=cidx,
        row_labels=token_labels(ctx, [position]),
        col_labels=token_labels(ctx, cidx),
        position=position,
        rows=[None if layer in missing else round4(r) for layer, r in enumerate(pooled)],
        missing_layers=missing,
    )


@register("attention", "Attention heatmap", AttentionParams, AttentionView, needs_internals=True, uses=("attention",))
def attention_view(ctx: ViewContext, p: AttentionParams) -> AttentionView:
    """One layer's attention (a head, or mean/max over heads), or one query row everywhere."""
    internals = ctx.require_internals()
    if p.position is not None:
        return row_mode(ctx, internals, check_position(ctx, p.position), p.max_cells)
    layer = first_attention_layer(internals) if p.layer is None else check_layer(ctx, p.layer)
    if isinstance(p.head, int):
        check_head(ctx, p.head)
    start, end = check_window(ctx, p.start, p.end)
    from llmvis.analyses.heads import HeadsAlongside  # (heads.py builds on this module)

    heads = HeadsAlongside.wanted(internals, layer, start, end)

    def each(a: int, w: torch.Tensor) -> None:  # a long run's chunk of query rows
        if heads is not None:
            heads.add(a, w)
        ctx.progress("rows", a + w.shape[1] - start, end - start)

    pooled, ridx, cidx = pooled_attention(
        internals, layer, start, end, p.max_cells, head_reducer(p.head), each_chunk=each
    )
    if heads is not None:
        heads.keep()
    return AttentionView(
        mode="matrix",
        n_positions=internals.n_positions,
        layers=internals.n_layers,
        heads=internals.n_heads,
        layer=layer,
        head=p.head,
        start=start,
        end=end,
        pooled=len(ridx) < end - start,
        row_indices=ridx,
        col_indices=cidx,
        row_labels=token_labels(ctx, ridx),
        col_labels=token_labels(ctx, cidx),
        matrix=round4(pooled),
    )
