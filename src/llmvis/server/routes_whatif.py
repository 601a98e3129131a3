"""What-if: apply interventions to a run's teacher-forced forward and compare (ablate and look);
activation-patching sweeps, streamed as progress events and cancelled when the client leaves."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from llmvis.arch import NotAvailable
from llmvis.interventions import (
    InterventionError,
    SteeringRequest,
    SteeringVector,
    WhatIfRequest,
    WhatIfResult,
    steering_vector,
    text_ids,
)
from llmvis.models.loaded import LoadedModel
from llmvis.server import deps
from llmvis.server.deps import EngineDep, StoreDep
from llmvis.server.schemas import RunId
from llmvis.server.tickets import NeedsModel
from llmvis.server.views import compute_sweep, compute_what_if, same_weights
from llmvis.sweep import SweepRequest
from llmvis.trace import Trace

router = APIRouter(prefix="/api/runs", tags=["what-if"])
steering_router = APIRouter(prefix="/api", tags=["what-if"])


@router.post("/{run_id}/whatif", responses=deps.errors(404, 409))
async def what_if(
    run_id: Annotated[RunId, Path()], body: WhatIfRequest, engine: EngineDep, store: StoreDep
) -> WhatIfResult:
    """The run's tokens forced through the model with the interventions applied: the chosen
    position's probability, logit, rank and top candidates before and after, and each
    position's probability change and KL along the run. Needs the run's model loaded (409)."""

    def compute() -> WhatIfResult:
        trace = deps.get_trace(store, run_id)
        sources = {
            rid: deps.get_trace(store, rid)
            for rid in {str(i.source_run) for i in body.interventions if i.op == "patch"}
        }
        result = compute_what_if(engine.slot, trace, body, sources)
        store.record_view(run_id, "whatif", body.model_dump(mode="json"), result.model_dump_json())
        return result

    try:
        return await run_in_threadpool(compute)
    except (InterventionError, NotAvailable) as exc:
        raise deps.unprocessable(str(exc)) from exc
    except NeedsModel as exc:
        raise HTTPException(409, str(exc)) from exc


class SweepProgress(BaseModel):
    done: int
    total: int


class SweepError(BaseModel):
    message: str


class Cancelled(Exception):
    """The client went away: the sweep stops at its next batch, and nothing is saved."""


@dataclass
class SweepJob:
    run_id: str
    clean: Trace
    corrupted: Trace | None
    body: SweepRequest


async def _sweep_job(run_id: Annotated[RunId, Path()], body: SweepRequest, store: StoreDep) -> SweepJob:
    """The runs a sweep reads, found before any stream starts (404 otherwise)."""
    clean = await run_in_threadpool(deps.get_trace, store, run_id)
    corrupted = await run_in_threadpool(deps.get_trace, store, body.corrupted_run) if body.corrupted_run else None
    return SweepJob(run_id, clean, corrupted, body)


@router.post("/{run_id}/sweep", response_class=EventSourceResponse, responses=deps.errors(404, 409))
async def patching_sweep(
    job: Annotated[SweepJob, Depends(_sweep_job)], engine: EngineDep, store: StoreDep
) -> AsyncIterator[ServerSentEvent]:
    """An activation-patching sweep of this run (clean) against a corrupted one: streams
    `progress` {done, total}, then `result` (saved with the run) or `error`. Disconnecting
    cancels it at the next batch."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[ServerSentEvent | None] = asyncio.Queue()
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled
        event = ServerSentEvent(event="progress", data=SweepProgress(done=done, total=total))
        loop.call_soon_threadsafe(events.put_nowait, event)

    def work() -> None:
        event: ServerSentEvent | None
        try:
            result = compute_sweep(engine.slot, job.clean, job.body, job.corrupted, progress)
            store.record_view(job.run_id, "sweep", job.body.model_dump(mode="json"), result.model_dump_json())
            event = ServerSentEvent(event="result", data=result)
        except Cancelled:
            event = None
        except (InterventionError, NotAvailable, NeedsModel) as exc:
            event = ServerSentEvent(event="error", data=SweepError(message=str(exc)))
        except Exception as exc:  # the server keeps serving; the client is told
            message = f"the sweep failed: {type(exc).__name__}: {exc}"
            event = ServerSentEvent(event="error", data=SweepError(message=message))
        if event is not None:
            loop.call_soon_threadsafe(events.put_nowait, event)
        loop.call_soon_threadsafe(events.put_nowait, None)

    loop.run_in_executor(None, work)
    try:
        while (event := await events.get()) is not None:
            yield event
    finally:
        cancel.set()  # a sweep still running stops at its next batch


@steering_router.post("/steering", responses=deps.errors(404, 409, 503))
async def steering(body: SteeringRequest, engine: EngineDep, store: StoreDep) -> SteeringVector:
    """A steering vector from a contrast pair: the mean residual stream at `layer` over the
    positive side minus over the negative, for an `add` intervention (its `factor` the
    coefficient). A side is a typed text, or a saved run of the loaded model (all its tokens)."""

    def side_ids(loaded: LoadedModel, text: str | None, run_id: str | None) -> list[int]:
        if text is not None:
            return text_ids(loaded, text)
        trace = deps.get_trace(store, str(run_id))
        if not same_weights(loaded.info, trace.model):
            raise NeedsModel(
                f"run {run_id} was made by {trace.model.name}, not the loaded model: load it to steer from it"
            )
        if any(i < 0 for i in trace.ids):
            raise NeedsModel(f"some tokens of run {run_id} have no id in the local vocabulary")
        return trace.ids

    def compute() -> SteeringVector:
        loaded = engine.slot.loaded
        if loaded is None:
            raise HTTPException(503, "no model is loaded: load one with POST /api/model/load")
        positive = side_ids(loaded, body.positive, body.positive_run)
        negative = side_ids(loaded, body.negative, body.negative_run)
        with engine.slot.lock:
            return steering_vector(loaded, body.layer, positive, negative)

    try:
        return await run_in_threadpool(compute)
    except (InterventionError, NotAvailable) as exc:
        raise deps.unprocessable(str(exc)) from exc
    except NeedsModel as exc:
        raise HTTPException(409, str(exc)) from exc
