"""Internals of one run: the residual stream captured once, attention recomputed per layer.

Keeping every layer's attention for a long run costs O(L·H·T²) memory and forces the slow
eager kernel. Instead one teacher-forced forward with the model's fast (SDPA) kernel keeps,
through forward hooks, what every view needs — O(L·T·d):

    residual(l):  [T, d]  input of decoder layer l (residual(L) = last layer's output)
    attn_out(l):  [T, d]  what layer l's attention adds to the residual stream
    mlp_out(l):   [T, d]  what layer l's MLP adds   (residual(l+1) = residual(l) + attn + mlp)
    (and the key projection, [T, kv_heads·hd], so views never redo it; q/k/v may be one fused
    projection, as in Phi-3, whose key part is kept)

Attention of one layer is then recomputed from residual(l) with the layer's *own* modules
(input norm, q/k projections, q/k norms, rotary embedding and `apply_rotary_pos_emb` from the
model's module, GQA sharing, scaling, causal + sliding-window mask, soft-capping), with the
softmax in fp32: milliseconds, exact against eager `output_attentions`. The decoder layer
itself is never re-implemented: captures come from hooks on the real forward.

Captures live in a bytes-bounded LRU (capture_cache.py) keyed by the run. Tensors stay on the
device of the layer that produced them (models split over devices work); results of the
public methods are on that device too, callers move them with `.cpu()`.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from llmvis.capture_cache import CaptureCache
from llmvis.models.loaded import LoadedModel, text_config

# ----------------------------------------------------------------------------- capture


@dataclass
class Capture:
    """One run's residual stream: lists of [T, d] tensors (see module docstring)."""

    residual: list[torch.Tensor]  # L + 1
    attn: list[torch.Tensor]  # L
    mlp: list[torch.Tensor]  # L
    keys: list[torch.Tensor]  # L: k_proj outputs [T, kv_heads * hd], saves recomputing them per view
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        tensors = (*self.residual, *self.attn, *self.mlp, *self.keys)
        self.nbytes = sum(t.numel() * t.element_size() for t in tensors)


# ----------------------------------------------------------------------------- helpers


def _first(x: Any) -> torch.Tensor:
    """The hidden-states tensor of a module output (tensor or tuple whose first item it is)."""
    return x[0] if isinstance(x, tuple | list) else x


def _device_of(module: torch.nn.Module, default: torch.device) -> torch.device:
    """Where `module` computes: its accelerate execution device (offloaded weights sit on
    'meta' between calls), else the device of its first parameter/buffer."""
    for m in (module, *module.children()):
        hook_device = getattr(getattr(m, "_hf_hook", None), "execution_device", None)
        if hook_device is not None:
            return torch.device(hook_device)
    for t in (*module.parameters(), *module.buffers()):
        if t.device.type != "meta":
            return t.device
    return default


