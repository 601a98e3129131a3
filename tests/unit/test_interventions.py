"""Interventions: hooks on the model's own modules, checked against independent computations."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from llmvis.internals import Internals
from llmvis.interventions import (
    Intervention,
    InterventionError,
    WhatIfRequest,
    check_plan,
    intervened_logits,
    intervening,
    what_if,
)
from llmvis.models.loaded import LoadedModel
from llmvis.replay import layer_forms, layer_list
from tiny_models import ARCHITECTURES, tiny_loaded
from trace_helpers import random_ids

T = 16


def run(arch: str = "llama", seed: int = 1, loaded: LoadedModel | None = None) -> Internals:
    loaded = loaded or tiny_loaded(arch)
    return Internals(loaded, random_ids(loaded, T, seed=seed))


def own_logits(model: nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()


def plan(internals: Internals, *specs: dict, sources: dict | None = None):
    return check_plan(internals, [Intervention(**s) for s in specs], sources)


def test_an_empty_or_identity_plan_gives_the_models_own_logits(arch):
    internals = run(arch)
    ref = own_logits(internals.model, internals.ids)
    assert torch.equal(intervened_logits(internals, []), ref)
    identity = plan(
        internals,
        {"site": "residual", "layer": 1, "op": "scale", "factor": 1.0},
        {"site": "attn_out", "layer": 0, "op": "scale", "factor": 1.0},
        {"site": "mlp_out", "layer": 1, "op": "add", "vector": [0.0] * int(internals.residual(0).shape[-1])},
    )
    assert torch.equal(intervened_logits(internals, identity), ref)


def test_replaying_the_layers_below_the_first_intervention_equals_the_full_forward(arch):
    """What-if skips the layers an intervention cannot change (their captured outputs stand in):
    the logits equal the full intervened forward's, and the skipped layer really did not run."""
    internals = run(arch)
    steps = plan(internals, {"site": "mlp_out", "layer": 1, "op": "scale", "factor": 2.0})
    full = intervened_logits(internals, steps)
    assert layer_forms(internals) is not None, "every family's layers return their hidden states"
    internals.residual(1)  # the capture, made before counting the layer's calls
    calls = []
    handle = internals.arch.layers[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        fast = intervened_logits(internals, steps, replay=True)
    finally:
        handle.remove()
    assert (full - fast).abs().max().item() <= 1e-4 * (1 + full.abs().max().item())
    assert not torch.allclose(full, own_logits(internals.model, internals.ids), atol=1e-4)  # the plan acts
    assert calls == []
    assert internals.arch.layers[0] is layer_list(internals)[0]  # put back


def patched_from(arch: str, sites: list[str], layer: int | None = None) -> None:
    """Patching `sites` of `layer` (default 0) from run B into run A gives B's logits."""
    a, b = run(arch, seed=1), run(arch, seed=2)
    where = 0 if layer is None else layer
    specs = [{"site": s, "layer": where, "op": "patch", "source_run": "b"} for s in sites]
    logits = intervened_logits(a, plan(a, *specs, sources={"b": b}))
    theirs = own_logits(b.model, b.ids)
    assert torch.allclose(logits, theirs, atol=1e-5, rtol=1e-5), float((logits - theirs).abs().max())
    assert not torch.allclose(own_logits(a.model, a.ids), theirs, atol=1e-3)  # the runs differ


# Gemma 4's layers also read per-layer inputs taken from the token ids: what layer 0 reads and
# adds is not all of run B there (its last hidden state is: the next test)
@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "gemma4_text"])
def test_patching_every_site_of_layer_0_gives_the_other_runs_logits(arch):
    patched_from(arch, ["residual", "attn_out", "mlp_out"])


def test_patching_gemma4s_last_hidden_state_gives_the_other_runs_logits():
    patched_from("gemma4_text", ["residual"], layer=tiny_loaded("gemma4_text").arch.model.config.num_hidden_layers)


def zeroed_columns(model: nn.Module, module_path: str, cols: slice) -> nn.Module:
    """A copy of `model` whose module at `module_path` has the input columns `cols` zeroed."""
    copied = copy.deepcopy(model)
    proj = copied.get_submodule(module_path)
    with torch.no_grad():
        if isinstance(proj, nn.Linear):
            proj.weight[:, cols] = 0.0
        else:  # Conv1D keeps its weight as [in, out]
            proj.weight[cols, :] = 0.0
    return copied


