"""Mixtures of experts: the router reads what llmvis says it reads, the routed experts (and the
shared expert) add up to the layer's MLP output, and the experts view reports that routing."""

from __future__ import annotations

import pytest
import torch
from test_families import fresh, views_of

from llmvis.analyses import compute
from llmvis.arch import Architecture, NotAvailable
from llmvis.internals import Internals
from tiny_models import tiny_loaded
from trace_helpers import view_context

MOE = ["mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "llama4_text", "qwen3_next", "jamba"]


def _internals(arch: str) -> Internals:
    loaded = tiny_loaded(arch)
    ids = [(i * 7 + 3) % loaded.info.vocab_size for i in range(14)]
    return Internals(loaded, ids)


def _moe_layers(internals: Internals) -> list[int]:
    return [i for i in range(internals.n_layers) if internals.arch.mlp_kind(i) == "experts"]


@pytest.mark.parametrize("arch", MOE)
def test_the_router_reads_what_the_model_routed_and_chooses_its_most_likely_experts(arch):
    internals = _internals(arch)
    layers = _moe_layers(internals)
    assert layers
    seen: dict[int, torch.Tensor] = {}
    hooks = [
        internals.arch.router(i).register_forward_pre_hook(lambda _m, args, i=i: seen.setdefault(i, args[0].detach()))
        for i in layers
    ]
    try:
        with torch.no_grad():
            internals.model(torch.tensor([internals.ids]))
    finally:
        for h in hooks:
            h.remove()
    for layer in layers:
        assert (internals.mlp_input(layer) - seen[layer].reshape(len(internals.ids), -1)).abs().max() <= 1e-5
        routing = internals.routing(layer)
        k = routing.chosen.shape[1]
        top = torch.topk(routing.probs, k, dim=-1).indices
        assert torch.equal(routing.chosen.sort(-1).values, top.sort(-1).values)
        assert (routing.weights > 0).all()


@pytest.mark.parametrize("arch", MOE)
def test_the_routed_experts_add_up_to_the_mlp_output(arch):
    """Each chosen expert run alone at its routing weight, plus the shared expert: the layer's
    MLP output at every token (the model's own experts module does the work)."""
    internals = _internals(arch)
    for layer in _moe_layers(internals):
        for pos in range(internals.n_positions):
            routed, shared = internals.expert_parts(layer, pos)
            total = routed.sum(0) + (shared if shared is not None else 0)
            assert (total - internals.mlp_out(layer)[pos]).abs().max() <= 1e-5, (layer, pos)
            assert all(float(part.norm()) > 0 for part in routed)  # every chosen expert did add something


@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe", "llama4_text"])
def test_the_experts_view_reports_that_routing(arch, tmp_path):
    loaded = fresh(tiny_loaded(arch))
    assert loaded.info.internals is not None and loaded.info.internals.moe_layers
    view = views_of(loaded, tmp_path)["experts"][0].json()
    moe = loaded.info.internals.moe_layers
    assert view["moe_layers"] == moe and view["layer"] == moe[0]
    assert sorted(view["moe_layers"] + view["dense_layers"]) == list(range(loaded.info.layers))
    t, k = len(view["routing"]), view["top_k"]
    for load in view["loads"]:
        assert sum(load["tokens"]) == t * k and 0 < load["balance"] <= 1
    for probs, routing in zip(view["probs"], view["routing"], strict=True):
        assert len(probs) == view["n_experts"] and len(routing["experts"]) == k
        best = sorted(range(len(probs)), key=lambda e: -probs[e])[:k]
        assert sorted(best) == sorted(routing["experts"])
        if view["router"].startswith("softmax"):
            assert sum(probs) == pytest.approx(1.0, abs=1e-3)
    assert view["position_routing"][0] == view["routing"][view["position"]]
    shared = [p for p in view["parts"] if p["expert"] is None]
    assert len(shared) == (arch != "mixtral")  # Qwen2-MoE and Llama 4 have a shared expert


def test_a_dense_model_is_told_it_has_no_experts():
    loaded = tiny_loaded("llama")
    ctx = view_context(loaded, [(i * 7 + 3) % loaded.info.vocab_size for i in range(10)], 6)
    with pytest.raises(NotAvailable, match="no layer of this model is a mixture of experts"):
        compute("experts", ctx, {})
    with pytest.raises(NotAvailable, match="is not a mixture of experts"):
        ctx.require_internals().routing(0)


def test_a_mixture_whose_experts_cannot_be_called_is_told_and_keeps_its_other_views(monkeypatch):
    def odd(*_args):
        raise TypeError("experts called another way")

    monkeypatch.setattr(Architecture, "expert_part", odd)
    report = fresh(tiny_loaded("mixtral")).info.internals
    assert report is not None and "experts called another way" in report.unavailable["experts"]
    assert set(report.unavailable) == {"experts", "activations", "neuron_contributions"}  # attention… stay
