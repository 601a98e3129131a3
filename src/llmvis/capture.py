"""The teacher-forced capture: one forward of the model's own modules that keeps what every view
needs, O(L·T·d):

    residual(l):  [T, d]  input of decoder layer l (residual(L) = last layer's output)
    attn(l):      [T, d]  what layer l's attention adds to the residual stream
    mlp(l):       [T, d]  what layer l's MLP adds   (residual(l+1) = residual(l) + attn + mlp)
    extra(l):     [T, d]  only where a family's layers add more (arch.extra_part): the rest
    attention(l): the rotated queries [H, T, hd], keys and values [kv, T, hd] that layer l's
                  attention computed with, its scaling, soft-cap and sinks, and which keys each
                  query saw

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
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
    v: torch.Tensor | None = None  # [kv_heads, T, hd]: what each head mixes (None: not handed over)

    @property
    def nbytes(self) -> int:
        extra = [t for t in (self.sinks, self.key_bias, self.v) if t is not None]
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


class _Rows:
    """One recorded quantity over the forwards, its positions along axis `dim`: multi-position
    forwards (prefill chunks) kept as they came, single positions (decode steps) copied into a
    buffer of `capacity` rows reserved at the first one. A small tensor kept per step would
    pin the heap between the KV cache's copies that each step frees, and that memory could not
    be given back (a 1,536-token run with 128 steps held 7 GB instead of 2)."""

    def __init__(self, dim: int, capacity: int = 0) -> None:
        self.dim, self.capacity = dim, capacity
        self.chunks: list[torch.Tensor] = []
        self.buffer: torch.Tensor | None = None
        self.used = 0
        self.added = 0  # forwards that added to it

    def __len__(self) -> int:
        return self.added

    def append(self, t: torch.Tensor) -> None:
        self.added += 1
        if t.shape[self.dim] == 1 and self.capacity:
            if self.buffer is None:
                shape = list(t.shape)
                shape[self.dim] = self.capacity
                self.buffer = t.new_empty(shape)
            if self.used < self.capacity:
                self.buffer.narrow(self.dim, self.used, 1).copy_(t)
                self.used += 1
                return
        self._flush()
        self.chunks.append(t)

    def _flush(self) -> None:
        """The buffered rows join the chunks (a multi-position forward comes after them)."""
        if self.buffer is not None and self.used:
            self.chunks.append(self.buffer.narrow(self.dim, 0, self.used).clone())
            self.used = 0

    def join(self) -> torch.Tensor:
        """Every position's rows as one ordinary tensor (inference-mode tensors are copied); frees
        what it held."""
        self._flush()
        pieces, self.chunks, self.buffer = self.chunks, [], None
        if len(pieces) == 1:
            return pieces[0].clone() if pieces[0].is_inference() else pieces[0]
        return torch.cat(pieces, self.dim)


class _Session:
    """A capture's attention recording over one or more forwards: attention modules → layer,
    each layer's pieces, the mask bands seen in the current forward."""

    def __init__(self, arch: Architecture, capacity: int = 0) -> None:
        self.layer_of: dict[int, int] = {}
        for i in range(len(arch.layers)):
            with suppress(NotAvailable):
                self.layer_of[id(arch.attention(i))] = i
        n = len(arch.layers)
        # per layer: queries [H, n, hd], new keys and values [kv, n, hd], key bias [H, n], each query's band [n]
        self.q = [_Rows(1, capacity) for _ in range(n)]
        self.k = [_Rows(1, capacity) for _ in range(n)]
        self.v = [_Rows(1, capacity) for _ in range(n)]
        self.bias = [_Rows(1, capacity) for _ in range(n)]
        self.first = [_Rows(0, capacity) for _ in range(n)]
        self.last = [_Rows(0, capacity) for _ in range(n)]
        self.meta: list[tuple[float, float | None, torch.Tensor | None] | None] = [None] * len(arch.layers)
        self.offset = 0  # absolute position of the current forward's first query
        # mask id → (the mask, its band); the mask is held so that its id is not reused meanwhile
        self._bands: dict[Any, tuple[Any, tuple[torch.Tensor, torch.Tensor]]] = {}
        self.problems: dict[int, str] = {}

    def begin(self, offset: int) -> None:
        """A forward over the positions from `offset` on starts (its masks are new objects)."""
        self.offset = offset
        self._bands.clear()

    def from_interface(
        self, module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any, kwargs: Any
    ) -> None:
        """A call of the AttentionInterface: the keywords every attention class passes."""
        layer = self.layer_of.get(id(module))
        if layer is not None:
            self.report(
                layer, query, key, mask, scaling=kwargs.get("scaling"), softcap=kwargs.get("softcap"),
                sinks=kwargs.get("s_aux"), window=kwargs.get("sliding_window"), value=value,
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
        value: torch.Tensor | None = None,
    ) -> None:
        """Keep what `layer`'s attention computed with: query [1, H, n, hd] for this forward's n
        positions, key and value [1, kv, K, hd] whose last n are theirs (before them, where the
        family hands them over: the KV cache's), the mask over every key the queries chose among."""
        if layer in self.problems:
            return
        n, keys = query.shape[-2], key.shape[-2]
        try:
            first, last = self._band(mask, n, window)
        except NotAvailable as exc:
            self.problems[layer] = str(exc)
            return
        if self.meta[layer] is None:
            self.meta[layer] = (
                float(query.shape[-1]) ** -0.5 if scaling is None else float(scaling),
                float(softcap) if softcap else None,
                sinks.detach().float().clone() if isinstance(sinks, torch.Tensor) else None,
            )
        # contiguous: a view into a fused q/k/v would keep v alive, one into the KV cache the cache
        self.q[layer].append(query[0].detach().contiguous())
        self.k[layer].append(key[0, :, keys - n :].detach().contiguous())
        if value is not None:
            self.v[layer].append(value[0, :, value.shape[-2] - n :].detach().contiguous())
        self.first[layer].append(first)
        self.last[layer].append(last)
        if key_bias is not None:
            self.bias[layer].append(key_bias[:, -n:].detach().float().clone())

    def _band(self, mask: Any, n: int, window: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Which keys each of this forward's `n` queries may see, as absolute positions
        [first, last]: from the model's own mask (shared by the layers of one type, so reduced
        once per forward; its last column is the newest key), or causal (and the kernel's window)."""
        key = id(mask) if mask is not None else ("causal", window)  # every layer of a type shares it
        hit = self._bands.get(key)
        if hit is not None:
            return hit[1]
        if mask is None:
            last = torch.arange(self.offset, self.offset + n)
            first = (last - int(window) + 1).clamp_min(0) if window else torch.zeros(n, dtype=torch.long)
            self._bands[key] = (None, (first, last))
            return first, last
        if not isinstance(mask, torch.Tensor):
            raise NotAvailable(f"this model's attention mask is a {type(mask).__name__}, not a tensor")
        m = mask.reshape(-1, *mask.shape[-2:])[0, -n:].to("cpu")  # [n, K]: every head and batch row alike
        if m.dtype == torch.bool:
            allowed = m
        else:
            masked = m <= torch.finfo(m.dtype).min / 2
            if not bool(((m == 0) | masked).all()):
                raise NotAvailable("this model's attention mask adds a bias (not only hides keys)")
            allowed = ~masked
        width = allowed.shape[-1]
        last = width - 1 - allowed.flip(-1).int().argmax(-1)
        first = allowed.int().argmax(-1)
        if bool((allowed.sum(-1) != last - first + 1).any()):
            raise NotAvailable("this model's attention mask is not a band of consecutive keys")
        shift = self.offset + n - width  # absolute position of the mask's first key
        band = (first.long() + shift, last.long() + shift)
        self._bands[id(mask)] = (mask, band)
        return band

    def records(self, forwards: int) -> list[AttentionRecord | None]:
        """Each layer's record over every forward (None where it has no attention, or was not
        recorded in each of the `forwards`); what was kept is freed as it is joined."""
        out: list[AttentionRecord | None] = []
        for layer, meta in enumerate(self.meta):
            seen = len(self.q[layer])
            if meta is None or layer in self.problems or seen != forwards:
                if seen and layer not in self.problems:
                    self.problems[layer] = "its attention was not recorded in every forward"
                out.append(None)
                continue
            bias, values = self.bias[layer], self.v[layer]
            out.append(
                AttentionRecord(
                    q=self.q[layer].join(),
                    k=self.k[layer].join(),
                    scaling=meta[0],
                    softcap=meta[1],
                    sinks=meta[2],
                    key_bias=bias.join() if len(bias) == forwards else None,
                    first_key=self.first[layer].join(),
                    last_key=self.last[layer].join(),
                    v=values.join() if len(values) == forwards else None,
                )
            )
        return out


def _joined_record(
    meta: tuple[float, float | None, torch.Tensor | None],
    q: list[torch.Tensor],
    k: list[torch.Tensor],
    first: list[torch.Tensor],
    last: list[torch.Tensor],
    bias: list[torch.Tensor] | None,
) -> AttentionRecord:
    return AttentionRecord(
        q=torch.cat(q, 1),
        k=torch.cat(k, 1),
        scaling=meta[0],
        softcap=meta[1],
        sinks=meta[2],
        key_bias=None if bias is None else torch.cat(bias, 1),
        first_key=torch.cat(first),
        last_key=torch.cat(last),
    )


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
            try:
                session.from_interface(module, query, key, value, mask, kwargs)
            except Exception as exc:  # never break the model's forward: the capture says what failed
                layer = session.layer_of.get(id(module), -1)
                session.problems[layer] = f"recording its attention failed ({exc})"
        real = ALL_ATTENTION_FUNCTIONS["sdpa"]
        if base == "eager":  # the family's own eager function (sinks, soft-cap…)
            real = getattr(sys.modules[type(module).__module__], "eager_attention_forward", real)
        return real(module, query, key, value, mask, *args, **kwargs)

    return attend


for _base in ("sdpa", "eager"):
    AttentionInterface.register(f"llmvis_{_base}", _recording(_base))
    AttentionMaskInterface.register(f"llmvis_{_base}", ALL_MASK_ATTENTION_FUNCTIONS[_base])


def _configs(model: nn.Module) -> list[Any]:
    """Every config the model's modules read (a multimodal model's text config is another one)."""
    configs: dict[int, Any] = {
        id(m.config): m.config for m in model.modules() if getattr(m, "config", None) is not None
    }
    configs[id(model.config)] = model.config
    return list(configs.values())


@contextmanager
def attention_implementation(model: nn.Module, name: str, configs: list[Any] | None = None) -> Iterator[None]:
    """Run the model with another attention implementation (on every config its modules read;
    the caller holds the model lock, so no other forward runs meanwhile), then put it back."""
    configs = _configs(model) if configs is None else configs
    originals = [getattr(c, "_attn_implementation_internal", None) for c in configs]
    try:
        for c in configs:
            c._attn_implementation_internal = name
        yield
    finally:
        for c, original in zip(configs, originals, strict=True):
            c._attn_implementation_internal = original


# ----------------------------------------------------------------------------- the capture


class Recorder:
    """Keeps the capture of the forwards run inside `forward(n)`: one teacher-forced forward,
    or a generation's prefill chunks and decode steps (each forward's n new positions; the
    keys before them come from the KV cache and were kept by earlier forwards).

    Hooks stay on the model from `open()` to `close()` but keep only what a forward inside
    `forward()` computes, in the thread that runs it: between a generation's steps the model
    may run a view's forward. A hook that fails never breaks the model's forward; the capture
    then says it is unusable (`capture()` raises NotAvailable).
    """

    def __init__(self, arch: Architecture, steps: int = 0) -> None:
        """`steps`: single-position forwards to reserve room for (a generation's decode steps)."""
        self.arch = arch
        n = len(arch.layers)
        self.residual = [_Rows(0, steps) for _ in range(n + 1)]
        self.attn = [_Rows(0, steps) for _ in range(n)]
        self.mlp = [_Rows(0, steps) for _ in range(n)]
        self.session = _Session(arch, steps)
        self.positions = 0  # positions recorded so far
        self.forwards = 0
        self.failure: str | None = None
        self._thread: int | None = None  # the thread running a forward() now
        self._handles: list[Any] = []
        self._undo: list[Any] = []
        self._configs: list[Any] | None = None

    # hooks ---------------------------------------------------------------------------------

    def _mine(self) -> bool:
        return self._thread == threading.get_ident()

    def _keep(self, target: _Rows, get: Any) -> None:
        try:
            target.append(get())
        except Exception as exc:  # never break the model's forward
            self.failure = self.failure or f"a capture hook failed ({exc})"

    def open(self) -> Recorder:
        arch = self.arch
        scale = arch.contribution_scale

        def layer_in(i: int):
            def hook(_mod: nn.Module, args: Any, kwargs: Any) -> None:
                if self._mine():
                    self._keep(self.residual[i], lambda: _rows(args[0] if args else kwargs["hidden_states"]).detach())

            return hook

        def store(target: list[_Rows], i: int, factor: float = 1.0):
            def get(args: Any, output: Any) -> torch.Tensor:
                out = arch.contribution(args, output).detach()
                return out * factor if factor != 1.0 else out

            def hook(_mod: nn.Module, args: Any, _kwargs: Any, output: Any) -> None:
                if self._mine():
                    self._keep(target[i], lambda: get(args, output))

            return hook

        def last_out(_mod: nn.Module, _args: Any, output: Any) -> None:
            if self._mine():
                self._keep(self.residual[len(arch.layers)], lambda: _rows(output).detach())

        def reporter(i: int) -> Any:
            def report(*args: Any, **kwargs: Any) -> None:
                if self._mine():
                    try:
                        self.session.report(i, *args, **kwargs)
                    except Exception as exc:
                        self.session.problems[i] = f"recording its attention failed ({exc})"

            return report

        try:
            for i, layer in enumerate(arch.layers):
                self._handles.append(layer.register_forward_pre_hook(layer_in(i), with_kwargs=True))
                self._handles.append(
                    arch.attn_added(i).register_forward_hook(store(self.attn, i, arch.attn_scale), with_kwargs=True)
                )
                self._handles.append(
                    arch.mlp_added(i).register_forward_hook(store(self.mlp, i, scale), with_kwargs=True)
                )
                self._undo.append(arch.record_attention(i, reporter(i)))
            self._handles.append(arch.layers[-1].register_forward_hook(last_out))
            if all(u is None for u in self._undo):  # the AttentionInterface records attention
                self._configs = _configs(arch.model)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        for u in self._undo:
            if u is not None:
                u()
        self._handles, self._undo = [], []

    def __enter__(self) -> Recorder:
        return self.open()

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def forward(self, n: int) -> Iterator[None]:
        """Record the forward run inside, over the next `n` positions, in this thread."""
        me = threading.get_ident()
        self.session.begin(self.positions)
        self._thread = me
        try:
            if self._configs is None:
                yield
            else:
                _SESSIONS[me] = self.session
                base = (
                    "eager"
                    if getattr(self.arch.model.config, "_attn_implementation_internal", None) == "eager"
                    else "sdpa"
                )
                with attention_implementation(self.arch.model, f"llmvis_{base}", self._configs):
                    yield
        finally:
            self._thread = None
            _SESSIONS.pop(me, None)
        self.positions += n
        self.forwards += 1

    # the result ----------------------------------------------------------------------------

    def known_records(self) -> list[Callable[[], AttentionRecord] | None]:
        """Each layer's record of the positions recorded so far, all by multi-position forwards (a
        generation's prefill), made when called from the pieces held now, which later decode steps
        leave as they are (they go to another buffer); None for a layer without a whole record."""
        s, forwards = self.session, self.forwards
        out: list[Callable[[], AttentionRecord] | None] = []
        for layer, meta in enumerate(s.meta):
            q, k, first, last = (list(r.chunks) for r in (s.q[layer], s.k[layer], s.first[layer], s.last[layer]))
            bias = list(s.bias[layer].chunks)
            if meta is None or layer in s.problems or self.failure or not forwards or len(q) != forwards:
                out.append(None)
                continue
            out.append(partial(_joined_record, meta, q, k, first, last, bias if len(bias) == forwards else None))
        return out

    def capture(self) -> Capture:
        """The capture of every position recorded (NotAvailable when hooks did not fire)."""
        if self.failure:
            raise NotAvailable(self.failure)
        n, forwards = len(self.arch.layers), self.forwards
        missing = [i for i, t in enumerate(self.residual) if len(t) != forwards]
        if missing or any(len(t) != forwards for t in (*self.attn, *self.mlp)):
            raise NotAvailable(f"the capture's hooks did not fire for this architecture (layers {missing})")
        records = self.session.records(forwards)
        residual = [t.join() for t in self.residual]
        attn = [t.join() for t in self.attn]
        mlp = [t.join() for t in self.mlp]
        extra = None
        if self.arch.extra_part:  # the rest of what each layer added (Gemma 4: its per-layer input and layer scale)
            extra = [
                residual[i + 1] - residual[i] - attn[i].to(residual[i].device) - mlp[i].to(residual[i].device)
                for i in range(n)
            ]
        return Capture(residual, attn, mlp, records, self.session.problems, extra)


@torch.no_grad()
def run_capture(arch: Architecture, ids: list[int], device: torch.device) -> Capture:
    """One teacher-forced forward of the decoder over `ids`, keeping the capture."""
    with Recorder(arch) as recorder, recorder.forward(len(ids)):
        arch.decoder(input_ids=torch.tensor([ids], device=device), use_cache=False)
    return recorder.capture()
