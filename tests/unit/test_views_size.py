"""Every attention/layer view's JSON stays ≤ 1 MB on a 4096-token run, even at maximum params."""

from __future__ import annotations

import pytest

from llmvis.analyses import ViewContext, compute
from llmvis.analyses.attention import MAX_CELLS
from tiny_models import tiny_loaded
from trace_helpers import random_ids, view_context

T = 4096
LIMIT = 1_000_000

CASES = [
    ("attention", {}),
    ("attention", {"max_cells": MAX_CELLS}),
    ("attention", {"max_cells": MAX_CELLS, "head": "max", "start": 1000}),
    ("attention", {"position": T - 1, "max_cells": MAX_CELLS}),
    ("multi_head", {}),
    ("head_entropy", {}),
    ("head_entropy", {"position": T - 1}),
    ("head_health", {"max_queries": 64}),
    ("layer_similarity", {}),
    ("residual_stream", {}),
    ("logit_lens", {"top_k": 20}),
]


@pytest.fixture(scope="module")
def long_ctx() -> ViewContext:
    loaded = tiny_loaded("llama", 1)  # one layer keeps this fast; sizes scale with L·H as documented
    ids = random_ids(loaded, T, seed=11)
    return view_context(loaded, ids, 100)


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_view_json_at_4096_tokens_is_at_most_1mb(long_ctx, name, params):
    size = len(compute(name, long_ctx, params).model_dump_json())
    assert size <= LIMIT, f"{name} {params}: {size} bytes"
