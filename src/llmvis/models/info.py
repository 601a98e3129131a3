"""ModelInfo: what the UI and the trace need to know about a loaded model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Source = Literal["bundled", "hf_dir", "gguf", "hf_cache", "remote"]


class ModelInfo(BaseModel):
    name: str
    source: Source
    path: str
    architecture: str
    model_type: str
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int | None = None
    vocab_size: int
    context_length: int
    dtype: str
    device: str
    parameters: int
    has_chat_template: bool
    tokenizer_hash: str | None = Field(
        default=None, description="identifies the vocabulary: runs of a remote engine and a local copy match on it"
    )
