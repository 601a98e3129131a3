"""Per-token statistics computed on the device from the logits alone.

Each generated token's statistics are packed into one row of a preallocated device buffer,
so a step needs no host round-trip except the chosen id; rows are fetched in batches.
Row layout (floats; ids are exact in fp32 below 2**24):
    [raw_prob, sampled_prob, rank, raw_entropy, sampled_entropy, logit_gap, gap_to_top1,
     top_ids(N), top_logits(N), top_raw_probs(N), top_sampled_probs(N)]
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from pydantic import TypeAdapter

from llmvis.trace import TokenStats

# the row's scalar columns, then four groups of top_n columns
RAW_PROB, SAMPLED_PROB, RANK, RAW_ENTROPY, SAMPLED_ENTROPY, LOGIT_GAP, GAP_TO_TOP1 = range(7)
SCALARS = 7
TOP_IDS, TOP_LOGITS, TOP_RAW_PROBS, TOP_SAMPLED_PROBS = range(4)


def row_width(top_n: int) -> int:
    return SCALARS + 4 * top_n


def top_columns(group: int, top_n: int, k: int | None = None) -> slice:
    """The columns of one top-N group (TOP_IDS…), its first `k` (default all) candidates."""
    start = SCALARS + group * top_n
    return slice(start, start + (top_n if k is None else k))


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of distributions given as log-probabilities [..., V] (-inf allowed)."""
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)


def step_row(raw: torch.Tensor, processed: torch.Tensor, chosen: torch.Tensor, top_n: int, out: torch.Tensor) -> None:
    """Fill `out` [row_width] with the statistics of one step.

    raw, processed: [V] fp32 logits before / after temperature, top-k, top-p (the same tensor
    when greedy); chosen: [] long. Raw and processed go through the vocab-sized kernels together,
    since on a small CPU the number of such kernels, not their size, sets the cost.
    """
    if processed is raw:
        logp = torch.log_softmax(raw, -1)[None].expand(2, -1)
    else:
        logp = torch.log_softmax(torch.stack([raw, processed]), -1)  # [2, V]
    entropy = _entropy(logp[:1] if processed is raw else logp)
    top_logits, top_ids = raw.topk(min(top_n + 1, raw.shape[-1]))
    k = min(top_n, top_ids.shape[0])
    gather = torch.cat([chosen.view(1), top_ids[:k]])
    probs = logp[:, gather].exp()  # [2, 1 + k]: chosen first, then the candidates
    chosen_logit = raw[chosen]
    second = top_logits[1] if top_logits.shape[0] > 1 else top_logits[0]
    out[RAW_PROB] = probs[0, 0]
    out[SAMPLED_PROB] = probs[1, 0]
    out[RANK] = (raw > chosen_logit).sum()
    out[RAW_ENTROPY] = entropy[0]
    out[SAMPLED_ENTROPY] = entropy[-1]
    out[LOGIT_GAP] = top_logits[0] - second
    out[GAP_TO_TOP1] = top_logits[0] - chosen_logit
    out[top_columns(TOP_IDS, top_n, k)] = top_ids[:k].to(out.dtype)
    out[top_columns(TOP_LOGITS, top_n, k)] = top_logits[:k]
    out[top_columns(TOP_RAW_PROBS, top_n, k)] = probs[0, 1:]
    out[top_columns(TOP_SAMPLED_PROBS, top_n, k)] = probs[1, 1:]


def _row_fields(row: list[float], top_n: int, label: Callable[[int], str], sampled: bool) -> dict[str, Any]:
    ids, logits = row[top_columns(TOP_IDS, top_n)], row[top_columns(TOP_LOGITS, top_n)]
    raw, sampled_probs = row[top_columns(TOP_RAW_PROBS, top_n)], row[top_columns(TOP_SAMPLED_PROBS, top_n)]
    top = [
        {
            "id": int(ids[i]),
            "label": label(int(ids[i])),
            "logit": logits[i],
            "raw_prob": raw[i],
            "sampled_prob": sampled_probs[i] if sampled else None,
        }
        for i in range(top_n)
        if logits[i] == logits[i]  # NaN marks an unused slot (vocab < top_n)
    ]
    return {
        "raw_prob": row[RAW_PROB],
        "sampled_prob": row[SAMPLED_PROB] if sampled else None,
        "rank": int(row[RANK]),
        "raw_entropy": row[RAW_ENTROPY],
        "sampled_entropy": row[SAMPLED_ENTROPY] if sampled else None,
        "logit_gap": row[LOGIT_GAP],
        "gap_to_top1": row[GAP_TO_TOP1],
        "top": top,
    }


