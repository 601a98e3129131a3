"""Naming an engine's tokens with local vocabulary ids.

Engines report tokens as text ("token_id:N" for vLLM with return_tokens_as_token_ids). The id
is what views, forks and a local copy of the weights need, so each piece is mapped through the
local tokenizer: the token whose text is that piece, else the piece's encoding when that is one
token.
"""

from __future__ import annotations

from typing import Any

from llmvis.tokens import Labeler

UNKNOWN = -1


class TokenMap:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.labeler = Labeler(tokenizer)
        self._decoded = _pieces(tokenizer)  # built once, so no run stalls on it
        self._known: dict[str, int] = {}  # pieces seen before: every step names ~N+1 of them

    def id_of(self, piece: str) -> int:
        known = self._known.get(piece)
        if known is None:
            known = self._known[piece] = self._lookup(piece)
        return known

    def _lookup(self, piece: str) -> int:
        if piece.startswith("token_id:"):
            try:
                return int(piece[9:])
            except ValueError:
                return UNKNOWN
        if not piece:
            return UNKNOWN
        found = self._decoded.get(piece)
        if found is not None:
            return found
        ids = self.tokenizer.encode(piece, add_special_tokens=False)
        return int(ids[0]) if len(ids) == 1 else UNKNOWN

    def text(self, token_id: int, piece: str) -> str:
        """The piece as text ("token_id:N" pieces are decoded)."""
        if piece.startswith("token_id:") and token_id >= 0:
            return str(self.tokenizer.decode([token_id]))
        return piece


def _pieces(tokenizer: Any) -> dict[str, int]:
    """Each token's text *inside* a text (the lowest id wins a tie).

    Decoded alone, a SentencePiece token loses its leading space ("▁Paris" → "Paris", the same
    text as the continuation token "Paris"); engines report it as " Paris". Decoding it after an
    anchor token and cutting the anchor's text off keeps the space, and is the plain decoding for
    byte-level BPE.
    """
    anchor = tokenizer.encode("a", add_special_tokens=False)[-1]
    prefix = tokenizer.decode([anchor])
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[anchor, i] for i in range(size)], skip_special_tokens=False)
    pieces: dict[str, int] = {}
    for i, text in enumerate(texts):
        piece = text[len(prefix) :] if text.startswith(prefix) else tokenizer.decode([i])
        pieces.setdefault(piece, i)
    return pieces