def _dtype_of(module: torch.nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype a module's weights compute in (known even for offloaded 'meta' weights)."""
    for p in module.parameters():
        return p.dtype
    return default


_SOFTCAP_PASSED: dict[type, bool] = {}


def _query_projection(attn: Any, x: torch.Tensor) -> torch.Tensor:
    """q_proj(x), or the query part of a fused projection (Phi-3's qkv_proj: q, then k, then v)."""
    if hasattr(attn, "q_proj"):
        return attn.q_proj(x)
    return attn.qkv_proj(x)[..., : _query_width(attn)]


def _key_projection(attn: Any) -> tuple[torch.nn.Module, slice]:
    """The module whose output holds the keys, and where they sit in its last dimension."""
    if hasattr(attn, "k_proj"):
        return attn.k_proj, slice(None)
    if hasattr(attn, "qkv_proj"):
        start = _query_width(attn)
        return attn.qkv_proj, slice(start, start + int(attn.num_key_value_heads) * int(attn.head_dim))
    raise NotImplementedError(f"{type(attn).__name__} has neither k_proj nor a fused qkv_proj")


def _query_width(attn: Any) -> int:
    return int(attn.config.num_attention_heads) * int(attn.head_dim)


def _passes_softcap(attn: torch.nn.Module) -> bool:
    """Whether this attention class hands its soft-cap to the attention kernel.

    Some classes keep `attn_logit_softcapping` without using it (Gemma3 in transformers 5),
    others pass `softcap=` (Gemma2). We follow what the model's forward actually does.
    """
    cls = type(attn)
    if cls not in _SOFTCAP_PASSED:
        try:
            source = inspect.getsource(cls.forward)
        except (OSError, TypeError):
            source = "softcap="
        _SOFTCAP_PASSED[cls] = "softcap=" in source
    return _SOFTCAP_PASSED[cls]


def decoder(model: Any) -> Any:
    """The decoder stack of a *ForCausalLM (the module that holds `layers`)."""
    return getattr(model, model.base_model_prefix, None) or model.get_decoder()


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The decoder layers, in order."""
    return list(decoder(model).layers)


def default_key(loaded: LoadedModel, ids: list[int]) -> str:
    h = hashlib.sha1()
    h.update(f"{loaded.info.name}|{loaded.info.path}|{loaded.info.dtype}|".encode())
    h.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- internals


class Internals:
    """Lazy access to one run's internals (see module docstring). Cheap to construct."""

    def __init__(
        self,
        loaded: LoadedModel,
        ids: list[int],
        cache: CaptureCache | None = None,
        key: str | None = None,
    ):
        if not ids:
            raise ValueError("Internals needs at least one token")
        self.loaded = loaded
        self.ids = [int(i) for i in ids]
        self.cache = cache if cache is not None else CaptureCache()
        self.key = key or default_key(loaded, self.ids)
        model = loaded.model
        self.model = model
        self.config = text_config(model.config)
        # transformers modules, typed Any: their attributes differ per architecture.
        self.base: Any = decoder(model)
        self.layers: Any = self.base.layers
        self.final_norm: Any = self.base.norm
        self.lm_head: Any = model.get_output_embeddings()

    # ------------------------------------------------------------------ sizes

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_positions(self) -> int:
        return len(self.ids)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    # ------------------------------------------------------------------ capture

    def capture(self) -> Capture:
        """Run the teacher-forced forward now (or return the cached capture)."""
        entry = self.cache.get(self.key)
        if entry is not None:
            return entry
        with self.cache.capture_lock:
            if self.key in self.cache:  # captured by another thread meanwhile
                entry = self.cache.get(self.key)
                if entry is not None:
                    return entry
            entry = self._run_capture()
            self.cache.put(self.key, entry, entry.nbytes)
            return entry

    def _sandwich(self, layer: torch.nn.Module) -> bool:
        """Gemma2/3-style layers normalise each block's output before adding it to the residual."""
        return hasattr(layer, "post_feedforward_layernorm")

    @torch.no_grad()
    def _run_capture(self) -> Capture:
        n = self.n_layers
        residual: list[Any] = [None] * (n + 1)
        attn: list[Any] = [None] * n
        mlp: list[Any] = [None] * n
        keys: list[Any] = [None] * n
        me = threading.get_ident()  # the model may be shared: ignore other threads' forwards

        def layer_in(i: int):
            def hook(_mod, args, kwargs):
                if threading.get_ident() == me:
                    h = args[0] if args else kwargs["hidden_states"]
                    residual[i] = h[0].detach()

            return hook

        def store(target: list[Any], i: int, part: slice = slice(None)):
            def hook(_mod, _args, output):
                if threading.get_ident() == me:
                    target[i] = _first(output)[0, :, part].detach()

            return hook

        handles = []
        try:
            for i, layer in enumerate(self.layers):
                handles.append(layer.register_forward_pre_hook(layer_in(i), with_kwargs=True))
                sandwich = self._sandwich(layer)
                attn_mod = layer.post_attention_layernorm if sandwich else layer.self_attn
                mlp_mod = layer.post_feedforward_layernorm if sandwich else layer.mlp
                handles.append(attn_mod.register_forward_hook(store(attn, i)))
                handles.append(mlp_mod.register_forward_hook(store(mlp, i)))
                key_module, key_slice = _key_projection(layer.self_attn)
                handles.append(key_module.register_forward_hook(store(keys, i, key_slice)))
            handles.append(self.layers[-1].register_forward_hook(store(residual, n)))
            x = torch.tensor([self.ids], device=self.loaded.device)
            self.base(input_ids=x, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        missing = [i for i, t in enumerate(residual) if t is None]
        if missing or any(t is None for t in (*attn, *mlp, *keys)):
            raise RuntimeError(f"capture hooks did not fire for this architecture (layers {missing})")
        return Capture(residual, attn, mlp, keys)

    # ------------------------------------------------------------------ residual stream

    def _check_layer(self, layer: int, top: int) -> int:
        if not 0 <= layer <= top:
            raise IndexError(f"layer {layer} out of range 0..{top}")
        return layer

    def residual(self, layer: int) -> torch.Tensor:
        """[T, d] input of decoder layer `layer`; `residual(L)` is the last layer's output."""
        return self.capture().residual[self._check_layer(layer, self.n_layers)]

    def attn_out(self, layer: int) -> torch.Tensor:
        """[T, d] attention block's contribution added to the residual stream by `layer`."""
        return self.capture().attn[self._check_layer(layer, self.n_layers - 1)]

    def mlp_out(self, layer: int) -> torch.Tensor:
        """[T, d] MLP block's contribution added to the residual stream by `layer`."""
        return self.capture().mlp[self._check_layer(layer, self.n_layers - 1)]

    # ------------------------------------------------------------------ attention

    def window(self, layer: int) -> int | None:
        """Sliding window of `layer` (None = full causal), as the model's own mask uses it."""
        attn = self.layers[layer].self_attn
        if hasattr(attn, "sliding_window"):  # per-layer value (Qwen2/3, Gemma3)
            return attn.sliding_window
        types = getattr(self.config, "layer_types", None)
        window = getattr(self.config, "sliding_window", None)
        if types is not None:
            return window if types[layer] == "sliding_attention" else None
        return window  # Mistral: one window for every layer

    def _rope(self, layer: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin): [1, T, head_dim] for every position, from the model's rotary embedding.

        Per layer type where the model has several (Gemma3: local and global rope). Cached.
        """
        attn = self.layers[layer].self_attn
        types = getattr(self.config, "layer_types", None)
        layer_type = types[layer] if types is not None else None
        rotary = getattr(attn, "rotary_emb", None)
        if rotary is None:
            local = getattr(self.base, "rotary_emb_local", None)
            rotary = local if (local is not None and layer_type == "sliding_attention") else self.base.rotary_emb
        typed = layer_type is not None and "layer_type" in inspect.signature(rotary.forward).parameters
        cache_key = (self.key, "rope", id(rotary), layer_type if typed else None, str(like.device))
        hit = self.cache.peek(cache_key)
        if hit is not None:
            return hit
        dev = _device_of(rotary, like.device)
        pos = torch.arange(self.n_positions, device=dev)[None]
        x = like.to(dev)
        cos, sin = rotary(x, pos, layer_type) if typed else rotary(x, pos)
        out = (cos.to(like.device), sin.to(like.device))
        self.cache.put_if_room(cache_key, out, 2 * cos.numel() * cos.element_size())
        return out

    def _project(self, layer: int, y: torch.Tensor, norm: str, rows: torch.Tensor) -> torch.Tensor:
        """Rotated queries or keys from projections `y: [n, heads*hd]` at positions `rows`: [heads, n, hd]."""
        attn = self.layers[layer].self_attn
        hd = int(attn.head_dim)
        y = y[None]  # [1, n, heads*hd]
        qk_norm: Any = getattr(attn, norm, None)  # Qwen3/Gemma3 q_norm, k_norm
        per_head = qk_norm is not None and qk_norm.weight.numel() == hd
        if qk_norm is not None and not per_head:  # OLMo-style norm over all heads at once
            y = qk_norm(y)
        y = y.view(1, y.shape[1], -1, hd)
        if qk_norm is not None and per_head:
            y = qk_norm(y)
        y = y.transpose(1, 2)  # [1, heads, n, hd]
        cos, sin = self._rope(layer, y)
        idx = rows.to(cos.device)
        apply_rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        y, _ = apply_rope(y, y, cos[:, idx], sin[:, idx])
        return y[0]

    def _keys(self, layer: int) -> torch.Tensor:
        """Rotated keys of every position: [kv_heads, T, hd] (model dtype). Cached when small."""
        cache_key = (self.key, "keys", layer)
        hit = self.cache.peek(cache_key)
        if hit is not None:
            return hit
        # the key projection of input_layernorm(residual) as the forward computed it (captured).
        raw = self.capture().keys[self._check_layer(layer, self.n_layers - 1)]
        k = self._project(layer, raw, "k_norm", torch.arange(self.n_positions))
        nbytes = k.numel() * k.element_size()
        if nbytes <= self.cache.max_bytes // 64:
            self.cache.put_if_room(cache_key, k, nbytes)
        return k

    def _qk(self, layer: int, queries: torch.Tensor, keys_end: int):
        """Rotated q: [H, len(queries), hd] and k: [kv_heads, keys_end, hd], both fp32."""
        mod = self.layers[layer]
        dev = _device_of(mod.input_layernorm, self.loaded.device)
        x = mod.input_layernorm(self.residual(layer)[queries.to(self.residual(layer).device)].to(dev))
        q = self._project(layer, _query_projection(mod.self_attn, x), "q_norm", queries)
        k = self._keys(layer)[:, :keys_end].to(q.device)
        return q.float(), k.float()

    def _weights(self, layer: int, q: torch.Tensor, k: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """softmax(q·kᵀ·scaling, soft-capped, causal/window-masked) in fp32: [H, n, K].

        GQA: head h reads kv head h // (H / kv_heads), done by broadcasting, not copying k.
        """
        attn = self.layers[layer].self_attn
        heads, n, hd = q.shape
        kv = k.shape[0]
        grouped = q.reshape(kv, heads // kv, n, hd)  # [kv, groups, n, hd]
        scores = torch.matmul(grouped, k[:, None].transpose(-1, -2)).reshape(heads, n, -1)
        scores = scores * float(attn.scaling)
        cap = getattr(attn, "attn_logit_softcapping", None)
        if cap is not None and _passes_softcap(attn):
            scores = torch.tanh(scores / cap) * cap
        key_pos = torch.arange(k.shape[-2], device=scores.device)
        qpos = queries.to(scores.device)[:, None]
        allowed = key_pos[None, :] <= qpos
        window = self.window(layer)
        if window is not None:
            allowed &= key_pos[None, :] > qpos - int(window)
        scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores, dim=-1)

    @torch.no_grad()
    def attention(self, layer: int, queries: slice | Sequence[int] | None = None) -> torch.Tensor:
        """attention: [heads, query, key] of `layer` for query rows `queries` (default all), keys 0..T-1.

        Full matrices of runs small enough (≤ 1/8 of the cache) are cached, so a second view
        of the same layer is cheap. Long runs: ask for row slices and pool as you go.
        """
        self._check_layer(layer, self.n_layers - 1)
        t = self.n_positions
        if queries is None:
            rows: Sequence[int] = range(t)
        elif isinstance(queries, slice):
            rows = range(t)[queries]
        else:
            rows = [int(q) for q in queries]
            if any(not 0 <= q < t for q in rows):
                raise IndexError(f"query positions must be in 0..{t - 1}")
        full = isinstance(rows, range) and rows == range(t)
        cache_key = (self.key, "attention", layer)
        if full:
            hit = self.cache.get(cache_key)
            if hit is not None:
                return hit
        else:
            hit = self.cache.peek(cache_key)
            if hit is not None:
                return hit[:, list(rows)]
        q_idx = torch.tensor(list(rows), dtype=torch.long)
        keys_end = t if len(rows) == 0 else max(rows) + 1
        q, k = self._qk(layer, q_idx, keys_end)
        w = self._weights(layer, q, k, q_idx)
        if keys_end < t:
            w = torch.nn.functional.pad(w, (0, t - keys_end))
        if full:
            nbytes = w.numel() * w.element_size()
            if nbytes <= self.cache.max_bytes // 8:
                self.cache.put(cache_key, w, nbytes)
        return w

    @torch.no_grad()
    def attention_row(self, position: int) -> torch.Tensor:
        """attention_row: [layers, heads, key] — how `position` attends, every layer and head.

        Keys after `position` are zero. Costs O(L·T·d): no T×T matrix is built. On CPU.
        """
        if not 0 <= position < self.n_positions:
            raise IndexError(f"position {position} out of range 0..{self.n_positions - 1}")
        q_idx = torch.tensor([position])
        out = torch.zeros(self.n_layers, self.n_heads, self.n_positions)
        for layer in range(self.n_layers):
            q, k = self._qk(layer, q_idx, position + 1)
            out[layer, :, : position + 1] = self._weights(layer, q, k, q_idx)[:, 0].cpu()
        return out

    # ------------------------------------------------------------------ MLP and unembedding

    @torch.no_grad()
    def mlp_input(self, layer: int) -> torch.Tensor:
        """[T, d] what layer's MLP reads: its pre-MLP norm of the residual after attention."""
        mod = self.layers[layer]
        norm = getattr(mod, "pre_feedforward_layernorm", None) if self._sandwich(mod) else None
        norm = norm if norm is not None else mod.post_attention_layernorm
        dev = _device_of(norm, self.loaded.device)
        mid = self.residual(layer).to(dev) + self.attn_out(layer).to(dev)
        return norm(mid)

    @torch.no_grad()
    def mlp_activations(self, layer: int) -> torch.Tensor:
        """[T, intermediate] act_fn(gate_proj(x)) * up_proj(x): the input of down_proj.

        Phi-3 style MLPs fuse the two projections (gate_up_proj, gate first) and name the
        activation activation_fn; the product is the same."""
        self._check_layer(layer, self.n_layers - 1)
        mlp = self.layers[layer].mlp
        act = getattr(mlp, "act_fn", None) or getattr(mlp, "activation_fn", None)
        fused = getattr(mlp, "gate_up_proj", None)
        if act is None or not (fused is not None or all(hasattr(mlp, n) for n in ("gate_proj", "up_proj"))):
            raise NotImplementedError(f"{type(mlp).__name__} is not a gated MLP (gate_proj/up_proj/act_fn)")
        x = self.mlp_input(layer).to(_device_of(mlp, self.loaded.device))
        if fused is not None:
            gate, up = fused(x).chunk(2, dim=-1)
            return act(gate) * up
        return act(mlp.gate_proj(x)) * mlp.up_proj(x)

    @torch.no_grad()
    def normed(self, hidden: torch.Tensor) -> torch.Tensor:
        """final norm of `hidden: [..., d]` (on the norm's device)."""
        norm = self.final_norm
        return norm(hidden.to(_device_of(norm, hidden.device), _dtype_of(norm, hidden.dtype)))

    @torch.no_grad()
    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """lm_head(x: [..., d]) -> [..., V] fp32: no norm, no soft-capping (for linear read-outs)."""
        head = self.lm_head
        return head(x.to(_device_of(head, x.device), _dtype_of(head, x.dtype))).float()

    @torch.no_grad()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """logits: [..., V] = lm_head(final_norm(hidden: [..., d])), soft-capped where configured."""
        out = self.unembed(self.normed(hidden))
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:
            out = torch.tanh(out / cap) * cap
        return out