def row_to_stats(row: list[float], top_n: int, label: Callable[[int], str], sampled: bool = True) -> TokenStats:
    """Unpack one fetched row into TokenStats; `label(id)` names candidate tokens."""
    return TokenStats.model_validate(_row_fields(row, top_n, label, sampled))


_STATS_LIST = TypeAdapter(list[TokenStats])


def rows_to_stats(
    rows: list[list[float]], top_n: int, label: Callable[[int], str], sampled: bool = True
) -> list[TokenStats]:
    """Many rows at once (a prompt's): one validation call, with the cyclic GC paused."""
    with gc_paused():
        return _STATS_LIST.validate_python([_row_fields(row, top_n, label, sampled) for row in rows])


@contextmanager
def gc_paused() -> Iterator[None]:
    """For bulk conversions: a long prompt makes tens of thousands of small objects, and the
    collections they trigger scan the whole heap (measured: 4x the time of the conversion)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


CPU_ROW_BLOCK = 32  # rows per pass on CPU: 32 x vocab fp32 stays in cache (4x faster at 49k)


def prompt_rows(logits: torch.Tensor, next_ids: torch.Tensor, top_n: int) -> torch.Tensor:
    """Statistics of known next tokens given their prefix, for a chunk of prompt positions.

    logits: [C, V] fp32 at positions i; next_ids: [C] the tokens at positions i + 1.
    Returns [C, row_width] (sampled columns repeat the raw ones; callers drop them).
    """
    if logits.device.type != "cpu" or logits.shape[0] <= CPU_ROW_BLOCK:
        return _prompt_block(logits, next_ids, top_n)
    return torch.cat(
        [
            _prompt_block(logits[i : i + CPU_ROW_BLOCK], next_ids[i : i + CPU_ROW_BLOCK], top_n)
            for i in range(0, logits.shape[0], CPU_ROW_BLOCK)
        ]
    )


def known_rows(logits: torch.Tensor, ids: torch.Tensor, start: int, top_n: int) -> torch.Tensor:
    """prompt_rows for positions start.. of the known ids, given their logits [C, V]; the last
    known position has no next token, so a chunk that ends there gives one row fewer."""
    targets = ids[start + 1 : start + 1 + logits.shape[0]].to(logits.device)
    return prompt_rows(logits[: targets.shape[0]], targets, top_n)


def _prompt_block(logits: torch.Tensor, next_ids: torch.Tensor, top_n: int) -> torch.Tensor:
    """prompt_rows for one block. This runs over every prompt position, so it makes few passes
    over [C, V] and allocates one temporary: with p = e / Z, e = exp(x - max), the entropy is
    max + log Z - (e · x) / Z."""
    k = min(top_n + 1, logits.shape[-1])
    top_logits, top_ids = logits.topk(k, dim=-1)
    top1 = top_logits[:, :1]
    e = (logits - top1).exp_()
    z = e.sum(-1)
    expected = torch.linalg.vecdot(e, logits) / z
    entropy = (top1[:, 0] + z.log() - expected).clamp_min(0.0)
    chosen_logit = logits.gather(1, next_ids[:, None])[:, 0]
    chosen_p = e.gather(1, next_ids[:, None])[:, 0] / z
    second = top_logits[:, 1] if k > 1 else top_logits[:, 0]
    rows = torch.full((logits.shape[0], row_width(top_n)), float("nan"), device=logits.device)
    rows[:, RAW_PROB] = chosen_p
    rows[:, SAMPLED_PROB] = chosen_p
    rows[:, RANK] = (logits > chosen_logit[:, None]).sum(-1)
    rows[:, RAW_ENTROPY] = entropy
    rows[:, SAMPLED_ENTROPY] = entropy
    rows[:, LOGIT_GAP] = top_logits[:, 0] - second
    rows[:, GAP_TO_TOP1] = top_logits[:, 0] - chosen_logit
    n = min(top_n, k)
    ids = top_ids[:, :n]
    rows[:, top_columns(TOP_IDS, top_n, n)] = ids.float()
    rows[:, top_columns(TOP_LOGITS, top_n, n)] = top_logits[:, :n]
    probs = e.gather(1, ids) / z[:, None]
    rows[:, top_columns(TOP_RAW_PROBS, top_n, n)] = probs
    rows[:, top_columns(TOP_SAMPLED_PROBS, top_n, n)] = probs
    return rows
