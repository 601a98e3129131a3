"""A run's capture in the cache before its first click: kept while it generates
(`KeepCapture`), or else, after the run, while nothing waits, its teacher-forced capture runs
on the worker (`BackgroundCapture`), which then computes the run's heavy summaries ahead
(analyses/warm.py), giving a waiting request the model lock between layers.

The token the user selected comes first, after the head scores of a short run
(warm.EARLY_WARMERS: the Heads tab, next after the Attention tab, waits for them): once a view of
a run is asked for one position, that token's contribution graph (the heaviest view of a token:
a second of one core at T = 1,536) is computed at the summaries' next pause (or in a pass of its
own after them), its nodes kept for the Contributions tab. After the cheap summaries instead, it
had only the seconds between a user's first clicks and left most of the graph to the
Contributions tab (docs/ARCHITECTURE.md). Then, after the tabs' summaries, the graphs of the
tokens beside it, the arrow keys' next stops (the next one in the way the selection last moved
first; each with the tab's per-token views first, views.KEPT_VIEWS, when the token was selected
on the Contributions tab), before the late summaries (warm.LATE_WARMERS) and at their pauses.

A new run or load supersedes it: the capture's forward raises at its next decoder layer and
is tried again once the worker is idle, unless a newer run replaced it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch

from llmvis.analyses.flow import warm_graph
from llmvis.analyses.registry import VIEWS, ViewContext, compute
from llmvis.analyses.warm import warm_up
from llmvis.capture import Capture
from llmvis.generation.overlap import fewer_threads
from llmvis.internals import MEAN_ROWS, Internals, default_key
from llmvis.kept_attention import Staircase
from llmvis.models.loaded import LoadedModel
from llmvis.server.slot import ModelSlot
from llmvis.server.views import KEPT_VIEWS, keep_view, kept_view_key
from llmvis.trace import Trace

log = logging.getLogger("llmvis.server")
views_log = logging.getLogger("llmvis.views")  # `llmvis serve --log-views`


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

    def staircase(self, positions: int) -> Staircase | None:
        """A layer's Ā for a run of up to `positions`, to fill while it generates, when every
        layer's fits the cache beside the capture; else None: spilling it meanwhile (T = 8,000 on
        the bundled model) slowed the decode steps 1.7× (bench/browser.py), so a longer run's
        Ā is left to the summary ahead, which spills it after the run."""
        report = self.loaded.info.internals
        if report is None or not report.capture_bytes_per_token:
            return None
        nbytes = len(self.loaded.arch.layers) * Staircase.nbytes(positions, MEAN_ROWS)
        if report.capture_bytes_per_token * positions + nbytes > self.slot.cache.max_bytes:
            return None
        return Staircase(positions, MEAN_ROWS)

    def __call__(self, ids: list[int], capture: Capture, mean_attention: dict[int, Staircase]) -> None:
        """The capture into the cache, and the rows of Ā made meanwhile where the summary ahead
        goes on from them (as from its own pause: CaptureCache.start)."""
        if self.loaded is not self.slot.loaded:
            return
        key = default_key(self.loaded, ids)
        self.slot.cache.put(key, capture, capture.nbytes)
        for layer, stairs in mean_attention.items():
            stairs.cut_to(len(ids))
            self.slot.cache.start((key, "mean_attention", layer), stairs)


def on_cpu(loaded: LoadedModel) -> bool:
    """Every layer on the CPU (or offloaded to disk): no accelerator in the model's path."""
    return all(part in ("cpu", "disk") for part in loaded.info.device.split("+"))


class _Superseded(Exception):
    """Raised inside the capture's forward pass when a job arrives."""


class _Moved(Exception):
    """Raised inside a neighbour's graph when another token was selected (and warmed) meanwhile."""


NEIGHBOURS = 2  # tokens beside the selected one whose graphs are made ahead: the next, the previous
KEPT_POSITIONS = 64  # warmed positions remembered per run (older ones are simply warmed again)
CONTRIBUTION_VIEWS = ("head_contributions", "neuron_contributions", "contribution_graph")


