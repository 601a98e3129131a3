"""Per-run summaries computed before anyone asks: the heavy passes behind a tab (every head's
scores over sampled queries, every position's attention rollout) take seconds on a long run on
a CPU, so the server runs them while it is idle after a run, in the order of the tabs, into the
cache the views read. `pause()` runs between layers: it lets a waiting request in, or raises to
stop when a new run or load arrives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from llmvis.analyses.activations import warm_activations
from llmvis.analyses.attribution import warm_rollout
from llmvis.analyses.flow import warm_value_outputs
from llmvis.analyses.heads import warm_head_scores, warm_multi_head
from llmvis.analyses.layers import warm_layer_similarity
from llmvis.arch import NotAvailable
from llmvis.internals import Internals

log = logging.getLogger("llmvis")

Warmer = tuple[str, Callable[[Internals, Callable[[], None]], None]]

# (the view that reads it, what computes it), in three stages. First, before the selected
# token's graph: every head's scores, which the Heads tab (the tab after the Attention tab, open
# while streaming) waits for and which take 0.4 s on two cores at T = 1,536 (0.8 s of one core);
# not past EARLY_UP_TO positions, where they take seconds of one core and the graph (the slowest
# tab's wait) goes first. Then the selected token's graph (server/background.py), and the rest of
# the tabs' summaries in their order, but for the Heads tab's pooled layer (the Attention tab's
# first view pools it in its own pass over that layer, so computing it first mostly repeated
# that pass). Last, after the graphs of the tokens beside the selected one (the arrow keys' next
# stops) and giving way to them: the value outputs (they save a quarter of a graph, and take a
# second of one core) and the activations over every token (the Activations tab's second scope:
# its first, the selected token, costs a tenth of a second; seconds of one core at T = 1,536).
EARLY_WARMERS: list[Warmer] = [("head_health", warm_head_scores)]
EARLY_UP_TO = 2048  # (256 sampled query rows up to there: heads.default_queries)
WARMERS: list[Warmer] = [
    ("multi_head", warm_multi_head),
    ("layer_similarity", warm_layer_similarity),
    ("attribution", warm_rollout),
]
LATE_WARMERS: list[Warmer] = [
    ("contribution_graph", warm_value_outputs),
    ("activations", warm_activations),
]


def warm_up(
    internals: Internals,
    pause: Callable[[], None],
    unavailable: dict[str, str] | None = None,
    stage: str = "main",
) -> None:
    """Each summary of a stage ("early", "main" or "late") in turn, skipping those of views this
    model cannot give."""
    short = internals.n_positions <= EARLY_UP_TO  # (else the head scores open the main stage)
    early = EARLY_WARMERS if short else []
    stages = {"early": early, "main": ([] if short else EARLY_WARMERS) + WARMERS, "late": LATE_WARMERS}
    for view, warm in stages[stage]:
        if unavailable and view in unavailable:
            continue
        started = time.perf_counter()
        try:
            warm(internals, pause)
            logging.getLogger("llmvis.views").info(
                "summary ahead for %s: %.3f s (pauses included)", view, time.perf_counter() - started
            )
        except NotAvailable as exc:  # the view says why when it is asked
            log.debug("no %s summary ahead: %s", view, exc)
