"""create_app: the FastAPI application, its engine (the model's worker) and its run store.

The model is passed in (loaded by `serve` with a progress bar, or a tiny model in tests), so
building the app never loads weights: `python -m llmvis.server.openapi` relies on that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from llmvis.config import Settings
from llmvis.models.loaded import LoadedModel
from llmvis.remote.model import RemoteModel
from llmvis.server import routes_model, routes_runs, routes_views, routes_whatif, static
from llmvis.server.engine import Engine
from llmvis.server.security import Guard, resolve_token
from llmvis.store import Store


def create_app(
    settings: Settings | None = None, loaded: LoadedModel | None = None, remote: RemoteModel | None = None
) -> FastAPI:
    settings = settings or Settings()
    store = Store(settings.db_path)
    engine = Engine(
        loaded,
        store,
        queue_size=settings.queue_size,
        cache_bytes=settings.cache_bytes,
        spill_bytes=settings.spill_bytes,
        allow_remote_code=settings.trust_remote_code,
        remote=remote,
        remote_slots=settings.remote_slots,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(
        title="llmvis",
        summary="Watch a language model think: tokens, probabilities, attention, hidden states.",
        version=routes_model._version(),
        docs_url=None,  # Swagger UI loads scripts from a CDN, which the CSP forbids
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.engine = engine
    app.state.token = resolve_token(settings.host, settings.token)
    app.include_router(routes_model.router)
    app.include_router(routes_runs.router)
    app.include_router(routes_whatif.router)
    app.include_router(routes_whatif.steering_router)
    routes_views.include(app)
    app.include_router(static.build_router())
    app.add_middleware(Guard, bound_host=settings.host, token=app.state.token)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the error answers of streaming routes typed as JSON (which they are)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        error_ref = {"$ref": "#/components/schemas/ErrorDetail"}
        for path in schema["paths"].values():
            for operation in path.values():
                if "requestBody" in operation:  # a body that is not JSON at all: FastAPI answers 400
                    operation["responses"].setdefault(
                        "400",
                        {
                            "description": "Malformed request body",
                            "content": {"application/json": {"schema": error_ref}},
                        },
                    )
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if status != "200" and "text/event-stream" in content:
                        content["application/json"] = content.pop("text/event-stream")
        app.openapi_schema = schema
    return app.openapi_schema
