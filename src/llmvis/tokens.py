"""Tokens as text: UTF-8-safe pieces and readable labels, for every producer of runs and views.

Byte-level tokenizers split one character (emoji, CJK) over several tokens. Decoding each
token alone shows U+FFFD; instead each token's piece is the text that became complete when it
arrived (possibly ""), so the pieces join to exactly the decoded text. Labels stay readable:
a token holding part of a character is labelled by its bytes, e.g. <0xF0><0x9F>.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_REPLACEMENT = "\ufffd"
_WINDOW = 6  # tokens of left context re-decoded so that leading spaces come out right


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """Inverse of the printable-character alphabet that byte-level BPE uses for raw bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping: dict[str, int] = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            mapping[chr(256 + extra)] = b
            extra += 1
    return mapping


def _token_bytes(raw: str) -> bytes | None:
    """Bytes of a token string: byte-level BPE alphabet, or SentencePiece's <0xAB> form."""
    if raw.startswith("<0x") and raw.endswith(">") and len(raw) == 6:
        try:
            return bytes([int(raw[3:5], 16)])
        except ValueError:
            return None
    table = _byte_level_decoder()
    if all(ch in table for ch in raw):
        return bytes(table[ch] for ch in raw)
    return None


def _visible(text: str) -> str:
    return text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") or "∅"


class Labeler:
    """Readable, cached labels for token ids of one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, str] = {}
        self.special_ids: frozenset[int] = frozenset(getattr(tokenizer, "all_special_ids", []) or [])

    def __call__(self, token_id: int, text: str = "") -> str:
        """The label of `token_id`; a token without a local id (−1: a remote engine's piece that
        names no token here) is labelled by its `text`."""
        if token_id < 0:
            return repr(text)[1:-1] or "⟨?⟩"
        label = self._cache.get(token_id)
        if label is None:
            label = self._compute(token_id)
            self._cache[token_id] = label
        return label

    def _compute(self, token_id: int) -> str:
        text = self.tokenizer.decode([token_id], skip_special_tokens=False)
        if text and _REPLACEMENT not in text:
            return _visible(text)
        raw = self.tokenizer.convert_ids_to_tokens(token_id)
        data = _token_bytes(raw) if isinstance(raw, str) else None
        if data is None:
            return _visible(str(raw))
        return _bytes_label(data)


def _bytes_label(data: bytes) -> str:
    """Decode what is valid UTF-8, show the rest as <0x..> bytes."""
    out: list[str] = []
    i = 0
    while i < len(data):
        for end in range(len(data), i, -1):
            try:
                out.append(data[i:end].decode("utf-8"))
                i = end
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append(f"<0x{data[i]:02X}>")
            i += 1
    return _visible("".join(out))


class IncrementalDetokenizer:
    """Turns a growing list of ids into text pieces whose concatenation is the decoded text."""

    def __init__(self, tokenizer: Any, context: list[int] | None = None) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = list(context or [])
        self.read_offset = len(self.ids)
        self.prefix_offset = max(0, self.read_offset - _WINDOW)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=False)
        after = decode(self.ids[self.prefix_offset :], skip_special_tokens=False)
        if after.endswith(_REPLACEMENT) or len(after) <= len(before):
            return ""  # the character is not complete yet; it will come with a later token
        piece = after[len(before) :]
        self.prefix_offset = max(self.read_offset, len(self.ids) - _WINDOW)
        self.read_offset = len(self.ids)
        return piece
