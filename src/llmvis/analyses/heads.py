"""Views over attention heads: compare them, measure their entropy, label what they do.

- `multi_head`: every head of one layer as a small (≤ 64×64, max-pooled) matrix, plus each
  head's attention row from the selected position.
- `head_entropy`: L×H mean attention entropy, normalised by log(number of keys the query can
  see — its position + 1, or the sliding window), so 1 = uniform and 0 = one key.
- `head_health`: per head the share of attention on the first token (sink), on the previous
  token, and on the token after an earlier occurrence of the current one (induction), on the
  run itself or on a probe of N random tokens repeated twice, and a label.

Label rule (documented in `HeadHealthView.thresholds` too): among sink ≥ 0.5, previous-token
≥ 0.4 and induction ≥ 0.3, the head takes the label whose score is furthest above its
threshold (score / threshold); if none passes, "focused" when its normalised entropy is below
0.5, else "diffuse". Scores are means over query positions, sampled evenly in long runs: 256 by
default, fewer past T = 2,048 (`default_queries`), and the views say how many.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from llmvis.analyses import attention as attention_module
from llmvis.analyses.attention import (
    attention_rows,
    first_attention_layer,
    pooled_attention,
    sample_positions,
)
from llmvis.analyses.common import (
    bin_starts,
    check_layer,
    default_position,
    pool_bins,
    round4,
    token_labels,
)
from llmvis.analyses.registry import ViewContext, register
from llmvis.internals import Internals

MULTI_HEAD_CELLS = 40_000  # heads × cells² stays below this (JSON size)
ROW_CELLS = 40_000  # heads × key bins of the rows stays below this

SINK_MIN = 0.5
PREVIOUS_MIN = 0.4
INDUCTION_MIN = 0.3
FOCUSED_MAX_ENTROPY = 0.5
DEFAULT_QUERIES = 256  # query positions the averaged head views sample by default, up to T = 2,048
QUERY_KEYS = DEFAULT_QUERIES * 2048  # past that, sampled rows × T stays about this (each row reads its keys)
MIN_QUERIES = 128

HeadLabel = Literal["sink", "previous-token", "induction", "diffuse", "focused"]


# ----------------------------------------------------------------------------- shared maths


def normalised_entropy(w: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Entropy of each row of `w: [..., keys]` divided by log(visible keys); 0 where visible ≤ 1."""
    ent = torch.special.entr(w.float()).sum(-1)  # -p·log p, 0 where p = 0
    denom = torch.log(visible.float().clamp_min(1.0))
    return torch.where(denom > 0, ent / denom.clamp_min(1e-30), torch.zeros_like(ent))


