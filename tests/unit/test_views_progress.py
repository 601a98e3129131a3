"""The views that can take seconds on a long run report how far they are (ViewContext.progress),
for the page to show while it waits: from 0 (or the first unit) up to every unit done, in order,
and the same numbers as without anyone watching."""

from __future__ import annotations

import dataclasses

import pytest

from llmvis.analyses import attention, attribution
from llmvis.analyses.registry import compute
from tiny_models import tiny_loaded
from trace_helpers import random_ids, view_context

N = 40

CASES = {
    "attribution": ({"position": N - 2}, "rollout"),
    "contribution_graph": ({"position": N - 2, "threshold": 0.0, "top_k": 64}, "graph"),
    "attention": ({"layer": 1}, "rows"),
    "attribution/ig": ({"position": N - 2, "method": "integrated_gradients", "steps": 8}, "steps"),
}


@pytest.mark.parametrize("view", sorted(CASES))
def test_a_long_views_progress_counts_up_to_its_total(view, monkeypatch):
    monkeypatch.setattr(attention, "FULL_MATRIX_BYTES", 0)  # the attention view in chunks, as a long run's
    monkeypatch.setattr(attention, "CHUNK_ROWS", 8)
    monkeypatch.setattr(attribution, "IG_TOKENS_PER_BATCH", 2 * N)  # integrated gradients: 2 steps a batch
    params, step = CASES[view]
    view, _, _ = view.partition("/")
    loaded = tiny_loaded("llama")
    ids = random_ids(loaded, N, seed=3)
    seen: list[tuple[str, int, int]] = []
    watched = dataclasses.replace(view_context(loaded, ids, N // 2), progress=lambda *s: seen.append(s))
    result = compute(view, watched, params)
    assert seen and {s for s, _, _ in seen} == {step}
    done = [d for _, d, _ in seen]
    total = seen[-1][2]
    assert total == {"rows": N, "steps": 8}.get(step, loaded.info.layers)
    assert done == sorted(done) and done[-1] == total and all(t == total for _, _, t in seen)
    assert len(set(done)) >= min(total, N // 8)  # step by step (a layer, a chunk of rows), not only at the end
    assert result == compute(view, view_context(loaded, ids, N // 2), params)  # watching changes nothing
