"""The activation-patching sweep: its batched cells equal single patched forwards, on every
family; the corrupted token's own cell restores everything; attribution patching is exact where
nothing differs."""

from __future__ import annotations

import pytest

from llmvis.internals import Internals
from llmvis.interventions import Intervention, InterventionError, check_plan, intervened_logits
from llmvis.sweep import SweepRequest, sweep
from tiny_models import tiny_loaded
from trace_helpers import random_ids

T, EDITED = 10, 4


def runs(arch: str) -> tuple[Internals, Internals]:
    loaded = tiny_loaded(arch)
    clean = random_ids(loaded, T, seed=3)
    corrupted = list(clean)
    corrupted[EDITED] = (clean[EDITED] + 17) % int(loaded.info.vocab_size)
    return Internals(loaded, clean), Internals(loaded, corrupted)


def restored_by_one_patch(clean, corrupted, spec: dict, result) -> float:
    steps = check_plan(corrupted, [Intervention(**spec, op="patch", source_run="clean")], {"clean": clean})
    logits = intervened_logits(corrupted, steps)[result.position - 1]
    ld = float(logits[result.target_id] - logits[result.foil_id])
    return (ld - result.corrupted_diff) / (result.clean_diff - result.corrupted_diff)


def test_each_batched_cell_is_one_patched_forward(arch):
    clean, corrupted = runs(arch)
    calls = []
    result = sweep(clean, corrupted, SweepRequest(), clean.loaded.labeler, lambda d, n: calls.append((d, n)))
    assert calls and calls[-1][0] == calls[-1][1] == len(calls)
    maps = {m.site: m for m in result.maps}
    assert set(maps) == {"residual", "attn_out", "mlp_out", "heads"}
    for site, cell_spec in (
        ("residual", lambda layer, q: {"site": "residual", "layer": layer, "positions": [q]}),
        ("attn_out", lambda layer, q: {"site": "attn_out", "layer": layer, "positions": [q]}),
        ("mlp_out", lambda layer, q: {"site": "mlp_out", "layer": layer, "positions": [q]}),
        ("heads", lambda layer, h: {"site": "head", "layer": layer, "head": h}),
    ):
        m = maps[site]
        i, j = len(m.rows) - 1, min(EDITED, len(m.cols) - 1)
        mine = restored_by_one_patch(clean, corrupted, cell_spec(m.rows[i], m.cols[j]), result)
        scale = 1 + abs(result.clean_diff - result.corrupted_diff) ** -1
        assert m.exact[i][j] == pytest.approx(mine, abs=2e-3 * scale), (arch, site)


def test_the_edited_tokens_own_cell_restores_the_clean_prediction():
    clean, corrupted = runs("llama")
    result = sweep(
        clean, corrupted, SweepRequest(sites=["residual"], mode="both"), clean.loaded.labeler, lambda *_: None
    )
    [m] = result.maps
    layer0 = m.exact[0]
    assert layer0[EDITED] == pytest.approx(1.0, abs=1e-3)
    assert all(abs(v) < 1e-4 for q, v in enumerate(layer0) if q != EDITED)  # the same values: no change
    assert all(v == 0 for q, v in enumerate(m.fast[0]) if q != EDITED)  # nothing differs there
    assert m.max_error is not None and m.correlation is not None and result.forwards == clean.n_layers * (T - 1)
    assert result.target_id == clean.ids[T - 1]


def test_fast_mode_runs_one_forward_and_says_how_it_was_computed():
    clean, corrupted = runs("gpt2")
    result = sweep(clean, corrupted, SweepRequest(mode="fast"), clean.loaded.labeler, lambda *_: None)
    assert result.forwards == 0 and all(m.exact is None and m.fast is not None for m in result.maps)
    assert "LD" in result.metric


def test_sweeps_refuse_what_they_cannot_compare():
    clean, corrupted = runs("llama")
    short = Internals(clean.loaded, clean.ids[:-1])
    with pytest.raises(InterventionError, match="same length"):
        sweep(clean, short, SweepRequest(), clean.loaded.labeler, lambda *_: None)
    with pytest.raises(InterventionError, match="nothing to restore"):
        sweep(clean, clean, SweepRequest(foil=5), clean.loaded.labeler, lambda *_: None)
    with pytest.raises(InterventionError, match="the foil is the target"):
        sweep(clean, corrupted, SweepRequest(target=5, foil=5), clean.loaded.labeler, lambda *_: None)


def test_a_cancelled_sweep_stops_at_the_next_batch():
    clean, corrupted = runs("llama")

    def cancel(done: int, _total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    def hooks() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in clean.model.modules())

    before = hooks()
    with pytest.raises(KeyboardInterrupt):
        sweep(clean, corrupted, SweepRequest(), clean.loaded.labeler, cancel)
    assert hooks() == before  # no hook left behind
