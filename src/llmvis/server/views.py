"""Computing a view of a run: internals come from the loaded model only when its weights are the
run's (the same model, or for a remote engine's run a local copy with the same vocabulary);
otherwise a view that needs them is refused with a reason (409). A view this model cannot give
(the load-time self-check says which, or its architecture lacks a part) raises NotAvailable
with the reason (422)."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import torch
from pydantic import BaseModel

from llmvis.analyses.embedding import compile_umap_soon
from llmvis.analyses.registry import VIEWS, ViewContext, compute, no_progress
from llmvis.arch import NotAvailable
from llmvis.generation.overlap import fewer_threads
from llmvis.internals import Internals
from llmvis.interventions import InterventionError, WhatIfRequest, WhatIfResult, check_plan, what_if
from llmvis.models.info import ModelInfo
from llmvis.server.progress import ProgressBoard
from llmvis.server.slot import ModelSlot
from llmvis.server.tickets import NeedsModel
from llmvis.sweep import Progress, SweepRequest, SweepResult, sweep
from llmvis.trace import Trace
from llmvis.umap_process import PROCESS as UMAP

log = logging.getLogger("llmvis.views")  # `llmvis serve --log-views`: what each view cost

# The Contributions tab's per-token views, which the worker makes ahead for the tokens beside the
# selected one (background.py) and keeps with the run by their params: an arrow key then finds
# them made (0.15–0.2 s of the tab's requests at T = 1,536 on two cores).
KEPT_VIEWS = ("head_contributions", "neuron_contributions")


def kept_view_key(internals: Internals, name: str, params: BaseModel) -> tuple[Any, ...]:
    return (internals.key, "view", name, params.model_dump_json())


def keep_view(internals: Internals, name: str, params: BaseModel, result: BaseModel) -> None:
    """Keep a per-token view's result with its run (expendable: a second's work to redo)."""
    internals.keep(kept_view_key(internals, name, params), result, len(result.model_dump_json()) + 256, True)


def compute_view(
    slot: ModelSlot, trace: Trace, name: str, params: Any, board: ProgressBoard | None = None
) -> BaseModel:
    """Compute one view of a run (blocking: call from a worker thread), under the model lock
    when it uses the model; on `board` while it waits and computes (what it reports)."""
    view = VIEWS[name]
    loaded = slot.loaded
    if loaded is not None and not same_weights(loaded.info, trace.model):
        loaded = None
    internals = None
    if view.needs_internals:
        if loaded is None:
            raise NeedsModel(_missing_weights(view.title, trace.model))
        unknown = sum(1 for i in trace.ids if i < 0)
        if unknown:
            raise NeedsModel(f"{unknown} tokens of this run have no id in the local vocabulary")
        report = loaded.info.internals
        if report is not None and name in report.unavailable:
            raise NotAvailable(f"{loaded.info.name} cannot give the {view.title} view: {report.unavailable[name]}")
        internals = Internals(loaded, trace.ids, cache=slot.cache)
        if name in KEPT_VIEWS and isinstance(params, view.params):
            kept = slot.cache.peek(kept_view_key(internals, name, params))
            if kept is not None:
                log.info("view %s %s: made ahead", name, params.model_dump(exclude_defaults=True))
                return kept
    if name == "embedding":  # UMAP compiles for seconds: start now, in a process of its own
        compile_umap_soon()
    asked = time.perf_counter()
    # other views stop that compilation while they run: it would take a core from them
    with (
        contextlib.nullcontext() if name == "embedding" else UMAP.held(),
        contextlib.nullcontext() if board is None else board.track(trace.id, name) as entry,
    ):
        progress = no_progress if entry is None else entry.update
        ctx = ViewContext(trace=trace, loaded=loaded, internals=internals, progress=progress)
        if loaded is None:
            progress("computing", 0, 0)
            result = compute(name, ctx, params)
            waited = 0.0
        else:
            # on all cores but one, like the summaries ahead: the page, on this machine, draws on
            # the other; on every core, an OpenMP thread the page preempts stalls each parallel
            # step (a contribution graph at T = 1,536 took 7.7–21.6 s on two threads with one
            # core busy, 0.6 s on one; 0.38 s on two, idle)
            with slot.lock, fewer_threads(max(1, torch.get_num_threads() - 1)):
                waited = time.perf_counter() - asked
                progress("computing", 0, 0)
                result = compute(name, ctx, params)
    if internals is not None and name in KEPT_VIEWS and isinstance(params, view.params):
        keep_view(internals, name, params, result)
    if log.isEnabledFor(logging.INFO):
        took = time.perf_counter() - asked - waited
        shown = params.model_dump(exclude_defaults=True) if isinstance(params, BaseModel) else params
        log.info("view %s %s: %.3f s (waited %.3f s for the model)", name, shown, took, waited)
    return result


def same_weights(local: ModelInfo, run: ModelInfo) -> bool:
    """Whether the loaded model's weights can compute the views of a run of model `run`."""
    if run.source == "remote":
        return local.tokenizer_hash is not None and local.tokenizer_hash == run.tokenizer_hash
    return local.name == run.name and local.path == run.path and local.vocab_size == run.vocab_size


