"""Runs on a remote engine: no local model to share, so each streams in a thread of its own, up
to `remote_slots` at once (`--remote-slots`); beyond that the route answers 429."""

from __future__ import annotations

import asyncio
import threading

from llmvis.remote.generate import RemoteGeneration
from llmvis.remote.model import RemoteModel
from llmvis.server.runs import stream
from llmvis.server.tickets import END, QueueFull, RunTicket
from llmvis.store import Store
from llmvis.trace import GenerationRequest


class RemoteRuns:
    def __init__(self, store: Store, slots: int) -> None:
        self.store = store
        self.slots = slots
        self.active = 0
        self._state = threading.Lock()

    def submit(
        self,
        remote: RemoteModel,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        parent_id: str | None,
        fork_position: int | None,
    ) -> RunTicket:
        """Validate the request (GenerationError → 422) and start streaming it from the engine."""
        with self._state:
            if self.active >= self.slots:
                raise QueueFull(self.active, 2)
            self.active += 1
        ticket = RunTicket(loop=loop, request=request, parent_id=parent_id, fork_position=fork_position)
        try:
            parent = self.store.get(parent_id) if parent_id else None
            ticket.generation = RemoteGeneration(remote, request, ticket.cancel, parent)
        except BaseException:
            self._release()
            raise
        threading.Thread(target=self._run, args=(ticket,), name="llmvis-remote-run", daemon=True).start()
        return ticket

    def _run(self, ticket: RunTicket) -> None:
        try:
            assert ticket.generation is not None
            stream(ticket, iter(ticket.generation), self.store)
        finally:
            self._release()
            ticket.finished.set()
            ticket.emit(END)

    def _release(self) -> None:
        with self._state:
            self.active -= 1
