"""Turn a run ticket's events into SSE events, cancelling the run when the client goes away.

When the client disconnects, Starlette cancels the response; the generator below is then
closed and its `finally` sets the run's cancel event, which generation checks every step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi.sse import ServerSentEvent

from llmvis.server.tickets import END, RunTicket


async def run_events(ticket: RunTicket) -> AsyncIterator[ServerSentEvent]:
    try:
        while (event := await ticket.events.get()) is not END:
            yield ServerSentEvent(event=event.type, data=event)
    finally:
        if not ticket.finished.is_set():
            ticket.cancel.set()
