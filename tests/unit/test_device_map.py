"""A model split by an accelerate device map (here: one layer offloaded to disk, so its weights
sit on the meta device between calls) gives the same tokens, statistics and views."""

from __future__ import annotations

import pytest
import torch

from llmvis.generation import SamplingParams, generate
from llmvis.models import load_model
from llmvis.trace import GenerationRequest
from tiny_models import save_tiny_model

DEVICE_MAP = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.norm": "cpu",
    "lm_head": "cpu",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = save_tiny_model(tmp_path_factory.mktemp("dm") / "tiny", "llama")
    return load_model(str(folder)), load_model(str(folder), device_map=DEVICE_MAP)


def test_mapped_model_reports_its_devices(pair):
    _, mapped = pair
    assert mapped.info.device == "cpu+disk"


def test_generation_under_a_device_map_equals_the_plain_model(pair):
    plain, mapped = pair
    request = GenerationRequest(
        mode="completion",
        prompt="The capital of France",
        params=SamplingParams(temperature=0.8, seed=5, max_new_tokens=12),
    )
    a, b = generate(plain, request), generate(mapped, request)
    assert a.ids == b.ids
    for x, y in zip(a.tokens[1:], b.tokens[1:], strict=True):
        assert abs(x.stats.raw_prob - y.stats.raw_prob) <= 1e-6
        assert [c.id for c in x.stats.top] == [c.id for c in y.stats.top]


VIEWS = [
    ("attention", {"layer": 1}),
    ("multi_head", {"layer": 1}),
    ("head_entropy", {}),
    ("head_health", {}),
    ("layer_similarity", {}),
    ("residual_stream", {}),
    ("logit_lens", {}),
    ("activations", {}),
    ("embedding", {"method": "pca"}),
    ("attribution", {"method": "rollout"}),
    ("attribution", {"method": "grad_x_input"}),
]


@pytest.mark.parametrize(("name", "params"), VIEWS, ids=[f"{v[0]}-{v[1].get('method', '')}" for v in VIEWS])
def test_every_internals_view_under_a_device_map_equals_the_plain_model(pair, name, params):
    """Internals are captured per layer wherever the layer lives (here: one layer on disk)."""
    from llmvis.analyses import compute
    from trace_helpers import random_ids, view_context

    plain, mapped = pair
    ids = random_ids(plain, 14, seed=3)
    a = compute(name, view_context(plain, ids, 8), params).model_dump()
    b = compute(name, view_context(mapped, ids, 8), params).model_dump()
    _assert_close(a, b, name)


def _assert_close(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (where, a, b)
    else:
        assert a == b, (where, a, b)


PLAN = [
    {"site": "head", "layer": 1, "head": 2},
    {"site": "neuron", "layer": 1, "neuron": 5, "op": "scale", "factor": 3.0},
    {"site": "mlp_out", "layer": 0, "positions": [2, 3], "op": "mean"},
    {"site": "residual", "layer": 1, "op": "patch", "source_run": "other", "positions": [4]},
    {"site": "attention_edges", "layer": 1, "positions": [6, 7], "keys": [0, 1]},
]


def test_interventions_under_a_device_map_equal_the_plain_model(pair):
    """The hooks act on each module where it lives (layer 1 is offloaded to disk here): the same
    plan gives the same logits, the same what-if, and the same generation."""
    from llmvis.internals import Internals
    from llmvis.interventions import Intervention, WhatIfRequest, check_plan, intervened_logits, what_if
    from trace_helpers import random_ids

    results = []
    for loaded in pair:
        ids, other = random_ids(loaded, 10, seed=3), random_ids(loaded, 10, seed=4)
        run = Internals(loaded, ids)
        steps = check_plan(run, [Intervention(**spec) for spec in PLAN], {"other": Internals(loaded, other)})
        logits = intervened_logits(run, steps)
        looked = what_if(run, WhatIfRequest(interventions=PLAN[:3], position=8), steps[:3], loaded.labeler)
        request = GenerationRequest(
            mode="completion",
            prompt="The capital of France",
            params=SamplingParams(temperature=0.0, max_new_tokens=6),
            interventions=PLAN[:2],
        )
        results.append((logits, looked.model_dump(), generate(loaded, request).ids))
    (plain_logits, plain_look, plain_ids), (mapped_logits, mapped_look, mapped_ids) = results
    assert (plain_logits - mapped_logits).abs().max().item() <= 1e-5
    assert not torch.allclose(plain_logits, intervened_logits(Internals(pair[0], random_ids(pair[0], 10, seed=3)), []))
    _assert_close(plain_look, mapped_look, "whatif")
    assert plain_ids == mapped_ids
