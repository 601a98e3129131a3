"""Interventions: change one part of the model's computation and see what the prediction does.

An `Intervention` names a site (the residual stream entering a layer, what attention or the MLP
adds, one head's value mix, one MLP neuron), the positions it touches and an operation (zero,
the mean over the run's positions, scale, patch from another run of the same length, add a
vector). `intervening(loaded, plan)` applies a checked plan with hooks on the model's own modules,
found through the architecture seam (never a re-implemented layer):

    residual  layer l < L: the input of decoder layer l (a pre-hook); l = L: the last layer's output
    attn_out  what layer l's attention adds to the residual (its `attn_added` module's output)
    mlp_out   what layer l's MLP adds (its `mlp_added` module's output)
    head      head h's value mix: its slice of the input of the attention's output projection
    neuron    neuron n: its entry of the input of the MLP's output projection
    attention_edges  query positions × key positions (one head, or all) of layer l: their scores
              set to −inf before the softmax ("attention knockout"), through a wrapper of the
              AttentionInterface kernel that adds them to the mask the model hands it

The values `mean` and `patch` need come from the runs' captures (Internals), so a plan costs
no extra forward of its own run.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, Field, model_validator
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from llmvis.arch import NotAvailable
from llmvis.capture import attention_implementation
from llmvis.internals import Internals
from llmvis.plan import Intervention, Operation, Site
from llmvis.replay import replayed

__all__ = ["Intervention", "Operation", "Site"]


class InterventionError(ValueError):
    """An intervention that does not fit this model or run (the server answers 422)."""


@dataclass
class Step:
    """One checked intervention: where, which positions, and the new values' recipe."""

    spec: Intervention
    rows: torch.Tensor  # [n] long: the positions touched
    value: torch.Tensor | None  # mean: [w]; patch: [n, w]; add: [w]; else None
    cols: slice = field(
        default_factory=lambda: slice(None)
    )  # the columns of its module's input it owns (a head's, a neuron's)


def _site_values(internals: Internals, spec: Intervention) -> torch.Tensor:
    """[T, w] the site's values over a run (from its capture), fp32 on CPU."""
    layer = spec.layer
    if spec.site == "residual":
        return internals.residual(layer).float().cpu()
    if spec.site == "attn_out":
        return internals.attn_out(layer).float().cpu()
    if spec.site == "mlp_out":
        return internals.mlp_out(layer).float().cpu()
    if spec.site == "head":
        positions = range(internals.n_positions)
        mix = internals.head_mix(layer, positions)[int(spec.head or 0)].cpu()  # [T, hd]
        gate = internals.arch.head_gate(layer, internals.residual(layer))
        return mix * gate[:, int(spec.head or 0)].cpu() if gate is not None else mix
    return internals.mlp_activations(layer)[:, int(spec.neuron or 0)].float().cpu()[:, None]


def _width(internals: Internals, spec: Intervention) -> int:
    if spec.site == "head":
        return int(internals.record(spec.layer).q.shape[-1])
    if spec.site == "neuron":
        return 1
    return int(internals.residual(0).shape[-1])


