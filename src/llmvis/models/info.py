"""ModelInfo: what the UI and the trace need to know about a loaded model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Source = Literal["bundled", "hf_dir", "gguf", "hf_cache", "remote"]


class InternalsReport(BaseModel):
    """The load-time self-check of the internals: the capture and recomputed attention against
    the model's own eager forward on a few tokens (llmvis/selfcheck.py)."""

    family: str = Field(description="the architecture adapter that reads this model")
    wiring: str = Field(default="", description="sequential or parallel blocks (attention and MLP read the same input)")
    verified: bool = Field(description="every checked number matched the model's own")
    max_error: float | None = Field(default=None, description="largest relative difference seen")
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="view name → why this model cannot give it (such views answer 422)"
    )
    attention_layers: list[int] | None = Field(
        default=None, description="layers with softmax attention to show (None: not known; a hybrid's are fewer)"
    )
    moe_layers: list[int] = Field(
        default_factory=list, description="layers whose MLP is a mixture of experts (the experts view shows them)"
    )
    capture_bytes_per_token: int | None = Field(
        default=None, description="memory a run's capture takes per token (residual stream, block outputs, q and k)"
    )
    live_capture: bool = Field(
        default=False,
        description="the capture kept while generating (prefill chunks and decode steps) equals the "
        "teacher-forced one, so runs keep it as they stream",
    )


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
    internals: InternalsReport | None = Field(default=None, description="None: not checked (a remote engine)")
