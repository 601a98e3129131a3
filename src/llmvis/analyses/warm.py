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

# (the view that reads it, what computes it), in the order of the tabs, but for the Heads tab's
# pooled layer (the Attention tab's first view pools it in its own pass over that layer, so
# computing it first mostly repeated that pass: the head scores go first) and the value outputs
# (they save part of a graph; Ā saves a rollout seconds); the selected token's graph goes before
# any of them that is still to come (server/background.py)
WARMERS: list[tuple[str, Callable[[Internals, Callable[[], None]], None]]] = [
    ("head_health", warm_head_scores),
    ("multi_head", warm_multi_head),
    ("layer_similarity", warm_layer_similarity),
    ("attribution", warm_rollout),
    ("contribution_graph", warm_value_outputs),  # cheap to redo, and it gives way to Ā
]
# After the graphs of the tokens beside the selected one (server/background.py): the activations
# over every token are the Activations tab's second scope (its first, the selected token, costs
# a tenth of a second), and at T = 1,536 they take seconds of one core; the arrow keys come first.
LATE_WARMERS: list[tuple[str, Callable[[Internals, Callable[[], None]], None]]] = [
    ("activations", warm_activations),
]


def warm_up(
    internals: Internals,
    pause: Callable[[], None],
    unavailable: dict[str, str] | None = None,
    late: bool = False,
) -> None:
    """Each summary in turn (the late ones with `late`), skipping those of views this model
    cannot give."""
    for view, warm in LATE_WARMERS if late else WARMERS:
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
