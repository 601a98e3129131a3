"""Helpers shared by every view: rounding, max-pooling big matrices, checking layer/position.

Views send only what a chart draws: numbers rounded to 4 significant digits (`round4`) and
matrices larger than a chart can show pooled into equal bins of consecutive positions
(`bin_starts`, `pool_bins`: max keeps a sharp attention peak visible where a mean would wash
it out). Parameter checks raise
`ViewParamError` with the allowed range so the server can answer 422 with a clear message.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from llmvis.analyses.registry import ViewContext, ViewParamError

SIG_DIGITS = 4


# 10**k as Python computes it (numpy's power differs in the last bit for large k), for both
# the array and the one-float path; beyond 1e308 a float overflows: larger shifts use 1e308
_POW10 = [10.0**k for k in range(309)]
_POW10_ARRAY = np.array(_POW10)


def _round_array(a: np.ndarray, digits: int = SIG_DIGITS) -> np.ndarray:
    """Round a float64 array to `digits` significant digits (0, inf and nan pass through)."""
    a = np.asarray(a, dtype=np.float64)
    out = a.copy()
    finite = np.isfinite(a) & (a != 0)
    if finite.any():
        x = a[finite]
        exp = np.floor(np.log10(np.abs(x))).astype(np.int64)
        shift = digits - 1 - exp  # decimal places to keep
        # Multiply/divide by exact powers of ten so that results print short (0.1235, not 0.12350000001).
        pos = shift >= 0
        r = np.empty_like(x)
        scale_up = _POW10_ARRAY[np.minimum(shift[pos], 308)]
        r[pos] = np.round(x[pos] * scale_up) / scale_up
        scale_down = _POW10_ARRAY[-shift[~pos]]
        r[~pos] = np.round(x[~pos] / scale_down) * scale_down
        out[finite] = r
    return out


def _round_float(x: float, digits: int = SIG_DIGITS) -> float:
    """_round_array for one finite float, in plain Python: the views round thousands of
    scalars one by one (a graph's edges), where numpy's per-call cost (≈ 30 µs) added a tenth
    of a second. The same operations in the same float64 order, so the same result."""
    if x == 0:
        return x
    shift = digits - 1 - math.floor(float(np.log10(abs(x))))
    if shift >= 0:
        scale = _POW10[min(shift, 308)]
        return round(x * scale) / scale
    scale = _POW10[-shift]
    return round(x / scale) * scale


def round4(x: Any) -> Any:
    """4 significant digits; tensors/arrays/lists become nested python lists of floats.

    Non-finite values become None (JSON has no inf/nan). Ints and bools pass through.
    """
    if isinstance(x, bool | int) or x is None:
        return x
    if isinstance(x, float):
        return _round_float(x) if math.isfinite(x) else None
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    if isinstance(x, list | tuple):
        if not x:
            return []
        if any(isinstance(v, list | tuple | torch.Tensor | np.ndarray) for v in x):
            return [round4(v) for v in x]
        x = np.asarray(x, dtype=np.float64)
    if isinstance(x, np.ndarray | np.generic):
        arr = _round_array(np.asarray(x, dtype=np.float64))
        if arr.ndim == 0:
            return round4(float(arr))
        if not np.isfinite(arr).all():
            obj = arr.astype(object)
            obj[~np.isfinite(arr)] = None
            return obj.tolist()
        return arr.tolist()
    raise TypeError(f"round4 cannot round {type(x).__name__}")


def bin_starts(n: int, max_cells: int) -> tuple[int, list[int]]:
    """(bin size, first source index of each bin) to cut `n` items into ≤ max_cells equal bins."""
    size = max(1, math.ceil(n / max(1, max_cells)))
    return size, list(range(0, n, size))


def n_layers(ctx: ViewContext) -> int:
    if ctx.internals is not None:
        return ctx.internals.n_layers
    return int(ctx.trace.model.layers)


def n_positions(ctx: ViewContext) -> int:
    return len(ctx.trace.tokens)


def check_layer(ctx: ViewContext, layer: int, *, allow_final: bool = False) -> int:
    """Validate a decoder layer index 0..L-1 (0..L when `allow_final`: the last layer's output)."""
    top = n_layers(ctx) if allow_final else n_layers(ctx) - 1
    if not 0 <= layer <= top:
        raise ViewParamError(f"layer {layer} is out of range: this model has layers 0..{top}")
    return int(layer)


def check_head(ctx: ViewContext, head: int) -> int:
    heads = int(ctx.trace.model.heads)
    if not 0 <= head < heads:
        raise ViewParamError(f"head {head} is out of range: this model has heads 0..{heads - 1}")
    return int(head)


def check_position(ctx: ViewContext, pos: int) -> int:
    """Validate a position 0..T-1 of the run."""
    t = n_positions(ctx)
    if t == 0:
        raise ViewParamError("this run has no tokens")
    if not 0 <= pos < t:
        raise ViewParamError(f"position {pos} is beyond the run: positions are 0..{t - 1}")
    return int(pos)


def default_position(ctx: ViewContext, pos: int | None) -> int:
    """`pos` checked, or the last position of the run when None."""
    return check_position(ctx, n_positions(ctx) - 1 if pos is None else pos)


def check_window(ctx: ViewContext, start: int | None, end: int | None) -> tuple[int, int]:
    """A half-open window [start, end) of positions; None means the run's start/end."""
    t = n_positions(ctx)
    s = 0 if start is None else start
    e = t if end is None else end
    if not (0 <= s < e <= t):
        raise ViewParamError(f"window [{s}, {e}) is not inside the run: need 0 <= start < end <= {t}")
    return s, e


def token_labels(ctx: ViewContext, indices: list[int] | range | None = None) -> list[str]:
    """Readable labels for the given positions (all positions when None)."""
    toks = ctx.trace.tokens
    if indices is None:
        return [t.label for t in toks]
    return [toks[i].label for i in indices]


def id_label(ctx: ViewContext, token_id: int) -> str:
    """Readable label of any token id (same labels as the trace's tokens)."""
    if ctx.loaded is None:
        return f"<{token_id}>"
    return ctx.loaded.labeler(int(token_id))


def check_token_id(ctx: ViewContext, token_id: int, what: str = "token_id") -> int:
    """Validate a token id against the model's vocabulary (its read-out's width)."""
    vocab = int(ctx.require_internals().lm_head.weight.shape[0])
    if not 0 <= token_id < vocab:
        raise ViewParamError(f"{what} {token_id} is out of range: the vocabulary is 0..{vocab - 1}")
    return int(token_id)


def objective_text(ctx: ViewContext, token_id: int, foil: int | None) -> str:
    """What a logit-explaining view explains: the target's logit, or its difference from the foil's."""
    target = f"logit({id_label(ctx, token_id)!r})"
    return target if foil is None else f"{target} − logit({id_label(ctx, foil)!r})"


def pool_bins(matrix: torch.Tensor, rsize: int, csize: int) -> torch.Tensor:
    """Max over consecutive blocks of `rsize` rows × `csize` cols of `matrix: [..., R, C]`."""
    rows, cols = matrix.shape[-2], matrix.shape[-1]
    nr, nc = math.ceil(rows / rsize), math.ceil(cols / csize)
    if rsize == 1 and csize == 1:
        return matrix
    m = matrix
    if nr * rsize != rows or nc * csize != cols:
        m = torch.nn.functional.pad(m, (0, nc * csize - cols, 0, nr * rsize - rows), value=float("-inf"))
    return m.reshape(*matrix.shape[:-2], nr, rsize, nc, csize).amax(dim=(-3, -1))