class BackgroundCapture:
    def __init__(self, slot: ModelSlot) -> None:
        self.slot = slot
        self.cancel = threading.Event()  # set: the running capture stops at its next layer
        self.captures = 0  # finished captures (for tests and the bench)
        self.warmed = 0  # runs whose summaries were all computed ahead
        self._pending: tuple[LoadedModel, list[int]] | None = None
        self._running = False
        self._focus: tuple[Any, int] | None = None  # (run's key, position) selected, not yet warmed
        self._warmed_focus: tuple[Any, int] | None = None
        self._internals: Internals | None = None  # the run being warmed
        self._in_focus = False
        self._early = False  # the early summaries run (warm.EARLY_WARMERS): the selected token waits
        self._late = False  # the late summaries run (warm.LATE_WARMERS)
        self._on_contributions = False  # the last token was selected by a Contributions tab's view
        # (then its neighbours' per-token views are made too)
        self._in_neighbours = False
        self._step = 1  # the way the selection last moved (+1: on, -1: back)
        self._selections = 0  # tokens selected so far (a neighbour's graph stops when it changes)
        self._warmed: dict[Any, list[Any]] = {}  # run key → what was made ahead: positions (their
        # graphs) and ("views", position)
        self._trace: tuple[Any, Trace] | None = None  # (run key, its trace): the last selection's

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
        self._focus = None

    def focus(
        self, loaded: LoadedModel, ids: list[int], position: int, view: str = "", trace: Trace | None = None
    ) -> bool:
        """View `view` of this run (`trace`) was asked at `position`: warm that token's graph next
        (at the running summaries' next pause, or in a pass of its own), then its neighbours'
        graphs, after the tabs' summaries, with their per-token views (views.KEPT_VIEWS) first
        when the view is one of the Contributions tab's (the tab the user looks at needs them).
        Whether the worker has new work (then wake it)."""
        report = loaded.info.internals
        if report is not None and "contribution_graph" in report.unavailable:
            return False
        target = (default_key(loaded, ids), position)
        if target in (self._focus, self._warmed_focus):
            return False
        last = self._focus or self._warmed_focus
        if last is not None and last[0] == target[0] and last[1] != position:
            self._step = 1 if position > last[1] else -1
        self._focus = target
        self._selections += 1
        self._on_contributions = view in CONTRIBUTION_VIEWS
        if trace is not None:
            self._trace = (target[0], trace)
        if self._running:  # warmed at its next pause; another run's, once this pass is over
            warming = self._internals
            if self._pending is None and warming is not None and warming.key != target[0]:
                self._pending = (loaded, ids)
            return False
        if self._pending is not None:
            return False
        self._pending = (loaded, ids)
        return True

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
                    self._internals = internals
                    unavailable = report.unavailable if report is not None else None
                    self._early = True  # the head scores go before the selected token's graph
                    warm_up(internals, self._pause, unavailable, "early")
                    self._early = False
                    self._warm_focus()  # (a token selected during the capture or the head scores)
                    warm_up(internals, self._pause, unavailable)
                    self._warm_focus()  # (a token selected after the last pause)
                    self._warm_neighbours()
                    self._late = True  # the selected token's neighbours now go first at pauses too
                    warm_up(internals, self._pause, unavailable, "late")
                    self._warm_focus()
                    self._warm_neighbours()
            self.warmed += 1
        except _Superseded:
            if self._pending is None:  # nothing newer: try again once the queue is idle
                self._pending = pending
        except Exception:
            log.warning("background capture failed", exc_info=True)
        finally:
            self._running = False
            self._internals = None
            self._late = self._early = False

    def _pause(self) -> None:
        """Between two layers of a summary: stop for a new job, else let a waiting view in."""
        if self.cancel.is_set():
            raise _Superseded
        self.slot.lock.__exit__()
        self.slot.lock.__enter__()
        if self.cancel.is_set():
            raise _Superseded
        self._warm_focus()
        if self._late:
            self._warm_neighbours()

    def _warm_focus(self) -> None:
        """The selected token's graph, if it is of the run being warmed and not warmed yet."""
        internals, focus = self._internals, self._focus
        if self._in_focus or self._early or internals is None or focus is None or focus[0] != internals.key:
            return
        self._in_focus = True
        try:
            started = time.perf_counter()
            warm_graph(internals, focus[1], self._pause)
            self._warmed_focus = focus
            self._remember(focus)
            if self._focus == focus:
                self._focus = None
            took = time.perf_counter() - started
            views_log.info("selected token's graph ahead (%d): %.3f s (pauses included)", focus[1], took)
        except _Superseded:
            raise
        except Exception as exc:  # (NotAvailable, say): the view says why when it is asked
            log.debug("no graph ahead for position %d: %s", focus[1], exc)
            self._warmed_focus, self._focus = focus, None
        finally:
            self._in_focus = False

    def _warm_neighbours(self) -> None:
        """The graphs of the tokens beside the selected one (and their per-token views, selected
        on the Contributions tab), each stopped when another token is selected (warmed at that
        pause; then its neighbours come next) or another run's work waits."""
        if self._in_neighbours or self._in_focus:  # (not inside the selected token's graph)
            return
        self._in_neighbours = True
        try:
            self._neighbours()
        finally:
            self._in_neighbours = False

    def _neighbours(self) -> None:
        while (internals := self._internals) is not None:
            self._warm_focus()  # a token selected and not warmed yet goes first
            focus, selections = self._warmed_focus, self._selections
            if focus is None or focus[0] != internals.key or self._focus is not None or self._pending is not None:
                return
            done = self._warmed.get(focus[0], [])
            trace = self._trace[1] if self._trace is not None and self._trace[0] == focus[0] else None
            with_views = self._on_contributions and trace is not None
            ahead = [focus[1] + self._step, focus[1] - self._step][:NEIGHBOURS]
            todo = [
                item
                for p in ahead
                if 1 <= p < internals.n_positions
                for item in ((("views", p),) if with_views else ()) + (p,)
                if item not in done
            ]
            if not todo:
                return
            item, pause = todo[0], partial(self._neighbour_pause, selections)
            try:
                started = time.perf_counter()
                if isinstance(item, tuple):
                    assert trace is not None
                    self._make_views(internals, trace, item[1], pause)
                else:
                    warm_graph(internals, item, pause)
                took = time.perf_counter() - started
                what, position = ("views", item[1]) if isinstance(item, tuple) else ("graph", item)
                views_log.info("neighbour's %s ahead (%d): %.3f s (pauses included)", what, position, took)
            except _Moved:
                continue
            except _Superseded:
                raise
            except Exception as exc:  # the view says why when it is asked
                log.debug("nothing ahead for %s: %s", item, exc)
            self._remember((focus[0], item))

    def _make_views(self, internals: Internals, trace: Trace, position: int, pause: Callable[[], None]) -> None:
        """The Contributions tab's per-token views of `position`, with the params it asks them with."""
        report = internals.loaded.info.internals
        ctx = ViewContext(trace=trace, loaded=internals.loaded, internals=internals)
        for name in KEPT_VIEWS:
            if report is not None and name in report.unavailable:
                continue
            params = VIEWS[name].params(position=position)
            if internals.cache.peek(kept_view_key(internals, name, params)) is None:
                keep_view(internals, name, params, compute(name, ctx, params))
            pause()

    def _neighbour_pause(self, selections: int) -> None:
        self._pause()
        if self._selections != selections or self._pending is not None:
            raise _Moved

    def _remember(self, target: tuple[Any, Any]) -> None:
        if target[0] not in self._warmed:
            self._warmed = {target[0]: []}  # (one run's positions at a time)
        done = self._warmed[target[0]]
        if target[1] not in done:
            done.append(target[1])
            del done[:-KEPT_POSITIONS]


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
