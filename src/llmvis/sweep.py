"""Activation patching sweep: which sites of a clean run restore its prediction in a corrupted one.

A clean run and a corrupted run of the same length (some prompt tokens edited). The metric is
the normalised logit difference at the predicted position p (read at p − 1):

    LD = logit(target) − logit(foil),   restored = (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted)

so 1 means the patch restores the clean prediction and 0 that it changes nothing. target is
the clean run's token at p; foil the corrupted run's (or its most likely other token).

- exact: for each cell, the corrupted run's forward with that one site replaced by the clean
  run's value there: the residual entering layer l at position q, what attention or the MLP of
  layer l adds at q, one head's value mix at every position. Cells of one layer run as one
  batch (the corrupted tokens repeated, each row patched at its own cell). Layers before l
  cannot see the patch, so they are not run: each gives the corrupted run's captured output
  (llmvis.replay), and a patched forward costs the layers from l on (about half, on average).
- fast (attribution patching): one forward and one backward on the corrupted run;
  restored ≈ (clean − corrupted) · ∂LD/∂site, a first-order estimate.
Only positions before the read position can change the prediction (causal), so they are the
columns. Values come from the runs' captures; hooks sit on the model's own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from llmvis.internals import Internals
from llmvis.interventions import InterventionError
from llmvis.replay import replayed

SweepSite = Literal["residual", "attn_out", "mlp_out", "heads"]
BATCH = 32  # patched forwards per batch
ALL_SITES: list[SweepSite] = ["residual", "attn_out", "mlp_out", "heads"]


class SweepRequest(BaseModel):
    corrupted_run: str | None = Field(default=None, description="a run of the same length to patch into")
    corrupted_tokens: list[int] | None = Field(
        default=None, description="or the clean run's tokens with some edited (same length)"
    )
    position: int | None = Field(default=None, ge=1, description="the predicted position (default: last)")
    target: int | None = Field(default=None, ge=0, description="default: the clean run's token at `position`")
    foil: int | None = Field(
        default=None, ge=0, description="default: the corrupted run's token there (or its most likely other one)"
    )
    sites: list[SweepSite] = Field(default_factory=lambda: list(ALL_SITES))
    mode: Literal["exact", "fast", "both"] = "exact"


class SweepMap(BaseModel):
    site: SweepSite
    rows: list[int] = Field(description="layers")
    cols: list[int] = Field(description="positions (heads for site 'heads')")
    exact: list[list[float]] | None = Field(default=None, description="[layer][col] restored metric, patched")
    fast: list[list[float]] | None = Field(default=None, description="[layer][col] attribution-patching estimate")
    max_error: float | None = Field(default=None, description="max |fast − exact| over the cells both computed")
    correlation: float | None = Field(default=None, description="Pearson correlation of fast and exact")


class SweepResult(BaseModel):
    position: int
    target_id: int
    target_label: str
    foil_id: int
    foil_label: str
    clean_diff: float = Field(description="LD of the clean run")
    corrupted_diff: float = Field(description="LD of the corrupted run")
    metric: str
    maps: list[SweepMap]
    forwards: int = Field(description="patched forwards run (exact mode)")


Progress = Callable[[int, int], None]  # (done, total); raises to cancel


def exact_mode(request: SweepRequest) -> bool:
    return request.mode in ("exact", "both")


def _logit_diff(logits: torch.Tensor, target: int, foil: int) -> torch.Tensor:
    return logits[..., target].float() - logits[..., foil].float()


def _read(model: Any, ids: torch.Tensor, src: int) -> torch.Tensor:
    """[B, V] the logits at position `src` of a batch forward (the later ones are not computed)."""
    out = model(input_ids=ids, use_cache=False, logits_to_keep=ids.shape[1] - src)
    return out.logits[:, 0].float()


def _values(run: Internals, site: SweepSite, layer: int) -> torch.Tensor:
    """[T, w] (heads: [H, T, hd]) the site's values in a run."""
    if site == "residual":
        return run.residual(layer).float().cpu()
    if site == "attn_out":
        return run.attn_out(layer).float().cpu()
    if site == "mlp_out":
        return run.mlp_out(layer).float().cpu()
    mix = run.head_mix(layer, range(run.n_positions)).cpu()  # [H, T, hd]
    gate = run.arch.head_gate(layer, run.residual(layer))
    return mix * gate.transpose(0, 1).cpu() if gate is not None else mix


def _module(run: Internals, site: SweepSite, layer: int) -> Any:
    arch = run.arch
    if site == "residual":
        return arch.layers[layer]
    if site == "attn_out":
        return arch.attn_added(layer)
    if site == "mlp_out":
        return arch.mlp_added(layer)
    return arch.attn_out_projection(layer)


