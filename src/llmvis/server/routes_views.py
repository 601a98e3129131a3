"""Views: the list of registered views, one typed GET route per view, and what the views being
computed for a run have done so far.

One route per view (rather than one generic route) so that OpenAPI shows each view's query
parameters and result schema, and the web app gets a typed client for each. Computation runs
in a worker thread (never on the event loop); the engine serialises it with generation.
"""

import inspect
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

import llmvis.analyses  # noqa: F401  (importing registers the views)
from llmvis.analyses.registry import VIEWS, View, ViewParamError
from llmvis.arch import NotAvailable
from llmvis.server import deps
from llmvis.server.engine import Engine
from llmvis.server.progress import RunProgress
from llmvis.server.schemas import RunId, ViewInfo, ViewList
from llmvis.server.tickets import NeedsModel
from llmvis.store import Store


def _view_route(view: View) -> Any:
    def compute(run_id: str, params: BaseModel, engine: Engine, store: Store) -> Any:
        trace = deps.get_trace(store, run_id)
        result = engine.compute_view(trace, view.name, params)
        store.record_view(run_id, view.name, params.model_dump(mode="json"), result.model_dump_json())
        return result

    async def endpoint(run_id: str, params: BaseModel, engine: Engine, store: Store) -> Any:
        try:  # reading the trace, computing and recording all happen off the event loop
            return await run_in_threadpool(compute, run_id, params, engine, store)
        except ViewParamError as exc:
            raise deps.unprocessable(str(exc), ("query",)) from exc
        except NotAvailable as exc:
            raise deps.unprocessable(str(exc), ("query",), kind="not_available") from exc
        except NeedsModel as exc:
            raise HTTPException(409, str(exc)) from exc

    # FastAPI reads the signature: give it the view's own params and result types.
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("run_id", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[RunId, Path()]),
            inspect.Parameter("params", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[view.params, Query()]),
            inspect.Parameter("engine", inspect.Parameter.KEYWORD_ONLY, annotation=deps.EngineDep),
            inspect.Parameter("store", inspect.Parameter.KEYWORD_ONLY, annotation=deps.StoreDep),
        ],
        return_annotation=view.result,
    )
    endpoint.__name__ = f"view_{view.name}"
    endpoint.__doc__ = f"{view.title}." + (
        "" if not view.needs_internals else " Needs the run's model loaded (409 otherwise)."
    )
    return endpoint


def build_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["views"])
    views = VIEWS

    @router.get("/views")
    def list_views() -> ViewList:
        return ViewList(
            views=[
                ViewInfo(
                    name=v.name,
                    title=v.title,
                    needs_internals=v.needs_internals,
                    params_schema=v.params.model_json_schema(),
                    result_schema=v.result.__name__,
                )
                for v in views.values()
            ]
        )

    @router.get("/runs/{run_id}/progress", responses=deps.errors(404))
    def run_progress(run_id: Annotated[RunId, Path()], engine: deps.EngineDep, store: deps.StoreDep) -> RunProgress:
        """What this run's views being computed now have done (for a page waiting on one)."""
        deps.get_trace(store, run_id)
        return engine.progress.of(run_id)

    for view in views.values():
        router.add_api_route(
            f"/runs/{{run_id}}/views/{view.name}",
            _view_route(view),
            methods=["GET"],
            response_model=view.result,
            responses=deps.errors(404, 409),
            operation_id=f"view_{view.name}",
            summary=view.title,
        )
    return router


def include(app: FastAPI) -> None:
    app.include_router(build_router())
