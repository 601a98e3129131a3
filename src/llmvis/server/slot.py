"""The local model the server computes with, shared by runs, views, loads and the background
capture: the model itself, the lock they take turns on, and the cache of its runs' captures.

Why one FIFO lock taken per generation step: a click on a view during a long run then waits for
one step, not the run, and a steady stream of steps cannot starve a waiting view.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from llmvis.capture_cache import CaptureCache
from llmvis.models.loaded import LoadedModel


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
class ModelSlot:
    loaded: LoadedModel | None
    cache_bytes: int
    spill_bytes: int = 0
    lock: FairLock = field(default_factory=FairLock)
    cache: CaptureCache = field(init=False)

    def __post_init__(self) -> None:
        self.cache = CaptureCache(max_bytes=self.cache_bytes, spill_bytes=self.spill_bytes)

    def replace(self, loaded: LoadedModel) -> LoadedModel | None:
        """Put another model in (between two steps), with an empty cache; returns the old one."""
        with self.lock:
            old, self.loaded = self.loaded, loaded
            self.cache = CaptureCache(max_bytes=self.cache_bytes, spill_bytes=self.spill_bytes)
        return old
