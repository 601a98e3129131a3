"""Naming an engine's tokens with local vocabulary ids.

Engines report tokens as text ("token_id:N" for vLLM with return_tokens_as_token_ids). The id
is what views, forks and a local copy of the weights need, so each piece is mapped through the
local tokenizer: its own encoding when that is one token, else the token that decodes to it.
"""

from __future__ import annotations

from typing import Any

from llmvis.generation.detok import Labeler

UNKNOWN = -1


class TokenMap:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.labeler = Labeler(tokenizer)
        self._decoded: dict[str, int] | None = None
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
        ids = self.tokenizer.encode(piece, add_special_tokens=False)
        if len(ids) == 1:
            return int(ids[0])
        return self._by_text().get(piece, UNKNOWN)

    def label(self, token_id: int, piece: str) -> str:
        if token_id >= 0:
            return self.labeler(token_id)
        return repr(piece)[1:-1] or "⟨?⟩"

    def text(self, token_id: int, piece: str) -> str:
        """The piece as text ("token_id:N" pieces are decoded)."""
        if piece.startswith("token_id:") and token_id >= 0:
            return str(self.tokenizer.decode([token_id]))
        return piece

    def _by_text(self) -> dict[str, int]:
        """Each single-token decoding to its id (the lowest id wins a tie); built on first need."""
        if self._decoded is None:
            size = len(self.tokenizer)
            texts = self.tokenizer.batch_decode([[i] for i in range(size)])
            self._decoded = {}
            for i, text in enumerate(texts):
                self._decoded.setdefault(text, i)
        return self._decoded
