"""Local runs: queued behind each other on the model's worker, each step under the model lock.

Why one at a time: a model generates one sequence at a time fastest, and two runs sharing it
would each be slower than both in turn. Requests wait in a bounded queue (`queue_size` runs
behind the running one); beyond it `QueueFull` becomes HTTP 429 with Retry-After, estimated
from the last runs' durations.

The worker hands a run's events to its client (`stream`, shared with remote runs); a client
that goes away sets the run's cancel event and generation stops at its next step. An exception
(out-of-memory included) ends the run with an `error` event and its partial trace saved as
failed; the worker goes on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

import torch

from llmvis.generation import start_generation
from llmvis.generation.errors import GenerationError
from llmvis.generation.events import DoneEvent, GenerationEvent, RunProducer
from llmvis.server.background import KeepCapture
from llmvis.server.schemas import ErrorEvent
from llmvis.server.slot import FairLock, ModelSlot
from llmvis.server.tickets import END, NoModel, QueueFull, RunTicket, error_message, is_oom
from llmvis.store import Store
from llmvis.trace import GenerationRequest, Trace

log = logging.getLogger("llmvis.server")


class LocalRuns:
    def __init__(
        self,
        slot: ModelSlot,
        store: Store,
        queue_size: int,
        enqueue: Callable[[Callable[[], None]], None],
        on_done: Callable[[RunTicket], None],
    ) -> None:
        """`enqueue` puts a job on the worker; `on_done(ticket)` follows each run that finished."""
        self.slot = slot
        self.store = store
        self.queue_size = queue_size
        self._enqueue = enqueue
        self._on_done = on_done
        self._state = threading.Lock()
        self.waiting = 0
        self.running: RunTicket | None = None
        self._durations: deque[float] = deque([5.0], maxlen=8)

    def submit(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        parent_id: str | None,
        fork_position: int | None,
    ) -> RunTicket:
        """Validate eagerly (GenerationError → 422 before any stream) and queue the run.
        Blocking (tokenises under the model lock): call it from a worker thread."""
        loaded = self.slot.loaded
        if loaded is None:
            raise NoModel("no model is loaded: load one with POST /api/model/load")
        self._reserve()
        ticket = RunTicket(loop=loop, request=request, loaded=loaded, parent_id=parent_id, fork_position=fork_position)
        try:
            with self.slot.lock:
                ticket.generation = start_generation(loaded, request, ticket.cancel, KeepCapture(self.slot, loaded))
        except BaseException:
            with self._state:
                self.waiting -= 1
            raise
        self._enqueue(lambda: self._run(ticket))
        return ticket

    def cancel_running(self) -> None:
        running = self.running
        if running is not None:
            running.cancel.set()

    def _reserve(self) -> None:
        with self._state:
            busy = self.running is not None or self.waiting > 0
            if busy and self.waiting >= self.queue_size:
                average = sum(self._durations) / len(self._durations)
                raise QueueFull(self.waiting, max(1, math.ceil(average * (self.waiting + 1))))
            self.waiting += 1

    def _run(self, ticket: RunTicket) -> None:
        """The job on the worker: generate, stream, save."""
        with self._state:
            self.waiting -= 1
            self.running = ticket
        started: float | None = time.perf_counter()
        try:
            if ticket.cancel.is_set():
                started = None  # the client left while the run waited: nothing was generated
                return
            if ticket.loaded is not self.slot.loaded and not self._restart(ticket):
                return
            assert ticket.generation is not None
            stream(ticket, locked_steps(ticket.generation, self.slot.lock), self.store)
            self._on_done(ticket)
        finally:
            if started is not None:  # for the Retry-After estimate
                self._durations.append(time.perf_counter() - started)
            with self._state:
                self.running = None
            ticket.finished.set()
            ticket.emit(END)

    def _restart(self, ticket: RunTicket) -> bool:
        """Another model was loaded while the run waited: start it again on that one."""
        assert ticket.request is not None
        loaded = self.slot.loaded
        if loaded is None:
            fail(ticket, NoModel("the model was unloaded before this run started"), self.store)
            return False
        with self.slot.lock:
            try:
                keep = KeepCapture(self.slot, loaded)
                ticket.generation = start_generation(loaded, ticket.request, ticket.cancel, keep)
            except Exception as exc:
                fail(ticket, exc, self.store)
                return False
        ticket.loaded = loaded
        return True


def locked_steps(generation: RunProducer, lock: FairLock) -> Iterator[GenerationEvent]:
    """Iterate a generation, holding the model lock for each step only."""
    iterator = iter(generation)
    while True:
        with lock:
            try:
                event = next(iterator)
            except StopIteration:
                return
        yield event


def stream(ticket: RunTicket, events: Iterator[GenerationEvent], store: Store) -> None:
    """Forward a run's events to its client; `done` only once the trace is saved (so that
    GET /api/runs/{id} finds it), an `error` event with the failed run saved."""
    try:
        done: DoneEvent | None = None
        for event in events:
            if isinstance(event, DoneEvent):
                done = event
            else:
                ticket.emit(event)
        assert ticket.generation is not None
        save(ticket, ticket.generation.trace, store)
        if done is not None:
            ticket.emit(done)
    except Exception as exc:
        fail(ticket, exc, store)


def fail(ticket: RunTicket, exc: Exception, store: Store) -> None:
    message = error_message(exc)
    log.warning("run failed: %s", message, exc_info=not is_oom(exc) and not isinstance(exc, GenerationError))
    run_id = _save_failed(ticket, message, store)
    if is_oom(exc) and torch.cuda.is_available():
        torch.cuda.empty_cache()
    ticket.emit(ErrorEvent(message=message, run_id=run_id))


def save(ticket: RunTicket, trace: Trace, store: Store) -> None:
    trace.parent_id = ticket.parent_id
    trace.fork_position = ticket.fork_position
    store.save(trace)


def _save_failed(ticket: RunTicket, message: str, store: Store) -> str | None:
    trace = ticket.generation.trace if ticket.generation is not None else None
    if trace is None:
        return None
    try:
        trace.finish_reason = "error"
        trace.error = message
        save(ticket, trace, store)
    except Exception:
        log.exception("could not save the failed run")
        return None
    return trace.id