def _missing_weights(title: str, run: ModelInfo) -> str:
    if run.source == "remote":
        return (
            f"the {title} view needs the model's weights, which stay on the engine at {run.path}: "
            f"load a local copy of {run.name} (same tokenizer) to compute it here"
        )
    return f"the {title} view needs the weights of {run.name}; load that model first"


def compute_what_if(slot: ModelSlot, trace: Trace, request: WhatIfRequest, sources: dict[str, Trace]) -> WhatIfResult:
    """Ablate and look on a run (blocking: call from a worker thread), under the model lock.
    `sources`: the runs its patches read, by id."""
    loaded = slot.loaded
    if loaded is None or not same_weights(loaded.info, trace.model):
        raise NeedsModel(_missing_weights("What-if", trace.model))
    if any(i < 0 for t in (trace, *sources.values()) for i in t.ids):
        raise NeedsModel("some tokens of these runs have no id in the local vocabulary")
    with slot.lock:
        internals = Internals(loaded, trace.ids, cache=slot.cache)
        patched = {rid: Internals(loaded, t.ids, cache=slot.cache) for rid, t in sources.items()}
        steps = check_plan(internals, request.interventions, patched)
        return what_if(internals, request, steps, loaded.labeler)


def compute_sweep(
    slot: ModelSlot, clean: Trace, request: SweepRequest, corrupted: Trace | None, progress: Progress
) -> SweepResult:
    """An activation-patching sweep of a run against a corrupted one (another run, or the clean
    run's tokens edited), under the model lock; `progress` may raise to cancel it."""
    loaded = slot.loaded
    if loaded is None or not same_weights(loaded.info, clean.model):
        raise NeedsModel(_missing_weights("patching sweep", clean.model))
    if corrupted is not None:
        corrupted_ids = corrupted.ids
    elif request.corrupted_tokens is not None:
        corrupted_ids = request.corrupted_tokens
        vocab = loaded.info.vocab_size
        if any(not 0 <= i < vocab for i in corrupted_ids):
            raise InterventionError(f"corrupted_tokens must be token ids 0..{vocab - 1}")
    else:
        raise InterventionError("a sweep needs a corrupted run (corrupted_run) or edited tokens (corrupted_tokens)")
    if any(i < 0 for i in (*clean.ids, *corrupted_ids)):
        raise NeedsModel("some tokens of these runs have no id in the local vocabulary")
    with slot.lock:
        a = Internals(loaded, clean.ids, cache=slot.cache)
        b = Internals(loaded, corrupted_ids, cache=slot.cache)
        return sweep(a, b, request, loaded.labeler, progress)