def _flat(x: torch.Tensor, t: int) -> torch.Tensor:
    """[B, T, w] view of an activation that may come flattened as [B·T, w] (OPT's MLP)."""
    return x if x.dim() == 3 else x.view(-1, t, x.shape[-1])


def _patch_hook(run: Internals, site: SweepSite, layer: int, cells: list[int], clean: torch.Tensor):
    """A hook giving batch row b the clean value of cell `cells[b]` (a position; a head for 'heads')."""
    t, arch = run.n_positions, run.arch
    rows = torch.arange(len(cells))
    idx = torch.tensor(cells)
    if site in ("residual", "heads"):

        def pre(_m: Any, args: tuple, kwargs: dict) -> Any:
            x = (args[0] if args else kwargs["hidden_states"]).clone()
            v = _flat(x, t)
            if site == "residual":
                v[rows, idx] = clean[idx].to(v.device, v.dtype)
            else:
                hd = clean.shape[-1]
                for b, h in enumerate(cells):
                    v[b, :, h * hd : (h + 1) * hd] = clean[h].to(v.device, v.dtype)
            return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})

        return pre, True
    scale = arch.attn_scale if site == "attn_out" else arch.contribution_scale

    def post(_m: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        out = (output[0] if isinstance(output, tuple | list) else output).clone()
        v = _flat(out, t)
        for b, q in enumerate(cells):  # what the block adds now, per row (BLOOM's output holds the residual)
            one_args = tuple(
                a[b : b + 1] if isinstance(a, torch.Tensor) and a.shape[0] == len(cells) else a for a in args
            )
            added = arch.contribution(one_args, v[b : b + 1]) * scale
            v[b, q] += ((clean[q].to(added.device) - added[q].float()) / scale).to(v.dtype)
        return (out, *output[1:]) if isinstance(output, tuple | list) else out

    return post, False


def _check(clean: Internals, corrupted: Internals, request: SweepRequest) -> tuple[int, int, int]:
    t = clean.n_positions
    if corrupted.n_positions != t:
        raise InterventionError(
            f"the corrupted run has {corrupted.n_positions} tokens, the clean one {t}: patching needs the same length"
        )
    pos = t - 1 if request.position is None else request.position
    if not 1 <= pos < t:
        raise InterventionError(f"position {pos} is not a predicted position: 1..{t - 1}")
    vocab = int(clean.lm_head.weight.shape[0])
    target = clean.ids[pos] if request.target is None else request.target
    foil = request.foil
    if foil is None:
        foil = corrupted.ids[pos]
        if foil == target:
            logits = clean.logits(corrupted.residual(clean.n_layers)[pos - 1]).float()
            logits[target] = float("-inf")
            foil = int(logits.argmax())
    for name, token in (("target", target), ("foil", foil)):
        if not 0 <= token < vocab:
            raise InterventionError(f"{name} {token} is out of range: the vocabulary is 0..{vocab - 1}")
    if foil == target:
        raise InterventionError("the foil is the target: choose another token to contrast with")
    for site in request.sites:
        if site == "heads":
            clean.attention_layers(required=True)
    return pos, int(target), int(foil)


def _layers(run: Internals, site: SweepSite) -> list[int]:
    return run.attention_layers() if site == "heads" else list(range(run.n_layers))


def sweep(clean: Internals, corrupted: Internals, request: SweepRequest, label: Any, progress: Progress) -> SweepResult:
    """Run the sweep (see the module docstring); `progress(done, total)` between batches."""
    from llmvis.analyses.common import round4

    pos, target, foil = _check(clean, corrupted, request)
    src, model = pos - 1, clean.model
    ids = torch.tensor([corrupted.ids], device=clean.loaded.device)
    with torch.no_grad():
        ld_clean = float(_logit_diff(_read(model, torch.tensor([clean.ids], device=ids.device), src), target, foil)[0])
        ld_corrupt = float(_logit_diff(_read(model, ids, src), target, foil)[0])
    span = ld_clean - ld_corrupt
    if abs(span) < 1e-6:
        raise InterventionError("the two runs give the same logit difference at this position: nothing to restore")
    positions = list(range(pos))  # the read position and those before it
    plans = {s: (_layers(clean, s), list(range(clean.n_heads)) if s == "heads" else positions) for s in request.sites}
    exact = exact_mode(request)
    total = sum(len(rows) * -(-len(cols) // BATCH) for rows, cols in plans.values()) if exact else 0
    total += 1 if request.mode != "exact" else 0
    done, forwards = 0, 0
    maps = []
    grads = _attribution(clean, corrupted, request.sites, src, target, foil) if request.mode != "exact" else {}
    if request.mode != "exact":
        done += 1
        progress(done, total)
    for site, (rows, cols) in plans.items():
        exact_map, fast_map = [], []
        for layer in rows:
            clean_v = _values(clean, site, layer)
            if exact:
                line: list[float] = []
                for a in range(0, len(cols), BATCH):
                    cells = cols[a : a + BATCH]
                    hook, pre = _patch_hook(clean, site, layer, cells, clean_v)
                    module = _module(clean, site, layer)
                    handle = (
                        module.register_forward_pre_hook(hook, with_kwargs=True)
                        if pre
                        else module.register_forward_hook(hook, with_kwargs=True)
                    )
                    try:
                        with torch.no_grad(), replayed(corrupted, layer):
                            lds = _logit_diff(_read(model, ids.expand(len(cells), -1), src), target, foil)
                    finally:
                        handle.remove()
                    line += ((lds - ld_corrupt) / span).tolist()
                    forwards += len(cells)
                    done += 1
                    progress(done, total)
                exact_map.append(line)
            if grads:
                delta = clean_v - _values(corrupted, site, layer)
                g = grads[(site, layer)]
                est = (delta * g).sum(-1) if site != "heads" else (delta * g).sum((-1, -2))
                fast_map.append((est[: len(cols)] / span).tolist())
        entry = SweepMap(
            site=site, rows=rows, cols=cols, exact=round4(exact_map) if exact else None,
            fast=round4(fast_map) if grads else None,
        )  # fmt: skip
        if exact and grads:
            e, f = torch.tensor(exact_map).flatten(), torch.tensor(fast_map).flatten()
            entry.max_error = round4(float((e - f).abs().max()))
            if len(e) > 1 and float(e.std()) > 0 and float(f.std()) > 0:
                entry.correlation = round4(float(torch.corrcoef(torch.stack([e, f]))[0, 1]))
        maps.append(entry)
    return SweepResult(
        position=pos, target_id=target, target_label=label(target), foil_id=foil, foil_label=label(foil),
        clean_diff=round4(ld_clean), corrupted_diff=round4(ld_corrupt),
        metric="(LD_patched − LD_corrupted) / (LD_clean − LD_corrupted), LD = logit(target) − logit(foil)",
        maps=maps, forwards=forwards,
    )  # fmt: skip


def _attribution(
    clean: Internals, corrupted: Internals, sites: list[SweepSite], src: int, target: int, foil: int
) -> dict[tuple[SweepSite, int], torch.Tensor]:
    """∂LD/∂site on the corrupted run, per (site, layer), in the units of `_values` (one forward,
    one backward; only the kept activations are differentiated, no parameter gets a .grad)."""
    kept: dict[tuple[SweepSite, int], torch.Tensor] = {}
    handles = []
    t = corrupted.n_positions

    def keep_input(key: tuple[SweepSite, int]):
        def pre(_m: Any, args: tuple, kwargs: dict) -> None:
            kept[key] = args[0] if args else kwargs["hidden_states"]

        return pre

    def keep_output(key: tuple[SweepSite, int]):
        def post(_m: Any, _a: tuple, output: Any) -> None:
            kept[key] = output[0] if isinstance(output, tuple | list) else output

        return post

    for site in sites:
        for layer in _layers(clean, site):
            module = _module(clean, site, layer)
            if site in ("residual", "heads"):
                handles.append(module.register_forward_pre_hook(keep_input((site, layer)), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(keep_output((site, layer))))
    try:
        with torch.inference_mode(False), torch.enable_grad():
            ids = torch.tensor([corrupted.ids], device=clean.loaded.device)
            ld = _logit_diff(_read(clean.model, ids, src), target, foil)[0]
            keys = list(kept)
            found = torch.autograd.grad(ld, [kept[k] for k in keys], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for key, g in zip(keys, found, strict=True):
        site, layer = key
        if g is None:
            g = torch.zeros_like(kept[key])
        g = _flat(g.detach().float().cpu(), t)[0]  # [T, w]
        if site == "attn_out":
            g = g / clean.arch.attn_scale  # the site's values are scale × the module's output
        elif site == "mlp_out":
            g = g / clean.arch.contribution_scale
        elif site == "heads":
            heads = clean.n_heads
            g = g.reshape(t, heads, -1).transpose(0, 1)  # [H, T, hd]
        out[key] = g
    return out
