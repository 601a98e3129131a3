"""The teacher-forced capture: one forward of the model's own modules that keeps what every view
needs, O(L·T·d):

    residual(l):  [T, d]  input of decoder layer l (residual(L) = last layer's output)
    attn(l):      [T, d]  what layer l's attention adds to the residual stream
    mlp(l):       [T, d]  what layer l's MLP adds   (residual(l+1) = residual(l) + attn + mlp)
    extra(l):     [T, d]  only where a family's layers add more (arch.extra_part): the rest
    attention(l): the rotated queries [H, T, hd] and keys [kv, T, hd] that layer l's attention
                  computed with, its scaling, soft-cap and sinks, and which keys each query saw

Blocks are found through the architecture seam (arch/). Attention is recorded where every
modern transformers attention class hands its inputs to the attention kernel: the
AttentionInterface. During the capture the model's attention implementation is swapped for a
recording one that passes everything on to the real kernel (SDPA, or the family's own eager
function) and keeps q, k and the rest; so no family's projections, q/k norms, rotary variants
or per-layer windows need code here. Hooks and the recorder keep only the capturing thread's
forward: the model may be shared with a generating thread.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from llmvis.arch import Architecture, NotAvailable


@dataclass
class AttentionRecord:
    """What one layer's attention computed its weights from (eager attention's math:
    softmax(soft-cap(q·kᵀ·scaling) + mask), with a sink logit per head where the model has one)."""

    q: torch.Tensor  # [H, T, hd] after projections, q norms and rotary embedding
    k: torch.Tensor  # [kv_heads, T, hd]
    scaling: float
    softcap: float | None
    sinks: torch.Tensor | None  # [H]: a logit per head that takes part in the softmax, then is dropped
    key_bias: torch.Tensor | None  # [H, T]: added to every query's scores for each key (ALiBi)
    first_key: torch.Tensor  # [T] long: the first key each query may see (sliding windows, chunks)
    last_key: torch.Tensor  # [T] long: the last one (the query itself: causal)

    @property
    def nbytes(self) -> int:
        extra = [t for t in (self.sinks, self.key_bias) if t is not None]
        tensors = [self.q, self.k, self.first_key, self.last_key, *extra]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class Capture:
    """One run's residual stream and its layers' attention inputs (see the module docstring)."""

    residual: list[torch.Tensor]  # L + 1
    attn: list[torch.Tensor]  # L
    mlp: list[torch.Tensor]  # L
    attention: list[AttentionRecord | None]  # L; None: a layer without softmax attention
    unrecorded: dict[int, str] = field(default_factory=dict)  # layer → why its attention was not kept
    extra: list[torch.Tensor] | None = None  # L: what a layer adds beyond attention and MLP (arch.extra_part)
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        tensors = (*self.residual, *self.attn, *self.mlp, *(self.extra or ()))
        records = sum(r.nbytes for r in self.attention if r is not None)
        self.nbytes = sum(t.numel() * t.element_size() for t in tensors) + records


def _rows(x: Any) -> torch.Tensor:
    """[T, d] of a module output: a tensor or a tuple whose first item it is, [1, T, d] or already
    flat (OPT's MLP works on [T, d])."""
    out = x[0] if isinstance(x, tuple | list) else x
    return out[0] if out.dim() == 3 else out


# ----------------------------------------------------------------------------- the recorder


class _Session:
    """One capture's recording: attention modules → layer, records, mask bands seen so far."""

    def __init__(self, arch: Architecture) -> None:
        self.layer_of: dict[int, int] = {}
        for i in range(len(arch.layers)):
            with suppress(NotAvailable):
                self.layer_of[id(arch.attention(i))] = i
        self.records: list[AttentionRecord | None] = [None] * len(arch.layers)
        # mask id → (the mask, its band); the mask is held so that its id is not reused meanwhile
        self._bands: dict[int, tuple[Any, tuple[torch.Tensor, torch.Tensor]]] = {}
        self.problems: dict[int, str] = {}

    def from_interface(self, module: nn.Module, query: torch.Tensor, key: torch.Tensor, mask: Any, kwargs: Any) -> None:
        """A call of the AttentionInterface: the keywords every attention class passes."""
        layer = self.layer_of.get(id(module))
        if layer is not None:
            self.report(
                layer, query, key, mask, scaling=kwargs.get("scaling"), softcap=kwargs.get("softcap"),
                sinks=kwargs.get("s_aux"), window=kwargs.get("sliding_window"),
            )  # fmt: skip

    def report(
        self,
        layer: int,
        query: torch.Tensor,
        key: torch.Tensor,
        mask: Any,
        *,
        scaling: float | None = None,
        softcap: float | None = None,
        sinks: torch.Tensor | None = None,
        window: int | None = None,
        key_bias: torch.Tensor | None = None,
    ) -> None:
        """Keep what `layer`'s attention computed with: query [1, H, T, hd], key [1, kv, T, hd]."""
        try:
            first, last = self._band(mask, query.shape[-2], key.shape[-2], window)
        except NotAvailable as exc:
            self.problems[layer] = str(exc)
            return
        self.records[layer] = AttentionRecord(  # contiguous: a view into a fused q/k/v would keep v alive
            q=query[0].detach().contiguous(),
            k=key[0].detach().contiguous(),
            scaling=float(query.shape[-1]) ** -0.5 if scaling is None else float(scaling),
            softcap=float(softcap) if softcap else None,
            sinks=sinks.detach().float().clone() if isinstance(sinks, torch.Tensor) else None,
            first_key=first,
            last_key=last,
            key_bias=key_bias.detach().float() if key_bias is not None else None,
        )

    def _band(self, mask: Any, t: int, keys: int, window: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Which keys each query may see, as a band [first, last] per query: the model's own mask
        (shared by the layers of one type, so reduced once), or causal (and the kernel's window)."""
        if mask is None:
            pos = torch.arange(t)
            first = (pos - int(window) + 1).clamp_min(0) if window else torch.zeros(t, dtype=torch.long)
            return first, pos
        if not isinstance(mask, torch.Tensor):
            raise NotAvailable(f"this model's attention mask is a {type(mask).__name__}, not a tensor")
        hit = self._bands.get(id(mask))
        if hit is not None:
            return hit[1]
        m = mask.reshape(-1, *mask.shape[-2:])[0].to("cpu")  # [T, K]: every head and batch row alike
        if m.dtype == torch.bool:
            allowed = m
        else:
            masked = m <= torch.finfo(m.dtype).min / 2
            if not bool(((m == 0) | masked).all()):
                raise NotAvailable("this model's attention mask adds a bias (not only hides keys)")
            allowed = ~masked
        last = keys - 1 - allowed.flip(-1).int().argmax(-1)
        first = allowed.int().argmax(-1)
        if bool((allowed.sum(-1) != last - first + 1).any()):
            raise NotAvailable("this model's attention mask is not a band of consecutive keys")
        band = (first.long(), last.long())
        self._bands[id(mask)] = (mask, band)
        return band


_SESSIONS: dict[int, _Session] = {}


def _recording(base: str):
    """An attention function that records for the capturing thread and runs the real kernel."""

    def attend(
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        session = _SESSIONS.get(threading.get_ident())
        if session is not None:
            session.from_interface(module, query, key, mask, kwargs)
        real = ALL_ATTENTION_FUNCTIONS["sdpa"]
        if base == "eager":  # the family's own eager function (sinks, soft-cap…)
            real = getattr(sys.modules[type(module).__module__], "eager_attention_forward", real)
        return real(module, query, key, value, mask, *args, **kwargs)

    return attend


for _base in ("sdpa", "eager"):
    AttentionInterface.register(f"llmvis_{_base}", _recording(_base))
    AttentionMaskInterface.register(f"llmvis_{_base}", ALL_MASK_ATTENTION_FUNCTIONS[_base])


@contextmanager
def attention_implementation(model: nn.Module, name: str) -> Iterator[None]:
    """Run the model with another attention implementation (on every config its modules read;
    the caller holds the model lock, so no other forward runs meanwhile), then put it back."""
    configs: dict[int, Any] = {
        id(m.config): m.config for m in model.modules() if getattr(m, "config", None) is not None
    }
    configs[id(model.config)] = model.config
    originals = {key: getattr(c, "_attn_implementation_internal", None) for key, c in configs.items()}
    try:
        for c in configs.values():
            c._attn_implementation_internal = name
        yield
    finally:
        for key, c in configs.items():
            c._attn_implementation_internal = originals[key]


@contextmanager
def _recording_attention(model: nn.Module, session: _Session) -> Iterator[None]:
    """The recorder in place of the model's attention kernel, for this thread's forward."""
    base = "eager" if getattr(model.config, "_attn_implementation_internal", None) == "eager" else "sdpa"
    me = threading.get_ident()
    _SESSIONS[me] = session
    try:
        with attention_implementation(model, f"llmvis_{base}"):
            yield
    finally:
        _SESSIONS.pop(me, None)


# ----------------------------------------------------------------------------- the capture


@torch.no_grad()
def run_capture(arch: Architecture, ids: list[int], device: torch.device) -> Capture:
    """One teacher-forced forward of the decoder over `ids`, keeping the capture."""
    n = len(arch.layers)
    residual: list[Any] = [None] * (n + 1)
    attn: list[Any] = [None] * n
    mlp: list[Any] = [None] * n
    me = threading.get_ident()
    scale = arch.contribution_scale

    def layer_in(i: int):
        def hook(_mod: nn.Module, args: Any, kwargs: Any) -> None:
            if threading.get_ident() == me:
                residual[i] = _rows(args[0] if args else kwargs["hidden_states"]).detach()

        return hook

    def store(target: list[Any], i: int, factor: float = 1.0):
        def hook(_mod: nn.Module, args: Any, _kwargs: Any, output: Any) -> None:
            if threading.get_ident() == me:
                out = arch.contribution(args, output).detach()
                target[i] = out * factor if factor != 1.0 else out

        return hook

    def last_out(_mod: nn.Module, _args: Any, output: Any) -> None:
        if threading.get_ident() == me:
            residual[n] = _rows(output).detach()

    def reporter(i: int) -> Any:
        return lambda *args, **kwargs: session.report(i, *args, **kwargs) if threading.get_ident() == me else None

    session = _Session(arch)
    handles: list[Any] = []
    undo: list[Any] = []
    try:
        for i, layer in enumerate(arch.layers):
            handles.append(layer.register_forward_pre_hook(layer_in(i), with_kwargs=True))
            handles.append(arch.attn_added(i).register_forward_hook(store(attn, i, arch.attn_scale), with_kwargs=True))
            handles.append(arch.mlp_added(i).register_forward_hook(store(mlp, i, scale), with_kwargs=True))
            undo.append(arch.record_attention(i, reporter(i)))
        handles.append(arch.layers[-1].register_forward_hook(last_out))
        x = torch.tensor([ids], device=device)
        if any(u is not None for u in undo):  # the family's attention reports itself
            arch.decoder(input_ids=x, use_cache=False)
        else:
            with _recording_attention(arch.model, session):
                arch.decoder(input_ids=x, use_cache=False)
    finally:
        for h in handles:
            h.remove()
        for u in undo:
            if u is not None:
                u()
    missing = [i for i, t in enumerate(residual) if t is None]
    if missing or any(t is None for t in (*attn, *mlp)):
        raise NotAvailable(f"the capture's hooks did not fire for this architecture (layers {missing})")
    extra = None
    if arch.extra_part:  # the rest of what each layer added (Gemma 4: its per-layer input and layer scale)
        extra = [
            residual[i + 1] - residual[i] - attn[i].to(residual[i].device) - mlp[i].to(residual[i].device)
            for i in range(n)
        ]
    return Capture(residual, attn, mlp, session.records, session.problems, extra)
