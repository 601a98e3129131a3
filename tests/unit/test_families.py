"""Every family, through the server: a run streams, every view answers, none with a 5xx; what a
model cannot show is refused with its reason, and the load-time self-check says so first."""

from __future__ import annotations

import dataclasses

import pytest

from llmvis.analyses.registry import VIEWS
from llmvis.internals import Internals
from llmvis.models.load import checked
from llmvis.models.loaded import LoadedModel, describe, stop_token_ids
from server_helpers import client, make_app, parse_sse
from tiny_models import ARCHITECTURES, HYBRIDS, make_model, tiny_loaded

# every view, with the params that reach its heavier paths
VIEW_PARAMS = {
    "tokens": [{}],
    "uncertainty": [{}],
    "attention": [{"layer": 1}, {"position": 3}],
    "multi_head": [{"layer": 0}],
    "head_entropy": [{}, {"position": 3}],
    "head_health": [{}],
    "layer_similarity": [{}],
    "residual_stream": [{}, {"foil": 5}],
    "logit_lens": [{}, {"foil": 5, "watch": [3, 4]}],
    "head_contributions": [{}, {"foil": 5}],
    "neuron_contributions": [{}, {"layer": 0, "foil": 5}],
    "contribution_graph": [{}, {"threshold": 0.2, "top_k": 2}],
    "activations": [{}],
    "embedding": [{"method": "pca"}],
    "attribution": [{"method": "rollout"}, {"method": "grad_x_input"}],
    "experts": [{}, {"position": 2}],
}


def fresh(loaded: LoadedModel) -> LoadedModel:
    """A copy of a (cached) tiny model's LoadedModel, self-checked as `load_model` does."""
    return checked(dataclasses.replace(loaded, info=loaded.info.model_copy()))


def views_of(loaded: LoadedModel, tmp_path) -> dict[str, list]:
    body = {
        "mode": "completion",
        "prompt": "The capital of France is Paris. The capital of Italy is",
        "params": {"temperature": 0, "max_new_tokens": 6},
    }
    with client(make_app(tmp_path, loaded)) as c:
        events = parse_sse(c.post("/api/runs", json=body).content)
        assert events[-1].event == "done", events[-1].data
        run_id = events[-1].json()["run_id"]
        return {
            name: [c.get(f"/api/runs/{run_id}/views/{name}", params=p) for p in VIEW_PARAMS[name]] for name in VIEWS
        }


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_view_of_every_family_answers_without_a_server_error(arch, tmp_path):
    loaded = fresh(tiny_loaded(arch))
    assert set(VIEW_PARAMS) == set(VIEWS)  # a new view joins this list
    report = loaded.info.internals
    assert report is not None and report.verified, report
    for name, answers in views_of(loaded, tmp_path).items():
        for r in answers:
            if r.status_code == 422:  # told: the web app shows the reason where the chart would be
                assert r.json()["detail"][0]["type"] == "not_available", r.text
            if name in report.unavailable:  # with the reason the self-check found
                assert r.status_code == 422 and report.unavailable[name] in r.json()["detail"][0]["msg"], r.text
            elif r.status_code == 422 and arch in HYBRIDS and name == "multi_head":  # a hybrid layer without attention
                assert "has no softmax attention" in r.json()["detail"][0]["msg"], r.text
            elif name == "experts" and not report.moe_layers:  # a dense model has no experts to show
                assert r.status_code == 422 and "no layer of this model is a mixture" in r.text, r.text
            else:
                assert r.status_code == 200, (name, r.status_code, r.text[:300])


def test_mixtures_of_experts_say_why_they_have_no_activations():
    report = fresh(tiny_loaded("mixtral")).info.internals
    assert report is not None and set(report.unavailable) == {"activations"}
    assert "every layer's MLP is a mixture of experts" in report.unavailable["activations"]
    mixed = fresh(tiny_loaded("llama4_text")).info.internals  # experts on every other layer
    assert mixed is not None and "the MLP of layers [1] is a mixture" in mixed.unavailable["activations"]


