"""What the views being computed now have done so far, so that a page waiting seconds for one
(the Attribution tab's first rollout of a long run: the attention of every layer) can say what
it is waiting for instead of "Computing…" alone. Views report through ViewContext.progress; the
page asks GET /api/runs/{id}/progress while its request is pending."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

WAITING = "waiting"  # the step of a view queued behind another view or a summary


class ViewActivity(BaseModel):
    view: str
    step: str = Field(
        description="waiting (for the model: another view or a summary has it), computing, or a step "
        "that counts its units: rollout (attention rollout, layers), graph (contribution graph, "
        "layers), rows (a layer's attention, query rows), steps (integrated gradients)"
    )
    done: int = Field(description="units of the step done")
    total: int = Field(description="units in all (0: the step does not count them)")
    seconds: float = Field(description="since the view was asked")


class RunProgress(BaseModel):
    views: list[ViewActivity] = Field(description="the views of this run being computed now, oldest first")


@dataclass
class _Entry:
    run_id: str
    view: str
    asked: float = field(default_factory=time.perf_counter)
    step: str = WAITING
    done: int = 0
    total: int = 0

    def update(self, step: str, done: int, total: int) -> None:
        self.step, self.done, self.total = step, done, total  # (read by another thread: plain fields)


class ProgressBoard:
    """The views being computed, by run; entries live for the duration of their computation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self._ids = itertools.count()

    @contextmanager
    def track(self, run_id: str, view: str) -> Iterator[_Entry]:
        entry, key = _Entry(run_id, view), next(self._ids)
        with self._lock:
            self._entries[key] = entry
        try:
            yield entry
        finally:
            with self._lock:
                del self._entries[key]

    def of(self, run_id: str) -> RunProgress:
        with self._lock:
            entries = [e for e in self._entries.values() if e.run_id == run_id]
        now = time.perf_counter()
        return RunProgress(
            views=[
                ViewActivity(view=e.view, step=e.step, done=e.done, total=e.total, seconds=round(now - e.asked, 2))
                for e in entries
            ]
        )
