"""The engine: one worker thread owns the model; runs, loads and the background capture queue up.

Why a single worker: a model generates one sequence at a time fastest, and two runs sharing
it would each be slower than both in turn. Requests wait in a bounded queue (`queue_size`
runs behind the running one); beyond it `QueueFull` becomes HTTP 429 with Retry-After.

The model is shared with view computations through `model_lock`, a FIFO lock taken per
generation step, so a click on a view during a long run waits for one step, not the run.
The worker hands events to the request's event loop; a client that goes away sets the run's
cancel event and generation stops at its next step. Exceptions (and out-of-memory) inside a
run end it with an `error` event and a partial trace saved as failed; the worker goes on.

After a run, while nothing waits, the worker runs the teacher-forced internals capture so
that the first click on a view is fast; a new run interrupts it at the next decoder layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from llmvis.generation.errors import GenerationError
from llmvis.generation.events import DoneEvent
from llmvis.models.loaded import LoadedModel
from llmvis.remote.model import RemoteModel
from llmvis.server.schemas import (
    ErrorEvent,
    LoadDoneEvent,
    LoadingState,
    LoadModelRequest,
    LoadProgressEvent,
)
from llmvis.store import Store
from llmvis.trace import GenerationRequest, Trace

log = logging.getLogger("llmvis.server")

END = object()
"""Sentinel put on a ticket's event queue after its last event."""


class QueueFull(Exception):
    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(f"{waiting} runs are already waiting; try again in about {retry_after} s")
        self.retry_after = retry_after


class NoModel(Exception):
    """No model is loaded (yet): load one with POST /api/model/load."""


class Busy(Exception):
    """A model load is already in progress."""


class NeedsModel(Exception):
    """A view needs the weights of the run's model, which is not the loaded one."""


class _Superseded(Exception):
    """Raised inside the background capture's forward pass when a run arrives."""


class FairLock:
    """A FIFO lock: waiters are served in arrival order, so a per-step holder cannot starve others."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0

    def __enter__(self) -> FairLock:
        with self._cond:
            ticket = self._next
            self._next += 1
            while self._serving != ticket:
                self._cond.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


@dataclass
class Ticket:
    """One streamed job (a run or a model load): events flow from the worker to one client."""

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
    loaded: LoadedModel | None = None
    generation: Any = None  # llmvis.generation.Generation
    parent_id: str | None = None
    fork_position: int | None = None


@dataclass
class LoadTicket(Ticket):
    request: LoadModelRequest | None = None


def is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom) or "out of memory" in str(exc).lower()


def error_message(exc: BaseException) -> str:
    if is_oom(exc):
        return "out of memory during the run: try fewer new tokens, a shorter prompt or a smaller model"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:1000]


def _decoder_layers(model: Any) -> list[Any]:
    """The model's decoder layers: the longest nn.ModuleList in it."""
    best: list[Any] = []
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > len(best):
            best = list(module)
    return best


