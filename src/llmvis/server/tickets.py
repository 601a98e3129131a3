"""What passes between the routes and the engine: a ticket per streamed job (a run or a model
load), the refusals that routes answer with an HTTP status, and failures as one-line messages."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from llmvis.generation.events import RunProducer
from llmvis.models.loaded import LoadedModel
from llmvis.server.schemas import LoadModelRequest
from llmvis.trace import GenerationRequest

END = object()
"""Sentinel put on a ticket's event queue after its last event."""


class QueueFull(Exception):
    """Too many runs wait already (HTTP 429 with Retry-After)."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(f"{waiting} runs are already waiting; try again in about {retry_after} s")
        self.retry_after = retry_after


class NoModel(Exception):
    """No model is loaded (yet): load one with POST /api/model/load."""


class Busy(Exception):
    """A model load is already in progress."""


class NeedsModel(Exception):
    """A view needs the weights of the run's model, which is not the loaded one."""


@dataclass
class Ticket:
    """One streamed job: events flow from the thread that does it to one client's event loop."""

    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)


@dataclass
class RunTicket(Ticket):
    request: GenerationRequest | None = None
    loaded: LoadedModel | None = None  # the local model it was started on (None: a remote run)
    generation: RunProducer | None = None
    parent_id: str | None = None
    fork_position: int | None = None


@dataclass
class LoadTicket(Ticket):
    request: LoadModelRequest | None = None


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def error_message(exc: BaseException) -> str:
    if is_oom(exc):
        return "out of memory during the run: try fewer new tokens, a shorter prompt or a smaller model"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:1000]
