"""Shared objects injected into routes (the engine, the store) and the error shapes they raise.

422 answers always use FastAPI's validation-error shape (`detail: [{loc, msg, type}]`), also
for checks that need the model (prompt too long for the context, a layer beyond the model's),
so the client has one way to show them and the OpenAPI schema stays truthful.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from llmvis.server.engine import Engine
from llmvis.server.schemas import ErrorDetail
from llmvis.store import Store
from llmvis.trace import Trace


def engine(request: Request) -> Engine:
    return request.app.state.engine


def store(request: Request) -> Store:
    return request.app.state.store


EngineDep = Annotated[Engine, Depends(engine)]
StoreDep = Annotated[Store, Depends(store)]


def unprocessable(
    message: str, loc: tuple[str | int, ...] = ("body",), kind: str = "value_error"
) -> RequestValidationError:
    """`kind` "not_available": a view this model cannot give (the web app shows the reason in its place)."""
    return RequestValidationError([{"loc": list(loc), "msg": message, "type": kind}])


def get_trace(s: Store, run_id: str) -> Trace:
    trace = s.get(run_id)
    if trace is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return trace


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the non-422 error codes a route can answer."""
    return {code: {"model": ErrorDetail} for code in codes}
