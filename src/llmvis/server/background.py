"""A run's capture in the cache before its first click: kept while it generates
(`KeepCapture`), or else, after the run, while nothing waits, its teacher-forced capture runs
on the worker (`BackgroundCapture`), which then computes the run's heavy summaries ahead
(analyses/warm.py), giving a waiting request the model lock between layers.

A new run or load supersedes it: the capture's forward raises at its next decoder layer and
is tried again once the worker is idle, unless a newer run replaced it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from llmvis.analyses.warm import warm_up
from llmvis.capture import Capture
from llmvis.generation.overlap import fewer_threads
from llmvis.internals import Internals, default_key
from llmvis.models.loaded import LoadedModel
from llmvis.server.slot import ModelSlot

log = logging.getLogger("llmvis.server")


class KeepCapture:
    """Where a local run's capture, recorded as it generated, goes: the cache, under the key its
    views look for. Only for a model whose load-time check verified that capture, and a run
    whose capture fits the cache's budget (longer ones are captured after the run, if at all).

    Only on the CPU, unless `accelerators`: on a GPU a decode step is so short that the hooks'
    Python work shows (the bundled model's shape on an H200 generated at 0.68–0.83× `generate`'s
    speed with the capture kept, 0.99–1.07× without), while the teacher-forced capture after
    the run takes a fraction of a second there."""

    def __init__(self, slot: ModelSlot, loaded: LoadedModel, accelerators: bool = False) -> None:
        self.slot = slot
        self.loaded = loaded
        self.accelerators = accelerators

    def fits(self, positions: int) -> bool:
        report = self.loaded.info.internals
        if report is None or not report.live_capture or not report.capture_bytes_per_token:
            return False
        if not self.accelerators and not on_cpu(self.loaded):
            return False
        return report.capture_bytes_per_token * positions <= self.slot.cache.max_bytes

    def __call__(self, ids: list[int], capture: Capture) -> None:
        if self.loaded is self.slot.loaded:
            self.slot.cache.put(default_key(self.loaded, ids), capture, capture.nbytes)


def on_cpu(loaded: LoadedModel) -> bool:
    """Every layer on the CPU (or offloaded to disk): no accelerator in the model's path."""
    return all(part in ("cpu", "disk") for part in loaded.info.device.split("+"))


class _Superseded(Exception):
    """Raised inside the capture's forward pass when a job arrives."""


class BackgroundCapture:
    def __init__(self, slot: ModelSlot) -> None:
        self.slot = slot
        self.cancel = threading.Event()  # set: the running capture stops at its next layer
        self.captures = 0  # finished captures (for tests and the bench)
        self.warmed = 0  # runs whose summaries were all computed ahead
        self._pending: tuple[LoadedModel, list[int]] | None = None
        self._running = False

    @property
    def pending(self) -> bool:
        return self._pending is not None

    @property
    def active(self) -> bool:
        """A capture is running or about to start."""
        return self._running or self._pending is not None

    def schedule(self, loaded: LoadedModel, ids: list[int]) -> None:
        """Capture this run next time the worker is idle (replacing any older pending one)."""
        self._pending = (loaded, ids)

    def forget(self) -> None:
        self._pending = None

    def supersede(self) -> None:
        self.cancel.set()

    def run(self, idle: Callable[[], bool]) -> None:
        """Capture the pending run now, on the worker; `idle()` says whether no job waits."""
        self._running = True
        pending, self._pending = self._pending, None
        try:
            if pending is None:
                return
            loaded, ids = pending
            self.cancel.clear()
            if not idle() or loaded is not self.slot.loaded:
                return
            internals = Internals(loaded, ids, cache=self.slot.cache)
            with self.slot.lock, interruptible(loaded.arch.layers, self.cancel):
                if internals.key not in self.slot.cache:
                    internals.capture()
                    self.captures += 1
                report = loaded.info.internals
                # a core stays free for the page and the requests of the clicks it is ahead of
                with fewer_threads(max(1, torch.get_num_threads() - 1)):
                    warm_up(internals, self._pause, report.unavailable if report is not None else None)
            self.warmed += 1
        except _Superseded:
            if self._pending is None:  # nothing newer: try again once the queue is idle
                self._pending = pending
        except Exception:
            log.warning("background capture failed", exc_info=True)
        finally:
            self._running = False

    def _pause(self) -> None:
        """Between two layers of a summary: stop for a new job, else let a waiting view in."""
        if self.cancel.is_set():
            raise _Superseded
        self.slot.lock.__exit__()
        self.slot.lock.__enter__()
        if self.cancel.is_set():
            raise _Superseded


@contextlib.contextmanager
def interruptible(layers: list[Any], cancel: threading.Event) -> Iterator[None]:
    """Raise `_Superseded` at the next decoder layer once `cancel` is set (in this thread only:
    the model may be running elsewhere too)."""
    me = threading.get_ident()

    def check(*_: object) -> None:
        if cancel.is_set() and threading.get_ident() == me:
            raise _Superseded

    handles = [layer.register_forward_pre_hook(check) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