def test_a_model_without_attention_layers_streams_and_is_told_why_views_are_missing(tmp_path):
    """Mamba has no attention and no layers the seam knows: it generates, its trace-only views
    work, and every internals view answers 422 with the reason."""
    model, tok = make_model("mamba")
    info = describe(model, tok, name="tiny-mamba", source="hf_dir", path="<tiny-mamba>")
    loaded = checked(LoadedModel(model, tok, info, stop_token_ids(model, tok)))
    report = loaded.info.internals
    assert report is not None and not report.verified
    assert set(report.unavailable) == {v.name for v in VIEWS.values() if v.needs_internals}
    for name, answers in views_of(loaded, tmp_path).items():
        for r in answers:
            assert r.status_code == (422 if VIEWS[name].needs_internals else 200), (name, r.text[:300])


def test_the_self_check_catches_recomputed_attention_that_is_off(monkeypatch):
    real = Internals._weights

    def off(record, queries, keys_end):
        return real(record, queries, keys_end) * 1.01

    monkeypatch.setattr(Internals, "_weights", staticmethod(off))
    report = fresh(tiny_loaded("llama")).info.internals
    assert report is not None and not report.verified
    assert {"attention", "multi_head", "head_entropy", "head_health"} <= set(report.unavailable)
    assert "differs from the model's own" in report.unavailable["attention"]
    assert "residual_stream" not in report.unavailable  # what still matched stays available


def test_the_self_check_measures_fp32_rounding_on_an_exact_model():
    report = fresh(tiny_loaded("qwen3")).info.internals
    assert report is not None and report.max_error is not None and 0 <= report.max_error < 1e-5


@pytest.mark.parametrize("arch", ["gpt2", "bloom", "falcon"])
def test_families_without_rotary_or_with_their_own_attention_are_exact(arch):
    """GPT-2 (learned positions), BLOOM (ALiBi), Falcon (its own SDPA call) are read exactly."""
    report = fresh(tiny_loaded(arch)).info.internals
    assert report is not None and report.verified and report.unavailable == {}


@pytest.mark.parametrize("arch", HYBRIDS)
def test_a_hybrids_all_layer_views_cover_its_attention_layers_and_name_the_others(arch, tmp_path):
    """Head entropy, head health, the attention row and rollout run over the attention layers
    (equal to eager: test_internals.py); the layers that mix tokens otherwise are named."""
    loaded = fresh(tiny_loaded(arch))
    report = loaded.info.internals
    assert report is not None and report.attention_layers
    others = sorted(set(range(loaded.info.layers)) - set(report.attention_layers))
    assert others  # the tiny hybrids alternate: other mixer, then attention
    views = {k: [r.json() for r in v] for k, v in views_of(loaded, tmp_path).items()}
    row, entropy, health = views["attention"][1], views["head_entropy"][0], views["head_health"][0]
    for view in (row, entropy, health):
        assert sorted(int(k) for k in view["missing_layers"]) == others, view["missing_layers"]
        assert all("not softmax attention" in why for why in view["missing_layers"].values())
    assert [i for i, r in enumerate(row["rows"]) if r is None] == others
    assert [i for i, r in enumerate(entropy["entropy"]) if r is None] == others
    assert {s["layer"] for s in health["scores"]} == set(report.attention_layers)
    rollout = views["attribution"][0]
    assert f"not {others}" in rollout["objective"] and sum(rollout["share"]) == pytest.approx(1.0, abs=1e-3)
    assert views["attention"][0]["layer"] == report.attention_layers[0]  # the default layer has attention


@pytest.mark.parametrize(("arch", "wiring"), [("llama", "sequential"), ("gptj", "parallel"), ("falcon", "parallel")])
def test_the_report_says_how_blocks_are_wired(arch, wiring):
    report = fresh(tiny_loaded(arch)).info.internals
    assert report is not None and report.wiring == wiring
