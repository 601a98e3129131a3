"""Prompt statistics beside the decode loop, each on cores of its own.

On a CPU a small model's decode step is bound by memory traffic and per-op overhead: it runs about
as fast on n-1 threads as on n. The prompt's vocabulary projection is compute-bound. So while the
loop decodes on n-1 threads, a worker thread on the last core turns the kept prompt hidden states
into statistics; if the loop finishes first, the worker takes all n threads for what is left.

PyTorch (OpenMP) keeps an intra-op thread count per thread, initialised from a process-wide
default at the thread's first parallel op; `torch.set_num_threads` sets both. Each side sets its
own count, and the default is put back from a throwaway thread so that threads which start using
torch meanwhile (a server's request threads) still get every core.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch

from llmvis.generation.head import DeferredHead
from llmvis.generation.stats import known_rows
from llmvis.models.loaded import LoadedModel

PIECE = 128  # positions per projection: compute-bound, yet short enough to re-plan between pieces


def can_overlap(loaded: LoadedModel) -> bool:
    """Only a CPU model without a device map (whose offload hooks must not run concurrently),
    on at least two threads of PyTorch's OpenMP backend (whose thread counts are per thread)."""
    mapped = bool(getattr(loaded.model, "hf_device_map", None))
    return loaded.device.type == "cpu" and not mapped and torch.get_num_threads() >= 2 and _openmp()


@cache
def _openmp() -> bool:
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


def prompt_row_pieces(head: DeferredHead, ids: torch.Tensor, top_n: int, piece: int) -> Iterator[torch.Tensor]:
    """Rows [C, row_width] of the known tokens after each kept position, `piece` positions at a
    time: the model's head over the kept hidden states, then their statistics."""
    start = 0
    for kept in head.chunks:
        for hidden in kept.split(piece):
            with torch.inference_mode():
                yield known_rows(head.logits(hidden).float(), ids, start, top_n)
            start += hidden.shape[0]


def set_own_threads(n: int) -> None:
    torch.get_num_threads()  # this thread's count is initialised now, not later from the default
    torch.set_num_threads(n)


def restore_default(n: int) -> None:
    helper = threading.Thread(target=torch.set_num_threads, args=(n,), name="llmvis-threads")
    helper.start()
    helper.join()


@contextmanager
def fewer_threads(n: int) -> Iterator[None]:
    """This thread computes on at most `n` threads inside, leaving the other cores to the rest of
    the process (a server's requests, a browser on the same machine); where thread counts are
    not per thread (not OpenMP), nothing changes."""
    total = torch.get_num_threads()
    if not _openmp() or n >= total:
        yield
        return
    set_own_threads(n)
    restore_default(total)
    try:
        yield
    finally:
        set_own_threads(total)


class PromptStatsJob:
    """Computes the prompt rows on a worker thread while the caller's thread decodes.

    Created in the decoding thread, which it moves to n-1 threads; `rows()` (or `close()`)
    gives that thread all n back.
    """

    def __init__(self, head: DeferredHead, ids: torch.Tensor, top_n: int) -> None:
        self.threads = torch.get_num_threads()
        self._hurry = threading.Event()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._rows: list[torch.Tensor] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._work, args=(head, ids, top_n), name="llmvis-prompt-stats", daemon=True
        )
        self._thread.start()
        self._started.wait()
        set_own_threads(self.threads - 1)
        restore_default(self.threads)

    def _work(self, head: DeferredHead, ids: torch.Tensor, top_n: int) -> None:
        try:
            set_own_threads(1)
            self._started.set()
            hurried = False
            for rows in prompt_row_pieces(head, ids, top_n, PIECE):
                self._rows.append(rows)
                if self._stop.is_set():
                    return
                if self._hurry.is_set() and not hurried:
                    set_own_threads(self.threads)
                    hurried = True
        except BaseException as exc:  # handed to the caller by rows()
            self._error = exc
        finally:
            self._started.set()

    @property
    def ready(self) -> bool:
        return not self._thread.is_alive()

    def rows(self) -> list[torch.Tensor]:
        """Waits for the worker (which then uses every thread) and returns the rows, by piece."""
        self._hurry.set()
        set_own_threads(self.threads)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._rows

    def close(self) -> None:
        """Stops the worker after its current piece (a cancelled or failed run)."""
        self._stop.set()
        set_own_threads(self.threads)
        self._thread.join()
