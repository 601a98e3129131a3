"""Every request and response body of the HTTP API, as pydantic models with bounds.

The web app's TypeScript types are generated from the OpenAPI schema these produce, so a
field renamed here shows up as a type error there. Run events (start/token/done) come from
llmvis.generation.events; `error` and the model-load events are defined here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from llmvis.generation.events import DoneEvent, PromptStatsEvent, StartEvent, TokenEvent
from llmvis.models.info import ModelInfo
from llmvis.plan import Intervention
from llmvis.store import RunRow
from llmvis.trace import SamplingParams

RunId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class ErrorDetail(BaseModel):
    """Body of every 4xx/5xx answer (FastAPI's own shape)."""

    detail: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    model_loaded: bool
    model_state: Literal["none", "loading", "ready"]
    running: bool = Field(description="a run is generating now")
    waiting: int = Field(ge=0, description="runs queued behind it")
    capturing: bool = Field(description="preparing the last run's internals in the background")


class LoadingState(BaseModel):
    spec: str
    stage: str
    fraction: float = Field(ge=0.0, le=1.0)


class ModelState(BaseModel):
    state: Literal["none", "loading", "ready"]
    model: ModelInfo | None = Field(default=None, description="the model runs go to (a remote engine's, if any)")
    local: ModelInfo | None = Field(
        default=None, description="the local weights views compute with (with a remote engine: its local copy)"
    )
    local_hint: str | None = Field(
        default=None, description="with a remote engine: the local spec that would load its weights here"
    )
    loading: LoadingState | None = None
    last_error: str | None = Field(default=None, description="why the last load failed, if it did")


class ModelSource(BaseModel):
    spec: str = Field(description="what to pass as `spec` to POST /api/model/load")
    kind: str
    path: str


class ModelSources(BaseModel):
    sources: list[ModelSource]


class LoadModelRequest(BaseModel):
    spec: str = Field(min_length=1, max_length=4096, description="smollm2, a directory, a .gguf file, an HF id")
    device: str | None = Field(default=None, max_length=32, pattern=r"^(auto|cpu|mps|cuda(:[0-9]{1,2})?)$")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    trust_remote_code: bool = Field(default=False, description="run code shipped with the model")


class LoadProgressEvent(BaseModel):
    type: Literal["progress"] = "progress"
    stage: str
    fraction: float = Field(ge=0.0, le=1.0)


class LoadDoneEvent(BaseModel):
    type: Literal["done"] = "done"
    model: ModelInfo


class ErrorEvent(BaseModel):
    """The last event of a stream that failed; a run's partial trace is saved as failed."""

    type: Literal["error"] = "error"
    message: str
    run_id: str | None = None


RunEvent = Annotated[StartEvent | TokenEvent | PromptStatsEvent | DoneEvent | ErrorEvent, Field(discriminator="type")]
LoadEvent = Annotated[LoadProgressEvent | LoadDoneEvent | ErrorEvent, Field(discriminator="type")]


class RunList(BaseModel):
    runs: list[RunRow]
    total: int = Field(ge=0, description="live runs in the store (ignoring search and limit)")


class RenameRequest(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class Deleted(BaseModel):
    id: str
    deleted: bool = True
    undo: str = Field(description="POST this path to restore the run")


TokenId = Annotated[int, Field(ge=0, le=10_000_000)]


class ForkRequest(BaseModel):
    """Give `token_id` (one token) or `token_ids` (several, forced from `position` on)."""

    position: int = Field(ge=0, le=1_000_000, description="position whose token is replaced")
    token_id: TokenId | None = Field(default=None, description="the token forced at `position`")
    token_ids: list[TokenId] | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="tokens forced at `position`, `position + 1`, … (instead of `token_id`)",
    )
    params: SamplingParams | None = Field(default=None, description="None = the parent's params")
    interventions: list[Intervention] = Field(
        default_factory=list,
        max_length=64,
        description="generate the continuation with these applied (then no token need be forced)",
    )

    @model_validator(mode="after")
    def _one_of(self) -> ForkRequest:
        if self.token_id is not None and self.token_ids is not None:
            raise ValueError("give exactly one of token_id and token_ids")
        if self.token_id is None and self.token_ids is None and not self.interventions:
            raise ValueError("give exactly one of token_id and token_ids (or interventions to generate under)")
        return self

    @property
    def forced(self) -> list[int]:
        """The tokens forced from `position` on."""
        if self.token_ids is not None:
            return self.token_ids
        return [] if self.token_id is None else [self.token_id]


class TokenPiece(BaseModel):
    id: int = Field(ge=0)
    label: str = Field(description="readable label, as in a trace's tokens")


class Tokenized(BaseModel):
    tokens: list[TokenPiece]


class ViewInfo(BaseModel):
    name: str
    title: str
    needs_internals: bool
    params_schema: dict[str, Any]
    result_schema: str = Field(description="name of the result schema in components/schemas")


class ViewList(BaseModel):
    views: list[ViewInfo]