def default_queries(t: int) -> int:
    """Query rows the averaged head views sample by default in a run of `t` positions: 256 up to
    T = 2,048, then as many as keep the pass's work (rows × keys) about that of T = 2,048, and
    never fewer than 128 (from T = 4,096 on). The pass reads every key of each sampled row: 256
    rows took 1.2–1.3 s at T = 4,224 and 2.5–2.6 s at 8,192 on two cores (128 rows: 0.6–0.8 and
    1.4–1.5 s), which kept the Heads tab over its targets. On the bundled model, against
    845 rows at T = 4,224 and 1,024 at 8,192, 128 rows' scores are off by 0.004–0.014 on
    average and at most 0.07, and 259 and 267 of the 270 heads keep their label (256 rows: 263
    and 265). `max_queries` asks for more."""
    return max(MIN_QUERIES, min(DEFAULT_QUERIES, QUERY_KEYS // max(1, t)))


def sampled_queries(t: int, max_queries: int | None) -> list[int]:
    """The query positions (1..t-1, evenly spaced) the averaged head views read."""
    return sample_positions(1, t, default_queries(t) if max_queries is None else max_queries)


# ----------------------------------------------------------------------------- multi_head


class MultiHeadParams(BaseModel):
    layer: int | None = Field(
        default=None, ge=0, description="decoder layer 0..L-1 (default: the first with attention)"
    )
    position: int | None = Field(
        default=None, ge=0, description="query position whose rows are returned (default: last)"
    )
    max_cells: int = Field(default=64, ge=4, le=64, description="bins per axis of each head's matrix")


class MultiHeadView(BaseModel):
    layer: int
    heads: int
    position: int
    n_positions: int
    pooled: bool
    row_indices: list[int] = Field(description="first source position of each matrix row bin")
    col_indices: list[int] = Field(description="first source position of each matrix column bin")
    matrices: list[list[list[float]]] = Field(description="[head][query bin][key bin], max-pooled")
    row_keys: list[int] = Field(description="first key position of each bin of `rows`")
    row_key_labels: list[str]
    rows: list[list[float]] = Field(description="[head][key bin] attention of `position` (max-pooled)")


@register(
    "multi_head", "All heads of a layer", MultiHeadParams, MultiHeadView, needs_internals=True, uses=("attention",)
)
def multi_head(ctx: ViewContext, p: MultiHeadParams) -> MultiHeadView:
    """Every head of one layer side by side, and each head's row for the selected position."""
    internals = ctx.require_internals()
    layer = first_attention_layer(internals) if p.layer is None else check_layer(ctx, p.layer)
    pos = default_position(ctx, p.position)
    heads, t = internals.n_heads, internals.n_positions
    mats, ridx, cidx = pooled_heads(internals, layer, head_cells(heads, p.max_cells))
    row = internals.attention(layer, [pos])[:, 0, : pos + 1]  # [H, keys]
    size, keys = bin_starts(pos + 1, max(8, min(512, ROW_CELLS // heads)))
    row = pool_bins(row[:, None, :], 1, size)[:, 0]
    return MultiHeadView(
        layer=layer,
        heads=heads,
        position=pos,
        n_positions=t,
        pooled=len(ridx) < t,
        row_indices=ridx,
        col_indices=cidx,
        matrices=round4(mats),
        row_keys=keys,
        row_key_labels=token_labels(ctx, keys),
        rows=round4(row),
    )


def head_cells(heads: int, max_cells: int) -> int:
    """Bins per axis of each head's matrix: the JSON stays under MULTI_HEAD_CELLS cells."""
    return max(4, min(max_cells, math.isqrt(MULTI_HEAD_CELLS // heads)))


def pooled_heads(
    internals: Internals, layer: int, cells: int, pause: Callable[[], None] = lambda: None
) -> tuple[torch.Tensor, list[int], list[int]]:
    """Every head's whole matrix of `layer`, max-pooled to `cells` per axis; kept with the run (a
    few kB), since it is the same for every selected token: at T = 4,096 it is a pass over the
    layer's attention (0.4–1.5 s on the CPU), which an arrow key would otherwise repeat."""
    key = (internals.key, "pooled_heads", layer, cells)
    hit = internals.cache.peek(key)
    if hit is None:
        hit = pooled_attention(internals, layer, 0, internals.n_positions, cells, lambda w: w, pause, kept_as=key)
        if key not in internals.cache:  # (a view let in at a pause may have finished and kept it)
            internals.keep(key, hit, hit[0].numel() * 4)
    return hit


class HeadsAlongside:
    """The Heads tab's default pooled layer, made from the chunks of a whole layer's attention the
    Attention tab computes anyway (its default view, a long run's layer in chunks of rows): the
    Heads tab opened next then reads it instead of a second pass over the same attention (1.9 s
    at T = 8,128 on two cores). Each chunk is max-pooled over column bins at once (the max of
    maxes: the same numbers as pooling the whole), the rows at the end; the rows the summary
    ahead pooled already (whole row bins) are taken from it."""

    def __init__(self, internals: Internals, key: Any, cells: int) -> None:
        self.internals, self.key = internals, key
        t = internals.n_positions
        self.rsize, self.ridx = bin_starts(t, cells)
        self.csize, self.cidx = bin_starts(t, cells)
        # (the row-pooled chunks of the summary ahead, part-way, and the first row it has not done)
        partial: tuple[list[torch.Tensor], int] = internals.cache.started(key) or ([], 0)
        self.done, self.first = partial
        self.rows: list[torch.Tensor] = []

    @classmethod
    def wanted(cls, internals: Internals, layer: int, start: int, end: int) -> HeadsAlongside | None:
        """One when a view's pass covers the whole layer in chunks and the result is not kept."""
        t = internals.n_positions
        if (start, end) != (0, t) or internals.n_heads * t * t * 4 <= attention_module.FULL_MATRIX_BYTES:
            return None  # (a short run's whole matrix is cached: the Heads tab reads it anyway)
        cells = head_cells(internals.n_heads, MultiHeadParams.model_fields["max_cells"].default)
        key = (internals.key, "pooled_heads", layer, cells)
        return None if key in internals.cache else cls(internals, key, cells)

    def add(self, a: int, w: torch.Tensor) -> None:
        """The weights [H, rows, T] of query rows a.., in order."""
        if a + w.shape[-2] > self.first:
            self.rows.append(pool_bins(w[:, max(0, self.first - a) :], 1, self.csize).cpu())

    def keep(self) -> None:
        pooled = torch.cat([*self.done, pool_bins(torch.cat(self.rows, dim=-2), self.rsize, 1)], dim=-2)
        self.internals.keep(self.key, (pooled, self.ridx, self.cidx), pooled.numel() * 4)
        self.internals.cache.finish(self.key)  # the summary, back from its pause, finds it kept


def warm_multi_head(internals: Internals, pause: Callable[[], None]) -> None:
    """The Heads tab's default layer, pooled before it asks."""
    cells = head_cells(internals.n_heads, MultiHeadParams.model_fields["max_cells"].default)
    pooled_heads(internals, first_attention_layer(internals), cells, pause)


# ----------------------------------------------------------------------------- head_entropy


class HeadEntropyParams(BaseModel):
    position: int | None = Field(default=None, ge=0, description="one query position; None = averaged over positions")
    max_queries: int | None = Field(
        default=None,
        ge=8,
        le=2048,
        description="averaged mode: at most this many query positions, evenly spaced (position 0 "
        "skipped); default 256, fewer past 2,048 positions (256·2,048/T, at least 128)",
    )


class HeadEntropyView(BaseModel):
    mode: Literal["position", "average"]
    position: int | None
    layers: int
    heads: int
    positions_used: int = Field(description="query positions averaged (1 in position mode)")
    sequence_length: int = Field(description="positions in the run (queries 1..T−1 can be averaged)")
    entropy: list[list[float] | None] = Field(
        description="[layer][head] attention entropy / log(visible keys): 0 = one key, 1 = uniform; "
        "None for a layer without attention"
    )
    missing_layers: dict[int, str] = Field(
        default_factory=dict, description="layers without attention to show (a hybrid's other mixers), and why"
    )


@register("head_entropy", "Head entropy", HeadEntropyParams, HeadEntropyView, needs_internals=True, uses=("attention",))
def head_entropy(ctx: ViewContext, p: HeadEntropyParams) -> HeadEntropyView:
    """L×H normalised attention entropy, for one query or averaged over (sampled) queries."""
    internals = ctx.require_internals()
    n_l, n_h = internals.n_layers, internals.n_heads
    missing = internals.missing_attention()
    if p.position is not None:
        pos = default_position(ctx, p.position)
        rows = internals.attention_row(pos)[:, :, : pos + 1]  # [L, H, keys]
        vis = torch.stack(
            [internals.visible_keys(layer, [pos]) if layer not in missing else torch.ones(1) for layer in range(n_l)]
        )  # [L, 1]
        ent = normalised_entropy(rows, vis)
        return HeadEntropyView(
            mode="position", position=pos, layers=n_l, heads=n_h, positions_used=1,
            sequence_length=internals.n_positions,
            entropy=_rows_of(ent, missing), missing_layers=missing,
        )  # fmt: skip
    positions = sampled_queries(internals.n_positions, p.max_queries)
    out = torch.zeros(n_l, n_h)
    if positions:  # the same pass as head health's scores (shared through the cache)
        out = head_scores(internals, internals.ids, positions)[0][:, :, 3]
    return HeadEntropyView(
        mode="average", position=None, layers=n_l, heads=n_h, positions_used=len(positions),
        sequence_length=internals.n_positions,
        entropy=_rows_of(out, missing), missing_layers=missing,
    )  # fmt: skip


def _rows_of(values: torch.Tensor, missing: dict[int, str]) -> list[list[float] | None]:
    """[L][H] rounded, None for the layers without attention."""
    return [None if layer in missing else round4(row) for layer, row in enumerate(values)]


# ----------------------------------------------------------------------------- head_health


class HeadHealthParams(BaseModel):
    probe: bool = Field(
        default=False,
        description="measure on N random tokens repeated twice instead of the run itself",
    )
    probe_len: int = Field(default=32, ge=4, le=256, description="N, the random half of the probe")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="seed of the probe's random tokens")
    max_queries: int | None = Field(
        default=None,
        ge=8,
        le=2048,
        description="run mode: at most this many query positions, evenly spaced; default 256, fewer past "
        "2,048 positions (256·2,048/T, at least 128)",
    )


class HeadScore(BaseModel):
    layer: int
    head: int
    sink: float = Field(description="mean attention on position 0")
    previous: float = Field(description="mean attention on the previous position")
    induction: float | None = Field(
        description="mean attention on the token after the current token's earlier occurrences; "
        "None when no query has an earlier occurrence"
    )
    entropy: float = Field(description="mean normalised entropy (0 = one key, 1 = uniform)")
    label: HeadLabel


class HeadHealthView(BaseModel):
    source: Literal["run", "probe"]
    layers: int
    heads: int
    sequence_length: int = Field(description="length of the sequence measured (run or probe)")
    positions_used: int
    induction_positions: int = Field(description="queries that had an earlier occurrence of their token")
    thresholds: dict[str, float] = Field(
        description="label rule: the passing score furthest above its threshold; else focused "
        "(entropy below focused_max_entropy) or diffuse"
    )
    scores: list[HeadScore] = Field(description="one per (layer, head) of the layers with attention, layer-major")
    missing_layers: dict[int, str] = Field(
        default_factory=dict, description="layers without attention to show (a hybrid's other mixers), and why"
    )


def label_head(sink: float, previous: float, induction: float | None, entropy: float) -> HeadLabel:
    """The rule in the module docstring."""
    candidates: list[tuple[float, HeadLabel]] = [
        (sink / SINK_MIN, "sink"),
        (previous / PREVIOUS_MIN, "previous-token"),
        ((induction or 0.0) / INDUCTION_MIN, "induction"),
    ]
    ratio, label = max(candidates, key=lambda c: c[0])
    if ratio >= 1.0:
        return label
    return "focused" if entropy < FOCUSED_MAX_ENTROPY else "diffuse"


def induction_targets(ids: list[int], positions: list[int]) -> dict[int, list[int]]:
    """For each query q: keys j + 1 with ids[j] == ids[q] and j + 1 < q (where induction looks)."""
    seen: dict[int, list[int]] = {}
    for j, t in enumerate(ids):
        seen.setdefault(t, []).append(j)
    return {q: [j + 1 for j in seen[ids[q]] if j + 1 < q] for q in positions}


def probe_ids(internals: Internals, n: int, seed: int) -> list[int]:
    """BOS (when the tokenizer has one) + N random ordinary tokens + the same N again."""
    tok = internals.loaded.tokenizer
    vocab = int(internals.loaded.info.vocab_size)
    special = set(getattr(tok, "all_special_ids", []) or [])
    g = torch.Generator().manual_seed(seed)
    low = min(vocab - 1, max(3, vocab // 100))  # skip the first ids: often control tokens
    half = [t for t in torch.randint(low, vocab, (n * 2,), generator=g).tolist() if t not in special][:n]
    bos = getattr(tok, "bos_token_id", None)
    return ([bos] if bos is not None else []) + half + half


def head_scores(
    internals: Internals, ids: list[int], positions: list[int], pause: Callable[[], None] = lambda: None
) -> tuple[torch.Tensor, int]:
    """[L, H, 4] (sink, previous, induction or nan, entropy) averaged over query `positions`, and
    how many queries had an earlier occurrence of their token. One pass over each layer's rows
    serves head entropy and head health alike; each layer's scores are kept with the run, so a
    view asked while the pass runs ahead (analyses/warm.py) reuses the layers done. `pause()`
    runs between layers."""
    n_l, n_h = internals.n_layers, internals.n_heads
    out = torch.zeros(n_l, n_h, 4)
    targets = induction_targets(ids, positions)
    n_ind = sum(1 for q in positions if targets[q])
    which = hashlib.sha1(repr(positions).encode()).hexdigest()
    for layer in internals.attention_layers():
        key = (internals.key, "head_scores", which, layer)
        sums = internals.cache.get(key)
        if sums is None:
            sums = _layer_sums(internals, layer, positions, targets)
            internals.keep(key, sums, sums.numel() * 4)
        out[layer, :, 0] = sums[:, 0] / len(positions)
        out[layer, :, 1] = sums[:, 1] / len(positions)
        out[layer, :, 2] = sums[:, 2] / n_ind if n_ind else float("nan")
        out[layer, :, 3] = sums[:, 3] / len(positions)
        pause()
    return out, n_ind


def warm_head_scores(internals: Internals, pause: Callable[[], None]) -> None:
    """Head entropy's and head health's default pass, computed before the Heads tab asks."""
    positions = sampled_queries(internals.n_positions, None)
    if positions:
        head_scores(internals, internals.ids, positions, pause)


def _layer_sums(internals: Internals, layer: int, positions: list[int], targets: dict[int, list[int]]) -> torch.Tensor:
    """[H, 4] one layer's sums over the query positions: weight on the first key, on the
    previous one, on the induction keys, and the normalised entropy."""
    acc: torch.Tensor | None = None
    for part, w in attention_rows(internals, layer, positions, pad=False):  # [H, n, keys up to the last query]
        dev = w.device  # summed where the attention is (a GPU's: no [H, n, T] copy to the host)
        if acc is None:
            acc = torch.zeros(internals.n_heads, 4, device=dev)
        idx = torch.arange(len(part), device=dev)
        qs = torch.tensor(part, device=dev)
        acc[:, 0] += w[:, :, 0].sum(-1)
        acc[:, 1] += w[:, idx, qs - 1].sum(-1)
        rows = [i for i, q in enumerate(part) for _ in targets[q]]
        keys = [k for q in part for k in targets[q]]
        if rows:  # each query's weight on its induction keys (a gather, not a product over [H, n, T])
            at = (torch.tensor(rows, dtype=torch.long, device=dev), torch.tensor(keys, dtype=torch.long, device=dev))
            acc[:, 2] += w[:, at[0], at[1]].sum(-1)
        visible = internals.visible_keys(layer, part).to(dev)
        acc[:, 3] += normalised_entropy(w, visible[None, :]).sum(-1)
    return acc.cpu() if acc is not None else torch.zeros(internals.n_heads, 4)


@register("head_health", "Head health", HeadHealthParams, HeadHealthView, needs_internals=True, uses=("attention",))
def head_health(ctx: ViewContext, p: HeadHealthParams) -> HeadHealthView:
    """Sink / previous-token / induction scores and a label for every head."""
    internals = ctx.require_internals()
    if p.probe:
        ids = probe_ids(internals, p.probe_len, p.seed)
        target = Internals(internals.loaded, ids, cache=internals.cache)
        positions = list(range(1, len(ids)))
        source: Literal["run", "probe"] = "probe"
    else:
        ids, target, source = internals.ids, internals, "run"
        positions = sampled_queries(len(ids), p.max_queries)
    if not positions:
        scores = torch.zeros(internals.n_layers, internals.n_heads, 4)
        scores[:, :, 2] = float("nan")
        n_ind = 0
    else:
        scores, n_ind = head_scores(target, ids, positions)
    items = []
    for layer in target.attention_layers():
        for head in range(target.n_heads):
            sink, prev, ind, ent = (float(v) for v in scores[layer, head])
            induction = None if math.isnan(ind) else ind
            items.append(
                HeadScore(
                    layer=layer,
                    head=head,
                    sink=round4(sink),
                    previous=round4(prev),
                    induction=round4(induction) if induction is not None else None,
                    entropy=round4(ent),
                    label=label_head(sink, prev, induction, ent),
                )
            )
    return HeadHealthView(
        source=source,
        layers=target.n_layers,
        heads=target.n_heads,
        sequence_length=len(ids),
        positions_used=len(positions),
        induction_positions=n_ind,
        thresholds={
            "sink": SINK_MIN,
            "previous": PREVIOUS_MIN,
            "induction": INDUCTION_MIN,
            "focused_max_entropy": FOCUSED_MAX_ENTROPY,
        },
        scores=items,
        missing_layers=target.missing_attention(),
    )