@contextlib.contextmanager
def interruptible(model: Any, cancel: threading.Event) -> Iterator[None]:
    """Raise `_Superseded` at the next decoder layer once `cancel` is set (in this thread only:
    the model may be running elsewhere too)."""
    me = threading.get_ident()

    def check(*_: object) -> None:
        if cancel.is_set() and threading.get_ident() == me:
            raise _Superseded

    handles = [layer.register_forward_pre_hook(check) for layer in _decoder_layers(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _same_model(local: Any, run: Any) -> bool:
    """Whether the loaded model's weights can compute the views of a run of model `run`: the
    same model, or for a remote engine's run a local copy with the same vocabulary."""
    if run.source == "remote":
        return local.tokenizer_hash is not None and local.tokenizer_hash == run.tokenizer_hash
    return local.name == run.name and local.path == run.path and local.vocab_size == run.vocab_size


class Engine:
    def __init__(
        self,
        loaded: LoadedModel | None,
        store: Store,
        *,
        queue_size: int = 4,
        cache_bytes: int = 1 << 30,
        allow_remote_code: bool = False,
        remote: RemoteModel | None = None,
        remote_slots: int = 64,
    ) -> None:
        self.loaded = loaded  # with a remote engine: the local copy that views use, if attached
        self.remote = remote  # runs go to this engine when set
        self.remote_slots = remote_slots
        self._remote_active = 0
        self.store = store
        self.queue_size = queue_size
        self.allow_remote_code = allow_remote_code
        self.model_lock = FairLock()
        self._cache_bytes = cache_bytes
        self.cache = self._new_cache()
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._state = threading.Lock()
        self._waiting = 0
        self._running: RunTicket | None = None
        self._loading: LoadingState | None = None
        self.last_load_error: str | None = None
        self._durations: deque[float] = deque([5.0], maxlen=8)
        self._pending_capture: tuple[LoadedModel, list[int]] | None = None
        self._capture_cancel = threading.Event()
        self.captures = 0  # finished background captures (for tests and the bench)
        self._capturing = False
        self._thread = threading.Thread(target=self._work, name="llmvis-model", daemon=True)
        self._thread.start()

    # state ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running is not None or self._remote_active > 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def capturing(self) -> bool:
        """A background capture is running or about to start."""
        return self._capturing or self._pending_capture is not None

    @property
    def loading(self) -> LoadingState | None:
        return self._loading

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()
        running = self._running
        if running is not None:
            running.cancel.set()
        self._capture_cancel.set()
        self._jobs.put(None)
        self._thread.join(timeout=10)

    def _new_cache(self) -> Any:
        try:
            from llmvis.internals import ActivationCache
        except ImportError:  # internals not available: views compute without a shared cache
            return None
        return ActivationCache(max_bytes=self._cache_bytes)

    # runs -----------------------------------------------------------------------------------

    def _reserve(self) -> None:
        with self._state:
            busy = self._running is not None or self._waiting > 0
            if busy and self._waiting >= self.queue_size:
                average = sum(self._durations) / len(self._durations)
                retry = max(1, math.ceil(average * (self._waiting + 1)))
                raise QueueFull(self._waiting, retry)
            self._waiting += 1

    def _release(self) -> None:
        with self._state:
            self._waiting -= 1

    def submit_run(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        *,
        parent_id: str | None = None,
        fork_position: int | None = None,
    ) -> RunTicket:
        """Validate eagerly (GenerationError → 422 before any stream) and queue the run.

        Blocking (tokenises under the model lock): call it from a worker thread.
        """
        from llmvis.generation import start_generation

        if self.remote is not None:
            return self._submit_remote(self.remote, request, loop, parent_id, fork_position)
        loaded = self.loaded
        if loaded is None:
            raise NoModel("no model is loaded: load one with POST /api/model/load")
        self._reserve()
        self._capture_cancel.set()  # a new run supersedes the background capture
        ticket = RunTicket(loop=loop, request=request, loaded=loaded, parent_id=parent_id, fork_position=fork_position)
        try:
            with self.model_lock:
                ticket.generation = start_generation(loaded, request, ticket.cancel)
        except BaseException:
            self._release()
            raise
        self._jobs.put(lambda: self._run(ticket))
        self._capture_cancel.set()
        return ticket

    def _run(self, ticket: RunTicket) -> None:
        with self._state:
            self._waiting -= 1
            self._running = ticket
        started: float | None = time.perf_counter()
        try:
            if ticket.cancel.is_set():
                started = None  # the client left while the run waited: nothing was generated
                return
            if ticket.loaded is not self.loaded:  # another model was loaded meanwhile
                from llmvis.generation import start_generation

                assert ticket.request is not None
                loaded = self.loaded
                if loaded is None:
                    self._fail(ticket, NoModel("the model was unloaded before this run started"))
                    return
                with self.model_lock:
                    try:
                        ticket.generation = start_generation(loaded, ticket.request, ticket.cancel)
                    except Exception as exc:
                        self._fail(ticket, exc)
                        return
                ticket.loaded = loaded
            self._stream(ticket, self._steps(ticket.generation))
            if ticket.loaded is not None and ticket.generation.trace.finish_reason != "error":
                self._pending_capture = (ticket.loaded, ticket.generation.trace.ids)
        finally:
            if started is not None:  # for the Retry-After estimate
                self._durations.append(time.perf_counter() - started)
            with self._state:
                self._running = None
            ticket.finished.set()
            ticket.emit(END)

    def _stream(self, ticket: RunTicket, events: Iterator[Any]) -> None:
        """Forward a run's events to its client; done only once the trace is saved (so that
        GET /api/runs/{id} finds it), an error event with the failed run saved."""
        try:
            done: DoneEvent | None = None
            for event in events:
                if isinstance(event, DoneEvent):
                    done = event
                else:
                    ticket.emit(event)
            self._finish(ticket, ticket.generation.trace)
            if done is not None:
                ticket.emit(done)
        except Exception as exc:
            self._fail(ticket, exc)

    def _fail(self, ticket: RunTicket, exc: Exception) -> None:
        message = error_message(exc)
        log.warning("run failed: %s", message, exc_info=not is_oom(exc) and not isinstance(exc, GenerationError))
        run_id = self._save_failed(ticket, ticket.generation, message)
        if is_oom(exc) and torch.cuda.is_available():
            torch.cuda.empty_cache()
        ticket.emit(ErrorEvent(message=message, run_id=run_id))

    # remote runs: no model to share, so each streams in its own thread ------------------------

    def _submit_remote(
        self,
        remote: RemoteModel,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        parent_id: str | None,
        fork_position: int | None,
    ) -> RunTicket:
        from llmvis.remote.generate import RemoteGeneration

        with self._state:
            if self._remote_active >= self.remote_slots:  # --remote-slots
                raise QueueFull(self._remote_active, 2)
            self._remote_active += 1
        ticket = RunTicket(loop=loop, request=request, parent_id=parent_id, fork_position=fork_position)
        try:
            parent = self.store.get(parent_id) if parent_id else None
            ticket.generation = RemoteGeneration(remote, request, ticket.cancel, parent)
        except BaseException:
            with self._state:
                self._remote_active -= 1
            raise
        threading.Thread(target=self._run_remote, args=(ticket,), name="llmvis-remote-run", daemon=True).start()
        return ticket

    def _run_remote(self, ticket: RunTicket) -> None:
        try:
            self._stream(ticket, iter(ticket.generation))
        finally:
            with self._state:
                self._remote_active -= 1
            ticket.finished.set()
            ticket.emit(END)

    def _steps(self, generation: Any) -> Iterator[Any]:
        """Iterate a generation, holding the model lock for each step only."""
        iterator = iter(generation)
        while True:
            with self.model_lock:
                try:
                    event = next(iterator)
                except StopIteration:
                    return
            yield event

    def _finish(self, ticket: RunTicket, trace: Trace) -> Trace:
        trace.parent_id = ticket.parent_id
        trace.fork_position = ticket.fork_position
        self.store.save(trace)
        return trace

    def _save_failed(self, ticket: RunTicket, generation: Any, message: str) -> str | None:
        trace = getattr(generation, "trace", None) if generation is not None else None
        if not isinstance(trace, Trace):
            return None
        try:
            trace.finish_reason = "error"
            trace.error = message
            self._finish(ticket, trace)
        except Exception:
            log.exception("could not save the failed run")
            return None
        return trace.id

    # model loading --------------------------------------------------------------------------

    def submit_load(self, request: LoadModelRequest, loop: asyncio.AbstractEventLoop) -> LoadTicket:
        """Check the spec eagerly (ModelLoadError → 4xx before any stream), then queue the load."""
        from llmvis.models.errors import ModelLoadError
        from llmvis.models.sources import resolve

        if request.trust_remote_code and not self.allow_remote_code:
            raise PermissionError("trust_remote_code is refused: start the server with --trust-remote-code")
        try:
            resolve(request.spec)
        except OSError as exc:  # e.g. a name too long for the file system
            raise ModelLoadError(f"not a usable model path: {exc.strerror or exc}") from exc
        with self._state:
            if self._loading is not None:
                raise Busy(f"already loading {self._loading.spec}")
            self._loading = LoadingState(spec=request.spec, stage="queued", fraction=0.0)
        ticket = LoadTicket(loop=loop, request=request)
        self._capture_cancel.set()
        self._jobs.put(lambda: self._load(ticket))
        return ticket

    def _load(self, ticket: LoadTicket) -> None:
        from llmvis.models import load_model

        request = ticket.request
        assert request is not None

        def progress(stage: str, fraction: float) -> None:
            fraction = min(1.0, max(0.0, float(fraction)))
            self._loading = LoadingState(spec=request.spec, stage=stage, fraction=fraction)
            ticket.emit(LoadProgressEvent(stage=stage, fraction=fraction))

        try:
            loaded = load_model(
                request.spec,
                device=None if request.device in (None, "auto") else request.device,
                dtype=None if request.dtype in (None, "auto") else request.dtype,
                trust_remote_code=request.trust_remote_code,
                progress=progress,
            )
            if self.remote is not None and loaded.info.tokenizer_hash != self.remote.info.tokenizer_hash:
                raise ValueError(
                    f"{loaded.info.name} has another vocabulary than the engine's {self.remote.info.name}: "
                    "a local copy for the views must use the same tokenizer"
                )
            with self.model_lock:
                old, self.loaded = self.loaded, loaded
                self.cache = self._new_cache()
                self._pending_capture = None
            del old  # free the previous model's memory now, not at the next collection
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.last_load_error = None
            ticket.emit(LoadDoneEvent(model=loaded.info))
        except Exception as exc:
            message = str(exc) if isinstance(exc, ValueError) else error_message(exc)
            self.last_load_error = message
            ticket.emit(ErrorEvent(message=message))
        finally:
            with self._state:
                self._loading = None
            ticket.finished.set()
            ticket.emit(END)

    # views ----------------------------------------------------------------------------------

    def compute_view(self, trace: Trace, name: str, params: Any) -> Any:
        """Compute one view of a run (blocking: call from a worker thread).

        Internals come from the loaded model only when it is the run's model.
        """
        from llmvis.analyses.registry import VIEWS, ViewContext, compute

        view = VIEWS[name]
        loaded = self.loaded
        if loaded is not None and not _same_model(loaded.info, trace.model):
            loaded = None
        internals = None
        if view.needs_internals:
            if loaded is None:
                if trace.model.source == "remote":
                    raise NeedsModel(
                        f"the {view.title} view needs the model's weights, which stay on the engine at "
                        f"{trace.model.path}: load a local copy of {trace.model.name} (same tokenizer) to compute it here"
                    )
                raise NeedsModel(
                    f"the {view.title} view needs the weights of {trace.model.name}; load that model first"
                )
            unknown = sum(1 for i in trace.ids if i < 0)
            if unknown:
                raise NeedsModel(f"{unknown} tokens of this run have no id in the local vocabulary")
            from llmvis.internals import Internals

            internals = Internals(loaded, trace.ids, cache=self.cache)
        ctx = ViewContext(trace=trace, loaded=loaded, internals=internals)
        if loaded is None:
            return compute(name, ctx, params)
        with self.model_lock:
            return compute(name, ctx, params)

    # the worker -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            if self._pending_capture is not None and self._jobs.empty():
                self._capture()
                continue
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # a job never kills the worker
                log.exception("engine job failed")

    def _capture(self) -> None:
        """Teacher-forced capture of the last run, interrupted by any new job."""
        self._capturing = True
        pending, self._pending_capture = self._pending_capture, None
        try:
            if pending is None:
                return
            loaded, ids = pending
            self._capture_cancel.clear()
            if not self._jobs.empty() or loaded is not self.loaded or self.cache is None:
                return
            from llmvis.internals import Internals

            internals = Internals(loaded, ids, cache=self.cache)
            with self.model_lock, interruptible(loaded.model, self._capture_cancel):
                internals.capture()
            self.captures += 1
        except _Superseded:
            if self._pending_capture is None:  # nothing newer: try again once the queue is idle
                self._pending_capture = pending
        except Exception:
            log.warning("background capture failed", exc_info=True)
        finally:
            self._capturing = False
