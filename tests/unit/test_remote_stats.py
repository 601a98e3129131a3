"""Token statistics from an engine's top-N: exact where the information allows, bounds elsewhere."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmvis.remote.stats import Returned, entropy_bounds, remote_stats


def _entropy(p: torch.Tensor) -> float:
    return float(-(p * p.clamp_min(1e-300).log()).sum())


@settings(max_examples=200, deadline=None)
@given(
    logits=st.lists(st.floats(-8, 8, allow_nan=False), min_size=2, max_size=60),
    top_n=st.integers(1, 12),
    chosen_rank=st.integers(0, 59),
    llama_cpp_style=st.booleans(),
)
def test_bounds_contain_the_true_entropy(logits, top_n, chosen_rank, llama_cpp_style):
    """Also when the engine lists the chosen token among the candidates although it is not in the
    top-N (llama.cpp does): it must not lower the cap on the tokens not returned."""
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
    order = probs.argsort(descending=True).tolist()
    top = order[:top_n]
    chosen = order[min(chosen_rank, len(order) - 1)]
    listed = top + ([chosen] if llama_cpp_style and chosen not in top else [])
    stats = remote_stats(
        Returned(chosen, str(chosen), math.log(probs[chosen])),
        [Returned(i, str(i), math.log(probs[i])) for i in listed],
        vocab=len(logits),
        n=top_n,
    )
    true = _entropy(probs)
    assert stats.raw_entropy - 1e-9 <= true <= stats.entropy_upper + 1e-9
    known = set(top) | {chosen}
    assert abs(stats.missing_mass - (1 - float(probs[list(known)].sum()))) < 1e-9
    assert stats.rank == (top.index(chosen) if chosen in top else len(top))
    assert [c.id for c in stats.top] == top
    assert abs(stats.raw_prob - float(probs[chosen])) < 1e-12


def test_the_whole_distribution_gives_the_exact_entropy():
    probs = torch.softmax(torch.tensor([2.0, 1.0, 0.5, -1.0], dtype=torch.float64), 0)
    lower, upper, missing = entropy_bounds(probs.tolist(), vocab=4)
    assert missing < 1e-12
    assert abs(lower - _entropy(probs)) < 1e-12 and abs(upper - lower) < 1e-12


def test_gaps_come_from_logprobs_as_from_logits():
    """log-softmax shifts every logit by one constant: gaps are the logit gaps."""
    logits = torch.tensor([3.0, 1.5, 0.2, -2.0], dtype=torch.float64)
    logp = torch.log_softmax(logits, 0)
    stats = remote_stats(Returned(1, "b", float(logp[1])), [Returned(i, "x", float(logp[i])) for i in range(3)], 4)
    assert abs(stats.logit_gap - 1.5) < 1e-12
    assert abs(stats.gap_to_top1 - 1.5) < 1e-12
    assert stats.rank == 1


def test_unnamed_candidates_are_told_apart_by_their_text():
    """Pieces the local vocabulary cannot name (id -1) still rank by their text."""
    stats = remote_stats(
        Returned(-1, "é", math.log(0.2)),
        [Returned(-1, "a", math.log(0.5)), Returned(-1, "é", math.log(0.2))],
        vocab=100,
    )
    assert stats.rank == 1 and len(stats.top) == 2


def _metaspace_tokenizer():
    """A SentencePiece-style tokenizer (spaces as ▁, prepended to the first word), as Llama 2 and
    Mistral use: decoded alone, "▁Paris" and "Paris" both read "Paris"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    corpus = ["The capital of France is Paris.", "ParisParis and NeoParis", "a Paris Paris"] * 30
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def test_engine_pieces_name_sentencepiece_tokens_with_their_leading_space():
    from llmvis.remote.tokens import TokenMap

    tok = _metaspace_tokenizer()
    vocab = tok.get_vocab()
    assert "▁Paris" in vocab and "Paris" in vocab, sorted(vocab)
    tmap = TokenMap(tok)
    assert tmap.id_of(" Paris") == vocab["▁Paris"]  # how llama.cpp and vLLM print "▁Paris"
    assert tmap.id_of("Paris") == vocab["Paris"]  # the continuation token, e.g. in "Parisian"
    assert tmap.id_of("") == -1 and tmap.id_of("token_id:7") == 7
