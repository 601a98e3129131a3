"""Token statistics from what an engine returns: the chosen token's logprob and the top-N.

A remote engine reports N candidates, not the distribution, so the entropy is known only within
bounds. With p_1..p_k the known probabilities (the candidates and the chosen token), the missing
mass m = 1 - sum(p) lies on the V - k other tokens, none more probable than the least probable
candidate c. The entropy is smallest when m is packed into as few tokens as possible (each at
c), largest when it is spread evenly; both bounds are exact for the information given.
Log-probabilities serve as logits: they differ from the raw logits by one constant per step, so
probabilities, gaps and ranks come out the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmvis.trace import Candidate, TokenStats, Trace


@dataclass(frozen=True)
class Returned:
    """One token as the engine named it, mapped to the local vocabulary (id -1: unknown)."""

    id: int
    label: str
    logprob: float


def _plogp(p: float) -> float:
    return -p * math.log(p) if p > 0 else 0.0


def entropy_bounds(top: list[float], vocab: int, extra: list[float] | None = None) -> tuple[float, float, float]:
    """(lower, upper, missing mass) of the entropy in nats, given the probabilities of the top
    candidates and of `extra` tokens known to lie below them (the chosen token, when it is not
    among the top), out of `vocab` tokens."""
    known = [p for p in [*top, *(extra or [])] if p > 0]
    base = sum(_plogp(p) for p in known)
    missing = max(0.0, 1.0 - sum(known))
    others = max(0, vocab - len(known))
    if missing <= 1e-9 or others == 0 or not top:
        return base, base, missing
    cap = min(min(p for p in top if p > 0), missing)  # no other token beats the last candidate
    full = min(others, int(missing / cap))
    rest = missing - full * cap
    lower = base + full * _plogp(cap) + _plogp(min(rest, cap))
    upper = base + missing * math.log(others / missing)
    return lower, max(upper, lower), missing


def remote_stats(chosen: Returned, top: list[Returned], vocab: int, n: int | None = None) -> TokenStats:
    """TokenStats of one generated token; `top` as the engine listed it (any order). `n` is the
    number of candidates asked for: llama.cpp adds the chosen token when it is not among them,
    and that token must not count as a top candidate (it is not the n-th most likely)."""
    ranked = sorted({t.label if t.id < 0 else t.id: t for t in top}.values(), key=lambda t: -t.logprob)
    beyond = ranked[n:] if n is not None else []
    ranked = ranked[:n] if n is not None else ranked
    in_top = any(_same(t, chosen) for t in ranked)
    extra = [t for t in beyond if not _same(t, chosen)] + ([] if in_top else [chosen])
    lower, upper, missing = entropy_bounds(
        [math.exp(t.logprob) for t in ranked], vocab, [math.exp(t.logprob) for t in extra]
    )
    rank = next((i for i, t in enumerate(ranked) if _same(t, chosen)), len(ranked))
    first = ranked[0].logprob if ranked else chosen.logprob
    second = ranked[1].logprob if len(ranked) > 1 else first
    return TokenStats(
        raw_prob=math.exp(chosen.logprob),
        rank=rank,
        raw_entropy=lower,
        entropy_upper=upper,
        missing_mass=missing,
        logit_gap=first - second,
        gap_to_top1=max(0.0, first - chosen.logprob),
        top=[Candidate(id=t.id, label=t.label, logit=t.logprob, raw_prob=math.exp(t.logprob)) for t in ranked],
    )


def inherited(parent: Trace, forced: list[int]) -> list[TokenStats | None]:
    """Statistics of a fork's forced tokens from its parent run on the engine (one per token).

    The engine returns none for text it is sent, but the parent saw the same prefix: a kept token
    has the parent's statistics, and the first new token its share of the parent's candidates there
    (if it was one of them). After that the prefix differs from the parent's, and nothing is known.
    """
    out: list[TokenStats | None] = []
    for offset, token_id in enumerate(forced):
        position = parent.prompt_len + offset
        if position >= len(parent.tokens) or parent.tokens[position].stats is None:
            break
        stats = parent.tokens[position].stats
        assert stats is not None
        if parent.tokens[position].id == token_id:
            out.append(stats)
            continue
        rank, candidate = next(((i, c) for i, c in enumerate(stats.top) if c.id == token_id), (-1, None))
        if candidate is not None:
            out.append(
                stats.model_copy(
                    update={
                        "raw_prob": candidate.raw_prob,
                        "sampled_prob": None,
                        "rank": rank,
                        "gap_to_top1": stats.top[0].logit - candidate.logit,
                    }
                )
            )
        break
    return out + [None] * (len(forced) - len(out))


def _same(a: Returned, b: Returned) -> bool:
    return a.id == b.id if a.id >= 0 and b.id >= 0 else a.label == b.label