def check_plan(
    internals: Internals,
    plan: list[Intervention],
    sources: dict[str, Internals] | None = None,
    length: int | None = None,
) -> list[Step]:
    """Validate `plan` against the model and the run (InterventionError says what is wrong) and
    resolve the values its operations need. `sources`: run id → the internals of a patch's run;
    `length`: the positions a plan may touch when the run will grow (generating), default the run's."""
    n_layers, t = internals.n_layers, internals.n_positions if length is None else length
    steps = []
    for i, spec in enumerate(plan):
        where = f"intervention {i}"
        top = n_layers if spec.site == "residual" else n_layers - 1
        if spec.layer > top:
            raise InterventionError(f"{where}: layer {spec.layer} is beyond the model (layers 0..{top})")
        try:
            if spec.site == "attention_edges":
                internals.record(spec.layer)
                if not internals.arch.calls_attention_interface:
                    raise InterventionError(
                        f"{where}: this family's attention does not go through transformers' AttentionInterface, "
                        "so its scores cannot be masked"
                    )
                if spec.head is not None and spec.head >= internals.n_heads:
                    raise InterventionError(
                        f"{where}: head {spec.head} is beyond the model (heads 0..{internals.n_heads - 1})"
                    )
                if any(not 0 <= k < t for k in spec.keys or []):
                    raise InterventionError(f"{where}: keys must be within the run, 0..{t - 1}")
            if spec.site == "head":
                internals.record(spec.layer)
                if int(spec.head or 0) >= internals.n_heads:
                    raise InterventionError(
                        f"{where}: head {spec.head} is beyond the model (heads 0..{internals.n_heads - 1})"
                    )
            if spec.site == "neuron":
                internals.arch.mlp_out_projection(spec.layer)
                width = int(internals.mlp_activations(spec.layer, slice(0, 1)).shape[-1])
                if int(spec.neuron or 0) >= width:
                    raise InterventionError(
                        f"{where}: neuron {spec.neuron} is beyond layer {spec.layer}'s MLP (0..{width - 1})"
                    )
        except NotAvailable as exc:
            raise InterventionError(f"{where}: {exc}") from exc
        rows = list(range(t)) if spec.positions is None else sorted(set(spec.positions))
        if not rows or rows[0] < 0 or rows[-1] >= t:
            raise InterventionError(f"{where}: positions must be within the run, 0..{t - 1}")
        index = torch.tensor(rows, dtype=torch.long)
        if spec.site == "attention_edges":
            cut = set(spec.keys or [])
            seen = [q for q in rows if q < internals.n_positions]  # (generated queries see more)
            visible = internals.visible_keys(spec.layer, seen)
            firsts = internals.record(spec.layer).first_key[torch.tensor(seen, dtype=torch.long)]
            for q, first, n in zip(seen, firsts.tolist(), visible.tolist(), strict=True):
                if all(k in cut for k in range(first, first + n)):
                    raise InterventionError(f"{where}: query {q} would have no key left to attend to")
        value = None
        if spec.op == "mean":
            value = _site_values(internals, spec).mean(0)
        elif spec.op == "patch":
            source = (sources or {}).get(str(spec.source_run))
            if source is None:
                raise InterventionError(f"{where}: run {spec.source_run} is not available to patch from")
            if source.n_positions != t:
                raise InterventionError(
                    f"{where}: run {spec.source_run} has {source.n_positions} tokens, this one {t}: "
                    "patching needs runs of the same length"
                )
            value = _site_values(source, spec)[index]
        elif spec.op == "add":
            value = torch.tensor(spec.vector, dtype=torch.float32)
            width = _width(internals, spec)
            if value.numel() != width:
                raise InterventionError(f"{where}: the vector has {value.numel()} values, the site {width}")
        cols = slice(None)
        if spec.site == "head":
            hd = _width(internals, spec)
            cols = slice(int(spec.head or 0) * hd, (int(spec.head or 0) + 1) * hd)
        elif spec.site == "neuron":
            cols = slice(int(spec.neuron or 0), int(spec.neuron or 0) + 1)
        steps.append(Step(spec, index, value, cols))
    return steps


def _changed(step: Step, current: torch.Tensor, value: torch.Tensor | None) -> torch.Tensor:
    """The new values of the touched rows, from their current values `current: [n, w]` (`value`:
    the step's value, a patch's cut to those rows)."""
    op = step.spec.op
    if op == "zero":
        return torch.zeros_like(current)
    if op == "scale":
        return current * float(step.spec.factor or 0.0)
    assert value is not None
    value = value.to(current.device, current.dtype)
    if op == "add":
        return current + value * (1.0 if step.spec.factor is None else float(step.spec.factor))
    return value.expand_as(current) if op == "mean" else value


