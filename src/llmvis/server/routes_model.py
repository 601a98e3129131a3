"""Health, the loaded model, loadable sources, loading another model with SSE progress, tokenizing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent

from llmvis.models.errors import ModelLoadError
from llmvis.models.sources import list_sources
from llmvis.server import deps
from llmvis.server.deps import EngineDep
from llmvis.server.engine import Engine
from llmvis.server.schemas import (
    Health,
    LoadEvent,
    LoadModelRequest,
    ModelSource,
    ModelSources,
    ModelState,
    Tokenized,
    TokenPiece,
)
from llmvis.server.tickets import END, Busy, LoadTicket

router = APIRouter(prefix="/api", tags=["model"])


def _version() -> str:
    try:
        return version("llmvis")
    except PackageNotFoundError:
        return "0+unknown"


def _state(engine: Engine) -> Literal["none", "loading", "ready"]:
    if engine.loading is not None:
        return "loading"
    return "ready" if engine.loaded is not None or engine.remote is not None else "none"


@router.get("/health")
def health(engine: EngineDep) -> Health:
    return Health(
        version=_version(),
        model_loaded=engine.loaded is not None or engine.remote is not None,
        model_state=_state(engine),
        running=engine.running,
        waiting=engine.waiting,
        capturing=engine.capturing,
    )


@router.get("/model")
def model(engine: EngineDep) -> ModelState:
    local = engine.loaded.info if engine.loaded else None
    remote = engine.remote
    return ModelState(
        state=_state(engine),
        model=remote.info if remote else local,
        local=local,
        local_hint=remote.tokenizer_spec if remote else None,
        loading=engine.loading,
        last_error=engine.last_load_error,
    )


@router.get("/models")
def models() -> ModelSources:
    return ModelSources(sources=[ModelSource(spec=s.spec, kind=s.kind, path=s.path) for s in list_sources()])


@router.get("/tokenize", responses=deps.errors(503))
def tokenize(engine: EngineDep, text: Annotated[str, Query(min_length=1, max_length=200)]) -> Tokenized:
    """The loaded model's tokens for `text` (no special tokens added), e.g. to fork with typed text."""
    names = engine.remote.token_map if engine.remote else engine.loaded
    if names is None:
        raise HTTPException(503, "no model is loaded: load one with POST /api/model/load")
    ids = names.tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise deps.unprocessable("the text makes no tokens", ("query", "text"))
    label = names.labeler
    return Tokenized(tokens=[TokenPiece(id=i, label=label(i)) for i in ids])


async def _start_load(body: LoadModelRequest, engine: EngineDep) -> LoadTicket:
    loop = asyncio.get_running_loop()
    try:
        return await run_in_threadpool(engine.submit_load, body, loop)
    except ModelLoadError as exc:
        raise HTTPException(400, str(exc)) from exc
    except PermissionError as exc:
        raise HTTPException(403, str(exc)) from exc
    except Busy as exc:
        raise HTTPException(409, str(exc)) from exc


@router.post("/model/load", response_class=EventSourceResponse, responses=deps.errors(400, 403, 409))
async def load(ticket: Annotated[LoadTicket, Depends(_start_load)]) -> AsyncIterator[LoadEvent]:
    """Load another model; streams `progress` events, then `done` or `error`.

    With a remote engine, runs stay on the engine: the model loaded here is the local copy that
    computes the views needing weights, and must have the engine model's vocabulary.

    A spec that cannot be resolved answers 400 before the stream opens; a failure while
    loading ends the stream with `error`. Either way the previous model stays loaded.
    """
    while (event := await ticket.events.get()) is not END:
        yield ServerSentEvent(event=event.type, data=event)  # type: ignore[misc]
