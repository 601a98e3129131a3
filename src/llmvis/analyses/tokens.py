"""View `tokens`: what the model considered at one position, and per-token series for the run.

Reads the Trace only (no weights needed): the statistics were recorded during generation, so
the probabilities shown are the ones the token was actually sampled with, not a rerun's.
The per-token arrays are indexed by position (length T, None at position 0, which has no
prefix to predict it from) and drive the confidence/entropy charts.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from llmvis.analyses.common import check_position, round4
from llmvis.analyses.registry import ViewContext, register
from llmvis.trace import Token

SortKey = Literal["position", "entropy", "probability"]


class TokensParams(BaseModel):
    position: int | None = Field(
        default=None,
        ge=0,
        description="position whose candidates are shown; None = first generated token (else the last)",
    )
    top_n: int = Field(default=10, ge=1, le=50, description="candidates shown (at most those recorded)")
    sort: SortKey = Field(
        default="position",
        description="order of `order`: position (ascending), entropy (highest first), "
        "probability (lowest chosen-token probability first)",
    )
    reverse: bool = Field(default=False, description="flip the sort direction")


class CandidateView(BaseModel):
    id: int
    label: str
    logit: float
    raw_prob: float
    sampled_prob: float | None = Field(description="None for prompt tokens (nothing was sampled)")
    chosen: bool = Field(description="this candidate is the token at the position")


class ChosenView(BaseModel):
    id: int
    label: str
    kind: Literal["prompt", "generated"]
    raw_prob: float | None
    sampled_prob: float | None
    rank: int | None = Field(description="0 = the model's top choice")
    logit: float | None = Field(description="its raw logit (top-1 logit minus its gap to top-1)")
    raw_entropy: float | None
    sampled_entropy: float | None
    logit_gap: float | None = Field(description="top-1 logit minus top-2 logit at this position")
    in_top: bool = Field(description="the token is among the returned candidates")


class TokensView(BaseModel):
    position: int
    prompt_len: int
    chosen: ChosenView
    candidates: list[CandidateView]
    confidence: list[float | None] = Field(description="[T] raw probability of the chosen token")
    sampled_confidence: list[float | None] = Field(
        description="[T] probability after temperature/top-k/top-p (generated tokens only)"
    )
    entropy: list[float | None] = Field(description="[T] raw entropy in nats (the entropy curve)")
    entropy_upper: list[float | None] = Field(
        description="[T] remote engines: the entropy's upper bound (`entropy` is then its lower bound); "
        "None where the entropy is exact"
    )
    sort: SortKey
    order: list[int] = Field(description="positions sorted by `sort`; positions without stats last")


def _default_position(tokens: list[Token], prompt_len: int) -> int:
    return prompt_len if prompt_len < len(tokens) else len(tokens) - 1


def _chosen(tok: Token, candidates: list[CandidateView]) -> ChosenView:
    s = tok.stats
    logit = None
    if s is not None and s.top:
        logit = s.top[0].logit - s.gap_to_top1
    return ChosenView(
        id=tok.id,
        label=tok.label,
        kind=tok.kind,
        raw_prob=round4(s.raw_prob) if s else None,
        sampled_prob=round4(s.sampled_prob) if s and s.sampled_prob is not None else None,
        rank=s.rank if s else None,
        logit=round4(logit) if logit is not None else None,
        raw_entropy=round4(s.raw_entropy) if s else None,
        sampled_entropy=round4(s.sampled_entropy) if s and s.sampled_entropy is not None else None,
        logit_gap=round4(s.logit_gap) if s else None,
        in_top=any(c.chosen for c in candidates),
    )


def sort_positions(values: list[float | None], sort: SortKey, reverse: bool) -> list[int]:
    """Positions ordered by `values` (see TokensParams.sort); None values always go last."""
    n = len(values)
    if sort == "position":
        order = list(range(n))
        return order[::-1] if reverse else order
    known = [i for i in range(n) if values[i] is not None]
    descending = (sort == "entropy") != reverse
    known.sort(key=lambda i: (-values[i] if descending else values[i], i))  # type: ignore[operator]
    return known + [i for i in range(n) if values[i] is None]


def _opt(values: list[float | None]) -> list[float | None]:
    """Round a series in one vectorised call; None (no stats) stays None."""
    return round4([math.nan if v is None else v for v in values])


@register("tokens", "Tokens", TokensParams, TokensView, needs_internals=False)
def tokens_view(ctx: ViewContext, p: TokensParams) -> TokensView:
    """Top-N candidates at one position plus the confidence/entropy series. The token chips'
    colour modes are not here: the web app derives them from the trace (web/src/colors.ts)."""
    trace = ctx.trace
    tokens = trace.tokens
    pos = check_position(ctx, _default_position(tokens, trace.prompt_len) if p.position is None else p.position)
    tok = tokens[pos]
    candidates = [
        CandidateView(
            id=c.id,
            label=c.label,
            logit=round4(c.logit),
            raw_prob=round4(c.raw_prob),
            sampled_prob=None if c.sampled_prob is None else round4(c.sampled_prob),
            chosen=c.id == tok.id and (c.id >= 0 or c.label == tok.label),  # -1: unnamed remote pieces
        )
        for c in (tok.stats.top[: p.top_n] if tok.stats else [])
    ]
    prob = [t.stats.raw_prob if t.stats else None for t in tokens]
    ent = [t.stats.raw_entropy if t.stats else None for t in tokens]
    sampled = [t.stats.sampled_prob if t.stats else None for t in tokens]
    sort_values = ent if p.sort == "entropy" else prob
    return TokensView(
        position=pos,
        prompt_len=trace.prompt_len,
        chosen=_chosen(tok, candidates),
        candidates=candidates,
        confidence=_opt(prob),
        sampled_confidence=_opt(sampled),
        entropy=_opt(ent),
        entropy_upper=_opt([t.stats.entropy_upper if t.stats else None for t in tokens]),
        sort=p.sort,
        order=sort_positions(sort_values, p.sort, p.reverse),
    )
