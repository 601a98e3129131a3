"""The known positions' head-mean attention Ā, in the CPU time the decode loop leaves idle.

Every rollout (the Attribution tab) reads each layer's Ā, which costs one pass over all the
attention after the run (8 s at T = 4,096 on two cores, about 30 s at 8,000). A causal row
depends on nothing after it, so the prompt's rows are known once the prefill has run, from the
queries and keys the capture kept then. A small model's decode step on a CPU runs about as fast
on n-1 threads as on n (overlap.py), so once the prompt's statistics are sent, the core they
used computes those rows, a block of rows at a time, and at the end of the run they go to the
server with the capture: the summary ahead then computes only the rest. (At the lowest priority
instead, on the cores the loop leaves idle, it made fewer rows for the same cost to the loop:
docs/ARCHITECTURE.md.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import torch

from llmvis.capture import AttentionRecord
from llmvis.generation.overlap import restore_default, set_own_threads
from llmvis.internals import MEAN_ROWS, mean_attention_block
from llmvis.kept_attention import Staircase

log = logging.getLogger("llmvis")


class MeanAttentionJob:
    """Fills a Staircase per layer with the rows of `known` positions (whole blocks of MEAN_ROWS),
    on a worker thread with one core, the caller's thread keeping the others; `take()` stops it
    after its current block, gives the caller every core back and hands over what it made.

    `staircase()` gives an empty Staircase (in memory or spilled) or None when there is no room."""

    def __init__(
        self,
        records: list[Callable[[], AttentionRecord] | None],
        known: int,
        staircase: Callable[[], Staircase | None],
    ) -> None:
        self.threads = torch.get_num_threads()
        self.kept: dict[int, Staircase] = {}
        self._records, self._rows, self._staircase = records, known // MEAN_ROWS * MEAN_ROWS, staircase
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._work, name="llmvis-mean-attention", daemon=True)
        self._thread.start()
        self._started.wait()
        set_own_threads(self.threads - 1)
        restore_default(self.threads)

    def _work(self) -> None:
        try:
            set_own_threads(1)
            self._started.set()
            with torch.no_grad():
                for layer, get in enumerate(self._records):
                    if get is None or self._stop.is_set():
                        continue
                    stairs = self._staircase()
                    if stairs is None:
                        return
                    record = get()
                    while stairs.filled < self._rows and not self._stop.is_set():
                        a, b = stairs.next_rows()
                        stairs.append(mean_attention_block(record, a, b))
                    self.kept[layer] = stairs
        except Exception:  # (a full disk, say): the summary ahead computes the rest after the run
            log.debug("Ā of the known positions stopped", exc_info=True)
        finally:
            self._started.set()

    @property
    def done(self) -> bool:
        """Every row it could make is made (or it stopped): the caller may take its core back."""
        return not self._thread.is_alive()

    def take(self) -> dict[int, Staircase]:
        """Stop after the current block; each layer's Staircase with the rows done (whole blocks)."""
        self._stop.set()
        set_own_threads(self.threads)
        self._thread.join()
        return {layer: stairs for layer, stairs in self.kept.items() if stairs.filled}
