"""UTF-8-safe pieces: joined pieces equal the decoded text; no U+FFFD; labels readable."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmvis.tokens import IncrementalDetokenizer, Labeler
from tiny_models import make_tokenizer

TOK = make_tokenizer()


def pieces(text: str) -> tuple[list[int], list[str]]:
    ids = TOK(text).input_ids
    detok = IncrementalDetokenizer(TOK)
    return ids, [detok.push(i) for i in ids]


def test_emoji_and_cjk_split_over_byte_tokens_join_without_replacement_char():
    text = "hi 🙂 中文 ok"
    ids, parts = pieces(text)
    assert len(ids) > len(text.split())  # really split into byte tokens
    assert "".join(parts) == text
    assert all("\ufffd" not in p for p in parts)
    assert "" in parts  # an incomplete character waits for its last byte


def test_labels_are_never_empty_and_show_bytes_of_partial_characters():
    labeler = Labeler(TOK)
    ids = TOK("🙂").input_ids
    labels = [labeler(i) for i in ids]
    assert all(labels)
    assert all("\ufffd" not in label for label in labels)
    assert any(label.startswith("<0x") for label in labels)
    assert labeler(TOK("\n").input_ids[0]) == "\\n"


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_pieces_always_join_to_the_decoded_text(text):
    ids, parts = pieces(text)
    assert "".join(parts) == TOK.decode(ids)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(TOK) - 1), min_size=1, max_size=30))
def test_arbitrary_id_sequences_never_lose_text(ids):
    """Only a character whose last bytes have not come yet is held back."""
    detok = IncrementalDetokenizer(TOK)
    joined = "".join(detok.push(i) for i in ids)
    decoded = TOK.decode(ids)
    if decoded.endswith("\ufffd"):
        assert decoded.startswith(joined)
    else:
        assert joined == decoded
