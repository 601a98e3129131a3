"""The view registry: a view is one pure function with a params model and a result model.

Adding a view = one function decorated with `@register(...)` in an analyses module; the server
builds one typed route per registered view, the web app one chart builder per view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmvis.internals import Internals
from llmvis.models.loaded import LoadedModel
from llmvis.trace import Trace


class UnknownViewError(KeyError):
    """No view of that name is registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown view"


class ViewParamError(ValueError):
    """A view's parameters are out of range for this run (e.g. layer beyond the model's)."""


def no_progress(step: str, done: int, total: int) -> None:
    """A ViewContext's progress when nobody watches (tests, notebooks, the summaries ahead)."""


@dataclass
class ViewContext:
    trace: Trace
    loaded: LoadedModel | None = None
    internals: Internals | None = None
    # a view that can take seconds says how far it is (step, done, total), for the page to show
    progress: Callable[[str, int, int], None] = no_progress

    def require_internals(self) -> Internals:
        if self.internals is None:
            raise ViewParamError("this view needs the model's weights, which are not loaded for this run")
        return self.internals


P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class View:
    name: str
    title: str
    params: type[BaseModel]
    result: type[BaseModel]
    fn: Callable[[ViewContext, Any], BaseModel]
    needs_internals: bool
    uses: tuple[str, ...] = ()  # parts of the internals beyond the residual stream: "attention", "mlp"


VIEWS: dict[str, View] = {}


def register(
    name: str, title: str, params: type[P], result: type[R], *, needs_internals: bool, uses: tuple[str, ...] = ()
) -> Callable[[Callable[[ViewContext, P], R]], Callable[[ViewContext, P], R]]:
    def decorate(fn: Callable[[ViewContext, P], R]) -> Callable[[ViewContext, P], R]:
        if name in VIEWS:
            raise ValueError(f"view {name!r} registered twice")
        VIEWS[name] = View(name, title, params, result, fn, needs_internals, uses)
        return fn

    return decorate


def compute(name: str, ctx: ViewContext, params: dict[str, Any] | BaseModel | None = None) -> BaseModel:
    """Validate params and run the view; errors are UnknownViewError or ViewParamError."""
    view = VIEWS.get(name)
    if view is None:
        raise UnknownViewError(f"unknown view {name!r}; known views: {', '.join(sorted(VIEWS))}")
    if not isinstance(params, view.params):
        try:
            params = view.params.model_validate(
                params.model_dump() if isinstance(params, BaseModel) else (params or {})
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ViewParamError(f"{where}: {first['msg']}") from exc
    return view.fn(ctx, params)
