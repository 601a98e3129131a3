"""The engine: what the routes ask of the model, done by one worker thread that owns it.

The worker takes jobs in order (local runs: runs.py; model loads: loading.py) and, while none
waits, the background capture and summaries of the last run (background.py). Runs on a remote engine stream in
threads of their own (remote_runs.py). Views are computed in the request's thread under the model
lock (views.py), which generation takes per step (slot.py), so a click waits for one step.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from llmvis.analyses.registry import VIEWS
from llmvis.capture_cache import CaptureCache
from llmvis.models.loaded import LoadedModel
from llmvis.remote.model import RemoteModel
from llmvis.server.background import BackgroundCapture
from llmvis.server.loading import ModelLoader
from llmvis.server.progress import ProgressBoard
from llmvis.server.remote_runs import RemoteRuns
from llmvis.server.runs import LocalRuns
from llmvis.server.schemas import LoadingState, LoadModelRequest
from llmvis.server.slot import ModelSlot
from llmvis.server.tickets import LoadTicket, RunTicket
from llmvis.server.views import compute_view, same_weights
from llmvis.store import Store
from llmvis.trace import GenerationRequest, Trace

log = logging.getLogger("llmvis.server")


class Engine:
    def __init__(
        self,
        loaded: LoadedModel | None,
        store: Store,
        *,
        queue_size: int = 4,
        cache_bytes: int = 1 << 30,
        spill_bytes: int = 0,
        allow_remote_code: bool = False,
        remote: RemoteModel | None = None,
        remote_slots: int = 64,
    ) -> None:
        self.store = store
        self.remote = remote  # runs go to this engine when set; `loaded` is then a local copy for views
        self.slot = ModelSlot(loaded, cache_bytes, spill_bytes)
        self.background = BackgroundCapture(self.slot)
        self.progress = ProgressBoard()  # the views being computed, for GET /api/runs/{id}/progress
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.runs = LocalRuns(self.slot, store, queue_size, self._jobs.put, self._after_run)
        self.remote_runs = RemoteRuns(store, remote_slots)
        self.loader = ModelLoader(self.slot, allow_remote_code, on_swap=self.background.forget)
        self._thread = threading.Thread(target=self._work, name="llmvis-model", daemon=True)
        self._thread.start()

    # state the routes show ---------------------------------------------------------------------

    @property
    def loaded(self) -> LoadedModel | None:
        return self.slot.loaded

    @property
    def cache(self) -> CaptureCache:
        return self.slot.cache

    @property
    def running(self) -> bool:
        return self.runs.running is not None or self.remote_runs.active > 0

    @property
    def waiting(self) -> int:
        return self.runs.waiting

    @property
    def capturing(self) -> bool:
        return self.background.active

    @property
    def captures(self) -> int:
        return self.background.captures

    @property
    def loading(self) -> LoadingState | None:
        return self.loader.loading

    @property
    def last_load_error(self) -> str | None:
        return self.loader.last_error

    # what the routes ask -----------------------------------------------------------------------

    def submit_run(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        *,
        parent_id: str | None = None,
        fork_position: int | None = None,
    ) -> RunTicket:
        """Validate eagerly (GenerationError → 422 before any stream) and queue the run.
        Blocking (tokenises under the model lock): call it from a worker thread."""
        if self.remote is not None:
            return self.remote_runs.submit(self.remote, request, loop, parent_id, fork_position)
        self.background.supersede()  # a new run supersedes the background capture
        ticket = self.runs.submit(request, loop, parent_id, fork_position)
        self.background.supersede()  # also one that started meanwhile
        return ticket

    def submit_load(self, request: LoadModelRequest, loop: asyncio.AbstractEventLoop) -> LoadTicket:
        """Check the spec eagerly (ModelLoadError → 4xx before any stream), then queue the load."""
        ticket = self.loader.ticket(request, loop)
        self.background.supersede()
        self._jobs.put(lambda: self.loader.load(ticket, self.remote))
        return ticket

    def compute_view(self, trace: Trace, name: str, params: Any) -> BaseModel:
        """Compute one view of a run (blocking: call from a worker thread); a view of one token
        of a local run makes that token the one whose graph the worker computes next."""
        result = compute_view(self.slot, trace, name, params, self.progress)
        position, loaded = getattr(params, "position", None), self.slot.loaded
        if (
            isinstance(position, int)
            and self.remote is None
            and loaded is not None
            and VIEWS[name].needs_internals
            and same_weights(loaded.info, trace.model)
            and all(i >= 0 for i in trace.ids)
            and self.background.focus(loaded, trace.ids, position, name, trace)
        ):
            self._jobs.put(lambda: None)  # wake the worker: it runs the background when idle
        return result

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()
        self.runs.cancel_running()
        self.background.supersede()
        self._jobs.put(None)
        self._thread.join(timeout=10)

    # the worker --------------------------------------------------------------------------------

    def _after_run(self, ticket: RunTicket) -> None:
        """A local run finished: when the worker is idle, capture its internals (unless it kept
        them as it generated) and compute its heavy summaries ahead."""
        generation = ticket.generation
        if ticket.loaded is not None and generation is not None and generation.trace.finish_reason != "error":
            self.background.schedule(ticket.loaded, generation.trace.ids)

    def _work(self) -> None:
        while True:
            if self.background.pending and self._jobs.empty():
                self.background.run(idle=self._jobs.empty)
                continue
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # a job never kills the worker
                log.exception("engine job failed")
