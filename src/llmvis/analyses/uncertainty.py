"""View `uncertainty`: where the model hesitated, ranked three ways, with the reasons merged.

Reads the Trace only. A position is a hotspot when it is among the `limit` highest-entropy
positions, the `limit` least confident ones (lowest raw probability of the chosen token), or
a token that was not the model's top-1 choice (ordered by its logit gap to the top-1).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from llmvis.analyses.common import round4
from llmvis.analyses.registry import ViewContext, ViewParamError, register
from llmvis.trace import Token

Reason = Literal["high_entropy", "low_confidence", "not_top1"]


class UncertaintyParams(BaseModel):
    limit: int = Field(default=20, ge=1, le=200, description="entries per ranking and in `hotspots`")
    scope: Literal["generated", "all"] = Field(
        default="generated", description="rank generated tokens only, or prompt tokens too"
    )


class Hotspot(BaseModel):
    position: int
    label: str
    kind: Literal["prompt", "generated"]
    entropy: float = Field(description="raw entropy in nats (a lower bound for a remote engine's token)")
    entropy_upper: float | None = Field(default=None, description="remote engines: the entropy's upper bound")
    probability: float = Field(description="raw probability of the token")
    sampled_probability: float | None
    rank: int = Field(description="0 = the model's top choice")
    gap_to_top1: float = Field(description="top-1 logit minus this token's logit")
    top1: str | None = Field(description="label of the model's top choice at this position")
    reasons: list[Reason]
    detail: str = Field(description="the reasons in words")


class UncertaintyView(BaseModel):
    scope: Literal["generated", "all"]
    considered: int = Field(description="positions ranked (those in scope with statistics)")
    not_top1_count: int
    mean_entropy: float | None
    by_entropy: list[Hotspot] = Field(description="highest entropy first")
    by_low_confidence: list[Hotspot] = Field(description="lowest chosen-token probability first")
    not_top1: list[Hotspot] = Field(description="tokens that were not top-1, largest gap first")
    hotspots: list[Hotspot] = Field(description="union of the three, most reasons first, then entropy")


def _detail(tok: Token, reasons: list[Reason]) -> str:
    s = tok.stats
    assert s is not None
    words = []
    bounded = s.missing_mass is not None  # a remote engine's top-N only
    if "high_entropy" in reasons:
        words.append(f"high entropy ({'≥ ' if bounded else ''}{s.raw_entropy:.3g} nats)")
    if "low_confidence" in reasons:
        words.append(f"low confidence (p = {s.raw_prob:.3g})")
    if "not_top1" in reasons:
        top = f" instead of {s.top[0].label!r}" if s.top else ""
        what = "sampled" if tok.kind == "generated" else "prompt token"
        rank = f"≥ {s.rank}" if bounded and s.rank >= len(s.top) else str(s.rank)
        words.append(f"{what} rank {rank}{top}")
    return "; ".join(words)


def _hotspot(tok: Token, reasons: list[Reason]) -> Hotspot:
    s = tok.stats
    assert s is not None
    return Hotspot(
        position=tok.position,
        label=tok.label,
        kind=tok.kind,
        entropy=round4(s.raw_entropy),
        probability=round4(s.raw_prob),
        entropy_upper=None if s.entropy_upper is None else round4(s.entropy_upper),
        sampled_probability=None if s.sampled_prob is None else round4(s.sampled_prob),
        rank=s.rank,
        gap_to_top1=round4(s.gap_to_top1),
        top1=s.top[0].label if s.top else None,
        reasons=reasons,
        detail=_detail(tok, reasons),
    )


@register("uncertainty", "Uncertainty hotspots", UncertaintyParams, UncertaintyView, needs_internals=False)
def uncertainty_view(ctx: ViewContext, p: UncertaintyParams) -> UncertaintyView:
    """Rank positions by entropy, low confidence and not-top-1, and merge them into hotspots."""
    trace = ctx.trace
    if not trace.tokens:
        raise ViewParamError("this run has no tokens")
    start = trace.prompt_len if p.scope == "generated" else 0
    rows = [(t, t.stats) for t in trace.tokens[start:] if t.stats is not None]
    by_ent = [t for t, _ in sorted(rows, key=lambda r: (-r[1].raw_entropy, r[0].position))]
    by_conf = [t for t, _ in sorted(rows, key=lambda r: (r[1].raw_prob, r[0].position))]
    missed = [(t, s) for t, s in rows if s.rank != 0]
    by_gap = [t for t, _ in sorted(missed, key=lambda r: (-r[1].gap_to_top1, r[0].position))]
    by_ent, by_conf, by_gap = by_ent[: p.limit], by_conf[: p.limit], by_gap[: p.limit]

    reasons: dict[int, list[Reason]] = {}
    groups: tuple[tuple[Reason, list[Token]], ...] = (
        ("high_entropy", by_ent),
        ("low_confidence", by_conf),
        ("not_top1", by_gap),
    )
    for reason, group in groups:
        for t in group:
            reasons.setdefault(t.position, []).append(reason)
    entropy = {t.position: s.raw_entropy for t, s in rows}
    merged = sorted(reasons, key=lambda i: (-len(reasons[i]), -entropy[i], i))[: p.limit]

    def full(t: Token) -> Hotspot:
        return _hotspot(t, reasons[t.position])

    mean = sum(entropy.values()) / len(rows) if rows else None
    return UncertaintyView(
        scope=p.scope,
        considered=len(rows),
        not_top1_count=len(missed),
        mean_entropy=None if mean is None else round4(mean),
        by_entropy=[full(t) for t in by_ent],
        by_low_confidence=[full(t) for t in by_conf],
        not_top1=[full(t) for t in by_gap],
        hotspots=[full(trace.tokens[i]) for i in merged],
    )
