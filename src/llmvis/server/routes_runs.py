"""Runs: start one (SSE), fork one (SSE), list, get, rename, delete/restore, export."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse

from llmvis import export
from llmvis.generation.errors import GenerationError
from llmvis.generation.fork import ForkError
from llmvis.generation.fork import fork_request as forked
from llmvis.server import deps
from llmvis.server.deps import EngineDep, StoreDep
from llmvis.server.engine import Engine
from llmvis.server.schemas import Deleted, ForkRequest, RenameRequest, RunEvent, RunId, RunList
from llmvis.server.sse import run_events
from llmvis.server.tickets import NoModel, QueueFull, RunTicket
from llmvis.store import RunRow
from llmvis.trace import GenerationRequest, Trace

router = APIRouter(prefix="/api/runs", tags=["runs"])
RunIdPath = Annotated[RunId, Path()]
STREAM_ERRORS = deps.errors(429, 503)


async def _submit(
    engine: Engine, request: GenerationRequest, parent_id: str | None = None, fork_position: int | None = None
) -> RunTicket:
    """Queue a run; refusals (bad request, full queue, no model) answer before any stream."""
    loop = asyncio.get_running_loop()
    try:
        return await run_in_threadpool(
            engine.submit_run, request, loop, parent_id=parent_id, fork_position=fork_position
        )
    except GenerationError as exc:
        raise deps.unprocessable(str(exc)) from exc
    except QueueFull as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from exc
    except NoModel as exc:
        raise HTTPException(503, str(exc)) from exc


async def _start_run(body: GenerationRequest, engine: EngineDep) -> RunTicket:
    return await _submit(engine, body)


@router.post("", response_class=EventSourceResponse, responses=STREAM_ERRORS)
async def start_run(ticket: Annotated[RunTicket, Depends(_start_run)]) -> AsyncIterator[RunEvent]:
    """Generate; streams `start`, one `token` per token, then `done` (or `error`).

    The run is saved when it ends (also when cancelled or failed); disconnecting cancels it.
    """
    async for event in run_events(ticket):
        yield event  # type: ignore[misc]


def fork_request(parent: Trace, fork: ForkRequest) -> GenerationRequest:
    """The parent's request with its generated tokens before `position` kept and the fork's tokens forced from there."""
    field = "token_id" if fork.token_ids is None else "token_ids"
    try:
        return forked(parent, fork.position, fork.forced, fork.params, fork.interventions, field)
    except ForkError as exc:
        raise deps.unprocessable(str(exc), ("body", exc.field)) from exc


async def _start_fork(run_id: RunIdPath, body: ForkRequest, engine: EngineDep, store: StoreDep) -> RunTicket:
    parent = await run_in_threadpool(deps.get_trace, store, run_id)
    request = fork_request(parent, body)
    return await _submit(engine, request, parent_id=parent.id, fork_position=body.position)


@router.post("/{run_id}/fork", response_class=EventSourceResponse, responses=deps.errors(404, 429, 503))
async def fork_run(ticket: Annotated[RunTicket, Depends(_start_fork)]) -> AsyncIterator[RunEvent]:
    """A new run keeping the parent's tokens before `position` and forcing `token_id` (or `token_ids`) there."""
    async for event in run_events(ticket):
        yield event  # type: ignore[misc]


@router.get("")
def list_runs(
    store: StoreDep,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> RunList:
    """Saved runs, newest first; `search` matches title, prompt and output."""
    return RunList(runs=store.list_runs(search=search, limit=limit, offset=offset), total=store.count())


@router.get("/{run_id}", response_model=Trace, responses=deps.errors(404))
def get_run(run_id: RunIdPath, store: StoreDep) -> Response:
    """The run's trace, sent as stored (no re-validation of megabytes of tokens)."""
    text = store.get_json(run_id)
    if text is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return Response(text, media_type="application/json")


@router.patch("/{run_id}", responses=deps.errors(404))
def rename_run(run_id: RunIdPath, body: RenameRequest, store: StoreDep) -> RunRow:
    if not store.rename(run_id, body.title):
        raise HTTPException(404, f"no run {run_id!r}")
    row = store.summary(run_id)
    assert row is not None
    return row


@router.delete("/{run_id}", responses=deps.errors(404))
def delete_run(run_id: RunIdPath, store: StoreDep) -> Deleted:
    """Hide a run at once; POST …/restore undoes it until it is purged (a day later)."""
    if not store.delete(run_id):
        raise HTTPException(404, f"no run {run_id!r}")
    return Deleted(id=run_id, undo=f"/api/runs/{run_id}/restore")


@router.post("/{run_id}/restore", responses=deps.errors(404))
def restore_run(run_id: RunIdPath, store: StoreDep) -> RunRow:
    if not store.restore(run_id):
        raise HTTPException(404, f"no deleted run {run_id!r}")
    row = store.summary(run_id)
    assert row is not None
    return row


@router.get("/{run_id}/export.json", responses=deps.errors(404))
def export_json(run_id: RunIdPath, store: StoreDep) -> export.RunBundle:
    """The trace and every view the user opened on it, for offline use."""
    result = export.run_bundle(store, run_id)
    if result is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return result


@router.get(
    "/{run_id}/report.html",
    response_class=Response,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}, **deps.errors(404, 503)},
)
def report_html(run_id: RunIdPath, store: StoreDep) -> Response:
    """The self-contained HTML report (downloaded; opens offline with no server or model)."""
    run = export.run_bundle(store, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    try:
        page = export.report_html(run)
    except export.ReportUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    return Response(
        page,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="llmvis-{run_id}.html"',
            "Content-Security-Policy": export.report_csp(page),
        },
    )


@router.get(
    "/{run_id}/export.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **deps.errors(404)},
)
def export_csv(run_id: RunIdPath, store: StoreDep) -> Response:
    """Per-token statistics, one row per position."""
    trace = deps.get_trace(store, run_id)
    return Response(
        export.stats_csv(trace),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="llmvis-{run_id}.csv"'},
    )