@dataclass
class Window:
    """The positions a forward covers, [offset, offset + its length): a teacher-forced forward
    all of them, a generation's prefill chunk or decode step its own. Hooks act only in
    `thread` when it is set (between a generation's steps another thread may run a view)."""

    offset: int = 0
    thread: int | None = None


def _select(
    step: Step, window: Window, n: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(rows of this forward the step touches, its value for them), or None when it touches none."""
    if window.thread is not None and window.thread != threading.get_ident():
        return None
    keep = (step.rows >= window.offset) & (step.rows < window.offset + n)
    if not bool(keep.any()):
        return None
    value = step.value[keep] if step.spec.op == "patch" and step.value is not None else step.value
    return (step.rows[keep] - window.offset).to(device), value


def _rows_of(x: torch.Tensor) -> torch.Tensor:
    """[T, w] view of a module's [1, T, w] or [T, w] activation."""
    return x[0] if x.dim() == 3 else x


@contextmanager
def intervening(internals: Internals, steps: list[Step], window: Window | None = None) -> Iterator[None]:
    """Run the model with `steps` applied (hooks on its own modules, removed afterwards), in
    forwards over the positions `window` says (default: a teacher-forced forward of the run)."""
    arch = internals.arch
    window = window or Window()
    handles: list[Any] = []

    def on_input(step: Step):  # replace rows of a module's first input
        def hook(_module: Any, args: tuple, kwargs: dict) -> Any:
            x = args[0] if args else kwargs["hidden_states"]
            x = x.clone()
            rows = _rows_of(x)
            cols = step.cols
            chosen = _select(step, window, rows.shape[0], x.device)
            if chosen is None:
                return None
            idx, value = chosen
            rows[idx, cols] = _changed(step, rows[idx, cols], value)
            if args:
                return (x, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": x}

        return hook

    def on_output(step: Step, scale: float):  # change what a block adds to the residual
        def hook(_module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
            added = arch.contribution(args, output) * scale
            chosen = _select(step, window, added.shape[0], added.device)
            if chosen is None:
                return None
            idx, value = chosen
            delta = (_changed(step, added[idx].float(), value) - added[idx].float()) / scale
            out = output[0] if isinstance(output, tuple | list) else output
            out = out.clone()
            _rows_of(out)[idx] += delta.to(out.dtype)
            return (out, *output[1:]) if isinstance(output, tuple | list) else out

        return hook

    def on_last_output(step: Step):  # the residual after the last layer
        def hook(_module: Any, _args: tuple, output: Any) -> Any:
            out = output[0] if isinstance(output, tuple | list) else output
            chosen = _select(step, window, _rows_of(out).shape[0], out.device)
            if chosen is None:
                return None
            idx, value = chosen
            out = out.clone()
            rows = _rows_of(out)
            rows[idx] = _changed(step, rows[idx], value)
            return (out, *output[1:]) if isinstance(output, tuple | list) else out

        return hook

    edges = [step for step in steps if step.spec.site == "attention_edges"]
    knockouts: dict[int, list[Step]] = {}
    for step in edges:
        knockouts.setdefault(id(arch.attention(step.spec.layer)), []).append(step)
    me = threading.get_ident()
    swap: Any = None
    if edges:
        base = "eager" if getattr(arch.model.config, "_attn_implementation_internal", None) == "eager" else "sdpa"
        swap = attention_implementation(arch.model, f"llmvis_knockout_{base}")
    try:
        if swap is not None:
            _KNOCKOUTS[me] = knockouts
            swap.__enter__()
        for step in steps:
            spec, layer = step.spec, step.spec.layer
            if spec.site == "attention_edges":
                continue
            if spec.site == "residual" and layer == internals.n_layers:
                handles.append(arch.layers[-1].register_forward_hook(on_last_output(step)))
            elif spec.site == "residual":
                handles.append(arch.layers[layer].register_forward_pre_hook(on_input(step), with_kwargs=True))
            elif spec.site == "attn_out":
                hook = on_output(step, arch.attn_scale)
                handles.append(arch.attn_added(layer).register_forward_hook(hook, with_kwargs=True))
            elif spec.site == "mlp_out":
                hook = on_output(step, arch.contribution_scale)
                handles.append(arch.mlp_added(layer).register_forward_hook(hook, with_kwargs=True))
            elif spec.site == "head":
                site = arch.attn_out_projection(layer)
                handles.append(site.register_forward_pre_hook(on_input(step), with_kwargs=True))
            else:
                site = arch.mlp_out_projection(layer)
                handles.append(site.register_forward_pre_hook(on_input(step), with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
        if swap is not None:
            swap.__exit__(None, None, None)
            _KNOCKOUTS.pop(me, None)


# attention knockout: the forward's thread → attention module id → its edge steps
_KNOCKOUTS: dict[int, dict[int, list[Step]]] = {}


def _knocked_mask(steps: list[Step], query: torch.Tensor, key: torch.Tensor, mask: Any, window: Any) -> torch.Tensor:
    """The additive float mask [1, H, n, K] of `mask` (None: causal, within `window`) with the
    steps' query × key scores set to −inf."""
    heads, n, k = query.shape[1], query.shape[-2], key.shape[-2]
    offset = k - n  # absolute position of the first query
    floor = torch.finfo(query.dtype).min
    if mask is None:
        q_pos = torch.arange(offset, offset + n, device=query.device)[:, None]
        k_pos = torch.arange(k, device=query.device)[None, :]
        allowed = k_pos <= q_pos
        if window:
            allowed &= k_pos > q_pos - int(window)
        out = torch.where(allowed, 0.0, floor).to(query.dtype)[None, None].expand(1, heads, n, k).clone()
    elif mask.dtype == torch.bool:
        out = torch.where(mask[:1, :, -n:], 0.0, floor).to(query.dtype).expand(1, heads, n, k).clone()
    else:
        out = mask[:1, :, -n:].to(query.dtype).expand(1, heads, n, k).clone()
    for step in steps:
        rows = step.rows.to(query.device) - offset
        rows = rows[(rows >= 0) & (rows < n)]
        cols = torch.tensor(step.spec.keys or [], device=query.device)
        which = slice(None) if step.spec.head is None else slice(step.spec.head, step.spec.head + 1)
        out[:, which, rows[:, None], cols[None, :]] = floor
    return out


def _knockout(base: str):
    """An attention function that masks the knocked-out edges of the calling thread's plan."""

    def attend(
        module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any, *args: Any, **kwargs: Any
    ) -> Any:
        steps = _KNOCKOUTS.get(threading.get_ident(), {}).get(id(module))
        if steps:
            mask = _knocked_mask(steps, query, key, mask, kwargs.get("sliding_window"))
        real = ALL_ATTENTION_FUNCTIONS["sdpa"]
        if base == "eager":
            real = getattr(sys.modules[type(module).__module__], "eager_attention_forward", real)
        return real(module, query, key, value, mask, *args, **kwargs)

    return attend


for _base in ("sdpa", "eager"):
    AttentionInterface.register(f"llmvis_knockout_{_base}", _knockout(_base))
    AttentionMaskInterface.register(f"llmvis_knockout_{_base}", ALL_MASK_ATTENTION_FUNCTIONS[_base])


@torch.no_grad()
def intervened_logits(internals: Internals, steps: list[Step], replay: bool = False) -> torch.Tensor:
    """[T, V] fp32 logits of the run's teacher-forced forward with `steps` applied. `replay`:
    the layers below the first one touched give their captured outputs instead of running
    (llmvis.replay: equal to the full forward up to rounding, and about half the cost)."""
    model = internals.model
    ids = torch.tensor([internals.ids], device=internals.loaded.device)
    below = min((s.spec.layer for s in steps), default=0) if replay else 0
    with intervening(internals, steps), replayed(internals, min(below, internals.n_layers)):
        return model(input_ids=ids, use_cache=False).logits[0].float()


def plan_for_generation(
    loaded: Any, known: list[int], plan: list[Intervention], max_new_tokens: int
) -> tuple[Internals, list[Step]]:
    """A plan checked for a generation that starts from `known` and adds up to
    `max_new_tokens`: positions may reach the new ones; `mean` is over the known positions
    (from their capture); a patch needs a run to read from, which a generation is not."""
    for i, spec in enumerate(plan):
        if spec.op == "patch":
            raise InterventionError(
                f"intervention {i}: patching reads another run position by position; a generation "
                "has no run to read from yet (use what-if on a finished run)"
            )
    internals = Internals(loaded, known)
    return internals, check_plan(internals, plan, length=len(known) + max_new_tokens)


RUN_ID_PATTERN = r"^[A-Za-z0-9_-]+$"


class SteeringRequest(BaseModel):
    """Each side of the contrast pair is a text typed here or a saved run (its prompt and reply)."""

    layer: int = Field(ge=0, description="hidden state 0..L whose residual stream is steered")
    positive: str | None = Field(default=None, min_length=1, max_length=20_000, description="text with the trait")
    negative: str | None = Field(default=None, min_length=1, max_length=20_000, description="text without it")
    positive_run: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=RUN_ID_PATTERN, description="a saved run with the trait"
    )
    negative_run: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=RUN_ID_PATTERN, description="a saved run without it"
    )

    @model_validator(mode="after")
    def _one_source_per_side(self) -> SteeringRequest:
        for side in ("positive", "negative"):
            if (getattr(self, side) is None) == (getattr(self, f"{side}_run") is None):
                raise ValueError(f"give either `{side}` (a text) or `{side}_run` (a saved run's id), not both")
        return self


class SteeringVector(BaseModel):
    layer: int
    vector: list[float] = Field(description="[d] mean residual over the positive side − over the negative")
    norm: float
    positive_tokens: int
    negative_tokens: int


def text_ids(loaded: Any, text: str) -> list[int]:
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise InterventionError(f"{text[:40]!r} has no tokens")
    return ids


@torch.no_grad()
def steering_vector(loaded: Any, layer: int, positive: list[int], negative: list[int]) -> SteeringVector:
    """A contrast pair's direction at a layer: the mean residual stream over the positive tokens
    minus over the negative ones (each from its own capture), for an `add` intervention with a
    coefficient."""
    from llmvis.analyses.common import round4

    means = []
    for ids in (positive, negative):
        internals = Internals(loaded, ids)
        if layer > internals.n_layers:
            raise InterventionError(f"layer {layer} is beyond the model (hidden states 0..{internals.n_layers})")
        means.append(internals.residual(layer).float().cpu().mean(0))
    vector = means[0] - means[1]
    return SteeringVector(
        layer=layer, vector=round4(vector), norm=round4(float(vector.norm())),
        positive_tokens=len(positive), negative_tokens=len(negative),
    )  # fmt: skip


# ----------------------------------------------------------------------------- ablate and look

CHUNK = 256  # positions per chunk when comparing two runs' distributions
MAX_INTERVENTIONS = 64


class WhatIfRequest(BaseModel):
    interventions: list[Intervention] = Field(max_length=MAX_INTERVENTIONS)
    position: int | None = Field(
        default=None, ge=1, description="position of the predicted token to explain (default: last)"
    )
    foil: int | None = Field(default=None, ge=0, description="a contrast token: also report logit(token) − logit(foil)")
    top_n: int = Field(default=10, ge=1, le=50, description="candidates listed before and after")


class WhatIfCandidate(BaseModel):
    id: int
    label: str
    prob: float


class Outcome(BaseModel):
    prob: float = Field(description="probability of the token at `position`")
    logit: float
    rank: int = Field(description="0 = the most likely")
    gap: float | None = Field(default=None, description="logit(token) − logit(foil), with a foil")
    top: list[WhatIfCandidate]


class WhatIfResult(BaseModel):
    position: int
    token_id: int
    token_label: str
    foil_id: int | None = None
    foil_label: str | None = None
    before: Outcome = Field(description="the run as it was (its teacher-forced capture)")
    after: Outcome = Field(description="the same tokens, forced, with the interventions applied")
    positions: list[int] = Field(description="[T−1] every predicted position 1..T−1")
    prob_before: list[float] = Field(description="[T−1] probability of the run's token at each position")
    prob_after: list[float]
    kl: list[float] = Field(description="[T−1] KL(before ‖ after) of each position's next-token distribution, nats")
    interventions: list[Intervention]


def _outcome(logits: torch.Tensor, token: int, foil: int | None, top_n: int, label: Any) -> Outcome:
    probs = torch.softmax(logits, -1)
    top_p, top_i = probs.topk(top_n)
    return Outcome(
        prob=float(probs[token]),
        logit=float(logits[token]),
        rank=int((logits > logits[token]).sum()),
        gap=None if foil is None else float(logits[token] - logits[foil]),
        top=[WhatIfCandidate(id=int(i), label=label(int(i)), prob=float(p)) for p, i in zip(top_p, top_i, strict=True)],
    )


def what_if(internals: Internals, request: WhatIfRequest, steps: list[Step], label: Any) -> WhatIfResult:
    """Ablate and look: the run's own tokens forced through the model with `steps` applied,
    beside the run as it was, at `request.position` and along the whole run."""
    from llmvis.analyses.common import round4

    ids, t = internals.ids, internals.n_positions
    if t < 2:
        raise InterventionError("this run has a single token: nothing in it was predicted")
    pos = t - 1 if request.position is None else request.position
    if not 1 <= pos < t:
        raise InterventionError(f"position {pos} is not a predicted position of this run: 1..{t - 1}")
    vocab = int(internals.lm_head.weight.shape[0])
    if request.foil is not None and not request.foil < vocab:
        raise InterventionError(f"foil {request.foil} is out of range: the vocabulary is 0..{vocab - 1}")
    after = intervened_logits(internals, steps, replay=True)  # [T, V]
    final = internals.residual(internals.n_layers)
    prob_before, prob_after, kl = [], [], []
    before_at = None
    for a in range(0, t - 1, CHUNK):
        b = min(t - 1, a + CHUNK)
        lb = internals.logits(final[a:b]).float().cpu()
        la = after[a:b].cpu()
        if a <= pos - 1 < b:
            before_at = lb[pos - 1 - a]
        pb, pa = torch.log_softmax(lb, -1), torch.log_softmax(la, -1)
        nxt = torch.tensor(ids[a + 1 : b + 1])[:, None]
        prob_before += pb.gather(1, nxt)[:, 0].exp().tolist()
        prob_after += pa.gather(1, nxt)[:, 0].exp().tolist()
        kl += (pb.exp() * (pb - pa)).sum(-1).clamp_min(0).tolist()
    assert before_at is not None
    token = ids[pos]
    return WhatIfResult(
        position=pos,
        token_id=token,
        token_label=label(token),
        foil_id=request.foil,
        foil_label=None if request.foil is None else label(request.foil),
        before=_outcome(before_at, token, request.foil, request.top_n, label),
        after=_outcome(after[pos - 1].cpu(), token, request.foil, request.top_n, label),
        positions=list(range(1, t)),
        prob_before=round4(prob_before),
        prob_after=round4(prob_after),
        kl=round4(kl),
        interventions=[s.spec for s in steps],
    )