def path_of(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def test_zeroing_a_head_equals_zeroing_its_columns_of_the_output_projection(arch):
    internals = run(arch)
    layer = internals.attention_layers()[-1]
    head, hd = 1, int(internals.record(layer).q.shape[-1])
    proj = internals.arch.attn_out_projection(layer)
    ours = intervened_logits(internals, plan(internals, {"site": "head", "layer": layer, "head": head}))
    copied = zeroed_columns(internals.model, path_of(internals.model, proj), slice(head * hd, (head + 1) * hd))
    theirs = own_logits(copied, internals.ids)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), (arch, float((ours - theirs).abs().max()))
    assert not torch.allclose(ours, own_logits(internals.model, internals.ids), atol=1e-6)


def test_zeroing_a_neuron_equals_zeroing_its_column_of_the_mlp_projection(arch):
    internals = run(arch)
    dense = [i for i in range(internals.n_layers) if internals.arch.mlp_kind(i) != "experts"]
    if not dense:
        with pytest.raises(InterventionError, match="mixture of experts"):
            plan(internals, {"site": "neuron", "layer": 0, "neuron": 3})
        return
    layer = dense[-1]
    proj = internals.arch.mlp_out_projection(layer)
    ours = intervened_logits(internals, plan(internals, {"site": "neuron", "layer": layer, "neuron": 3}))
    copied = zeroed_columns(internals.model, path_of(internals.model, proj), slice(3, 4))
    assert torch.allclose(ours, own_logits(copied, internals.ids), atol=1e-5, rtol=1e-5), arch


def seen_input(internals: Internals, layer: int, steps) -> torch.Tensor:
    """[T, d] what decoder layer `layer` read during an intervened forward."""
    seen = []
    with intervening(internals, steps):
        handle = internals.arch.layers[layer].register_forward_pre_hook(
            lambda _m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"])[0].clone()),
            with_kwargs=True,
        )
        try:
            intervened_logits(internals, [])
        finally:
            handle.remove()
    return seen[0]


def test_mean_scale_and_add_change_only_the_positions_named():
    internals = run("qwen2")
    x = internals.residual(1).float()
    mean = seen_input(
        internals, 1, plan(internals, {"site": "residual", "layer": 1, "op": "mean", "positions": [2, 5]})
    )
    assert torch.allclose(mean[[2, 5]], x.mean(0).expand(2, -1), atol=1e-6)
    assert torch.allclose(mean[[0, 1, 3]], x[[0, 1, 3]], atol=1e-5)
    half = seen_input(internals, 1, plan(internals, {"site": "residual", "layer": 1, "op": "scale", "factor": 0.5}))
    assert torch.allclose(half, 0.5 * x, atol=1e-5)
    v = torch.arange(x.shape[-1], dtype=torch.float32)
    added = seen_input(
        internals,
        1,
        plan(internals, {"site": "residual", "layer": 1, "op": "add", "vector": v.tolist(), "positions": [4]}),
    )
    assert torch.allclose(added[4], x[4] + v, atol=1e-4) and torch.allclose(added[3], x[3], atol=1e-5)


def test_zeroing_attention_removes_exactly_what_it_added():
    internals = run("llama")
    steps = plan(internals, {"site": "attn_out", "layer": 0, "positions": [6]})
    seen = seen_input(internals, 1, steps)
    # layer 1 reads residual(0) + attn + mlp, and the MLP now reads residual(0) without attention at 6
    assert torch.allclose(seen[5], internals.residual(1)[5].float(), atol=1e-5)
    assert not torch.allclose(seen[6], internals.residual(1)[6].float(), atol=1e-4)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"site": "residual", "layer": 3}, "layer 3 is beyond the model"),
        ({"site": "attn_out", "layer": 2}, "layer 2 is beyond the model"),
        ({"site": "head", "layer": 0, "head": 99}, "head 99 is beyond"),
        ({"site": "neuron", "layer": 0, "neuron": 10**6}, "neuron 1000000 is beyond"),
        ({"site": "mlp_out", "layer": 0, "positions": [T]}, "positions must be within the run"),
        ({"site": "mlp_out", "layer": 0, "op": "add", "vector": [1.0, 2.0]}, "the vector has 2 values"),
        ({"site": "mlp_out", "layer": 0, "op": "patch", "source_run": "nope"}, "not available to patch from"),
    ],
)
def test_interventions_that_do_not_fit_are_refused_with_the_reason(spec, message):
    with pytest.raises(InterventionError, match=message):
        plan(run(), spec)


def test_patching_needs_runs_of_the_same_length():
    a = run()
    short = Internals(a.loaded, a.ids[:-2])
    with pytest.raises(InterventionError, match="same length"):
        plan(a, {"site": "residual", "layer": 0, "op": "patch", "source_run": "s"}, sources={"s": short})


