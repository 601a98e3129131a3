"""Build a Trace for view tests without the generation loop.

`make_trace(loaded, ids, prompt_len)` runs one forward over `ids` and fills every Token with
plausible statistics (raw probability, rank, entropy, logit gaps, top candidates) of the token
given its prefix. Generated tokens are treated as greedy picks (sampled_prob 1 for the argmax,
0 otherwise). Real traces come from llmvis.generation; this is only a test fixture.
"""

from __future__ import annotations

import torch

from llmvis.tokens import Labeler
from llmvis.trace import Candidate, GenerationRequest, SamplingParams, Token, TokenStats, Trace

TOP_N = 5


def cancel_after(events, cancel, tokens: int) -> None:
    """Consume a run's events, setting `cancel` once `tokens` token events have arrived."""
    seen = 0
    for event in events:
        if event.type == "token":
            seen += 1
            if seen == tokens:
                cancel.set()


@torch.no_grad()
def _logits(loaded, ids: list[int]) -> torch.Tensor:
    """logits: [T, V] of one forward of the unmodified model (its scales and soft-cap included)."""
    return loaded.model(input_ids=torch.tensor([ids], device=loaded.device)).logits[0].float().cpu()


def make_trace(loaded, ids: list[int], prompt_len: int, *, top_n: int = TOP_N) -> Trace:
    """A Trace of `ids` (first `prompt_len` are prompt) with stats from one teacher-forced forward."""
    if not 0 < prompt_len <= len(ids):
        raise ValueError("need 0 < prompt_len <= len(ids)")
    tok = loaded.tokenizer
    label = Labeler(tok)
    logits = _logits(loaded, ids)
    logp = torch.log_softmax(logits, dim=-1)
    k = max(2, top_n)
    top_v, top_i = logits.topk(k, dim=-1)  # [T, k]
    top_p = logp.gather(-1, top_i).exp()
    chosen = torch.tensor([*ids[1:], ids[-1]])  # token predicted at each position
    chosen_logit = logits.gather(-1, chosen[:, None])[:, 0]
    rank = (logits > chosen_logit[:, None]).sum(-1).tolist()
    prob = logp.gather(-1, chosen[:, None])[:, 0].exp().tolist()
    entropy = (-(logp.exp() * logp).sum(-1)).tolist()
    gap = (top_v[:, 0] - top_v[:, 1]).tolist()
    gap1 = (top_v[:, 0] - chosen_logit).tolist()
    tv, ti, tp = top_v.tolist(), top_i.tolist(), top_p.tolist()
    tokens: list[Token] = []
    for pos, tid in enumerate(ids):
        generated = pos >= prompt_len
        stats = None
        if pos > 0:
            r = pos - 1
            argmax = ti[r][0]
            stats = TokenStats(
                raw_prob=prob[r],
                sampled_prob=(1.0 if tid == argmax else 0.0) if generated else None,
                rank=rank[r],
                raw_entropy=entropy[r],
                sampled_entropy=0.0 if generated else None,
                logit_gap=gap[r],
                gap_to_top1=gap1[r],
                top=[
                    Candidate(
                        id=i,
                        label=label(i),
                        logit=v,
                        raw_prob=pr,
                        sampled_prob=(1.0 if i == argmax else 0.0) if generated else None,
                    )
                    for v, i, pr in zip(tv[r][:top_n], ti[r][:top_n], tp[r][:top_n], strict=True)
                ],
            )
        tokens.append(
            Token(
                position=pos,
                id=int(tid),
                text=tok.decode([int(tid)]),
                label=label(int(tid)),
                kind="generated" if generated else "prompt",
                role="assistant" if generated else "user",
                stats=stats,
            )
        )
    params = SamplingParams(
        temperature=0.0, top_k=None, top_p=1.0, max_new_tokens=max(1, len(ids) - prompt_len), seed=0, top_n=top_n
    )
    request = GenerationRequest(mode="completion", prompt=tok.decode(ids[:prompt_len]), params=params)
    return Trace(request=request, params=params, model=loaded.info, tokens=tokens, prompt_len=prompt_len)


def random_ids(loaded, n: int, seed: int = 0) -> list[int]:
    """`n` random token ids (avoiding the first few special ids) for length/size tests."""
    g = torch.Generator().manual_seed(seed)
    vocab = int(loaded.info.vocab_size)
    return torch.randint(3, vocab, (n,), generator=g).tolist()


def view_context(loaded, ids: list[int], prompt_len: int):
    """A ViewContext over a made-up trace of `ids`, with lazy internals of the same run."""
    from llmvis.analyses.registry import ViewContext
    from llmvis.internals import Internals

    return ViewContext(make_trace(loaded, ids, prompt_len), loaded, Internals(loaded, ids))