@pytest.mark.parametrize(
    "spec",
    [{"site": "head", "layer": 0}, {"site": "neuron", "layer": 0}, {"site": "residual", "layer": 0, "op": "scale"}],
)
def test_incomplete_interventions_do_not_validate(spec):
    with pytest.raises(ValueError, match="needs"):
        Intervention(**spec)


def test_what_if_compares_the_run_before_and_after():
    internals = run("llama")
    label = internals.loaded.labeler
    same = what_if(internals, WhatIfRequest(interventions=[], position=8), [], label)
    assert same.token_id == internals.ids[8] and len(same.prob_after) == T - 1
    assert same.before.prob == pytest.approx(same.after.prob, abs=1e-5) and max(same.kl) < 1e-4
    spec = Intervention(site="attn_out", layer=1)
    request = WhatIfRequest(interventions=[spec], position=8, foil=7, top_n=3)
    changed = what_if(internals, request, check_plan(internals, [spec]), label)
    logits = intervened_logits(internals, check_plan(internals, [spec]))[7]
    probs = torch.softmax(logits, -1)
    assert changed.after.prob == pytest.approx(float(probs[internals.ids[8]]), rel=1e-5)
    assert changed.after.gap == pytest.approx(float(logits[internals.ids[8]] - logits[7]), rel=1e-5, abs=1e-6)
    assert [c.id for c in changed.after.top] == probs.topk(3).indices.tolist()
    assert changed.prob_after[7] == pytest.approx(changed.after.prob, rel=1e-3)
    assert max(changed.kl) > 1e-3 and changed.interventions == [spec]
    with pytest.raises(InterventionError, match="not a predicted position"):
        what_if(internals, WhatIfRequest(interventions=[], position=T), [], label)


KNOCKED = ([9, 10, 11], [2, 5])  # queries × keys


def knockout_reference(model: nn.Module, ids: list[int]) -> torch.Tensor:
    """The unmodified model given a 4D float mask (causal, the knocked-out edges at −inf) in
    place of its own: the reference an edge knockout in every layer must equal."""
    floor = torch.finfo(torch.float32).min
    mask = torch.triu(torch.full((T, T), floor), diagonal=1)
    rows, cols = KNOCKED
    mask[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = floor
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), attention_mask=mask[None, None], use_cache=False).logits[0].float()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt_neox", "phi3", "olmo2", "gpt2", "stablelm"])
def test_an_edge_knockout_equals_the_model_run_with_that_mask(arch):
    internals = run(arch)
    rows, cols = KNOCKED
    specs = [
        {"site": "attention_edges", "layer": layer, "positions": rows, "keys": cols}
        for layer in range(internals.n_layers)
    ]
    ours = intervened_logits(internals, plan(internals, *specs))
    theirs = knockout_reference(internals.model, internals.ids)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), (arch, float((ours - theirs).abs().max()))
    plain = own_logits(internals.model, internals.ids)
    assert torch.allclose(ours[: rows[0]], plain[: rows[0]], atol=1e-5)  # earlier queries untouched
    assert not torch.allclose(ours[rows[0]], plain[rows[0]], atol=1e-4)


def test_an_edge_knockout_of_one_head_equals_a_mask_on_that_head_only():
    internals = run("llama")
    rows, cols, head = [8], [0, 3], 2
    specs = [
        {"site": "attention_edges", "layer": layer, "head": head, "positions": rows, "keys": cols}
        for layer in range(internals.n_layers)
    ]
    ours = intervened_logits(internals, plan(internals, *specs))
    floor = torch.finfo(torch.float32).min
    mask = torch.triu(torch.full((T, T), floor), diagonal=1)[None, None].repeat(1, internals.n_heads, 1, 1)
    mask[0, head, 8, cols] = floor
    with torch.no_grad():
        theirs = internals.model(input_ids=torch.tensor([internals.ids]), attention_mask=mask, use_cache=False).logits
    assert torch.allclose(ours, theirs[0].float(), atol=1e-5, rtol=1e-5)
    everywhere = intervened_logits(internals, plan(internals, *[{**s, "head": None} for s in specs]))
    assert not torch.allclose(ours[8], everywhere[8], atol=1e-5)  # the other heads still read those keys


def test_edge_knockouts_that_cannot_be_applied_are_refused():
    internals = run("bloom")
    with pytest.raises(InterventionError, match="AttentionInterface"):
        plan(internals, {"site": "attention_edges", "layer": 0, "keys": [1]})
    llama = run("llama")
    with pytest.raises(InterventionError, match="no key left"):
        plan(llama, {"site": "attention_edges", "layer": 0, "positions": [1], "keys": [0, 1]})
    with pytest.raises(ValueError, match="needs `keys`"):
        Intervention(site="attention_edges", layer=0)
