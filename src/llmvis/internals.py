"""Internals of one run: the capture (capture.py) taken once, attention recomputed per layer.

Keeping every layer's attention for a long run costs O(L·H·T²) memory and forces the slow eager
kernel. Instead one teacher-forced forward with the model's own (SDPA) kernel keeps what every
view needs, O(L·T·d): the residual stream, what each block adds, and each layer's rotated
queries and keys. A layer's attention weights are then eager attention's math over those, in
fp32: milliseconds, equal to eager `output_attentions`. Where a family keeps its parts is the
architecture seam's business (arch/); nothing here names a family's modules.

Captures live in a bytes-bounded LRU (capture_cache.py) keyed by the run. Tensors stay on the
device of the layer that produced them (models split over devices work); results of the public
methods are on that device too, callers move them with `.cpu()`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llmvis.arch import Architecture, NotAvailable, Routing, device_of, dtype_of
from llmvis.capture import AttentionRecord, Capture, run_capture
from llmvis.capture_cache import CaptureCache
from llmvis.kept_attention import SpillFile, Staircase, disk_has_room
from llmvis.models.loaded import LoadedModel

NO_ATTENTION = "its token mixer is not softmax attention"
GROUP = 16  # token_contributions, token_proximities: queries per batched product
MEAN_ROWS = 128  # head-mean attention: query rows per piece (see keep_mean_attention)
KEY_CHUNK = 64  # token_proximities: keys whose value outputs are made at once
MIX_KEYS = 16  # token_proximities: keys per batched mix, into one buffer (0.6 MB at d = 576: stays in L2)
ALL = slice(None)


def default_key(loaded: LoadedModel, ids: list[int]) -> str:
    h = hashlib.sha1()
    h.update(f"{loaded.info.name}|{loaded.info.path}|{loaded.info.dtype}|".encode())
    h.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
    return h.hexdigest()


@dataclass
class NormLinearisation:
    """The final norm y = g ⊙ (x − μ(x)) / s + b made linear by freezing s at the final residual's
    value: each part c of the residual maps to g ⊙ (c − μ(c)) / s, and those sum to y − b.
    μ is the mean for a LayerNorm, 0 for an RMSNorm. Measured on the model's own norm module
    (no class or parametrisation assumed: Gemma's 1 + w, OLMo's weightless LayerNorm…)."""

    gain: torch.Tensor  # [d] g
    bias: torch.Tensor  # [d] b
    centred: bool  # a LayerNorm (μ = mean) rather than an RMSNorm
    scale: float  # s at the final residual

    @property
    def kind(self) -> str:
        return "LayerNorm" if self.centred else "RMSNorm"

    def apply(self, parts: torch.Tensor) -> torch.Tensor:
        """[n, d] the linear image of each part (without the bias b)."""
        parts = parts.float()
        if self.centred:
            parts = parts - parts.mean(-1, keepdim=True)
        return parts * self.gain / self.scale

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        """[d] the vector w with w · c = u · apply(c) for every part c (a read-out moved in front
        of the norm: one dot product per part instead of one norm per part)."""
        w = u.float() * self.gain / self.scale
        return w - w.mean() if self.centred else w


def _on(module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """`module` as a function of fp32 CPU rows: moved to its device and dtype."""
    return lambda t: module(t.to(device_of(module, t.device), dtype_of(module, t.dtype)))


@torch.no_grad()
def linearise(norm: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> NormLinearisation:
    """The norm `norm` (a callable on [n, d] rows, the model's own module) linearised at `x: [d]`
    (see NormLinearisation): g and b measured with probes, whether it centres, and s at x."""
    d = x.shape[-1]
    if d % 2:
        raise NotAvailable("a norm's linearisation needs an even hidden size")
    probe = torch.ones(d)
    probe[1::2] = -1.0  # mean 0, mean square 1: norm(probe) = g ⊙ probe / s(probe) + b
    big = 1000.0  # s(big · probe) = big to within eps / big²
    point = x.float().cpu()
    out = norm(torch.stack([torch.zeros(d), big * probe, big * probe + 3.0 * big, point])).float().cpu()
    bias = out[0]
    gain = (out[1] - bias) * probe
    centred = bool(torch.allclose(out[2], out[1], atol=1e-4 * float(out[1].abs().max()) + 1e-6))
    u = gain * (point - point.mean() if centred else point)
    y = out[3] - bias
    scale = float((u * u).sum() / (u * y).sum()) if float((u * y).sum()) else 1.0
    return NormLinearisation(gain=gain, bias=bias, centred=centred, scale=scale)


def mean_attention_block(record: AttentionRecord, a: int, b: int) -> torch.Tensor:
    """Rows a..b-1 of a layer's head-mean attention Ā over keys 0..b-1 (fp32, on CPU): one block
    of a Staircase. A causal row depends on nothing after it, so a run's prefix gives its rows."""
    return Internals._weights(record, torch.arange(a, b), b).mean(0).cpu()


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
        self.arch: Architecture = loaded.arch
        self.model = loaded.model
        self.layers: Any = self.arch.layers
        self.final_norm: Any = self.arch.final_norm
        self.lm_head: Any = self.arch.lm_head

    # ------------------------------------------------------------------ sizes

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_positions(self) -> int:
        return len(self.ids)

    @property
    def n_heads(self) -> int:
        return self.arch.n_heads

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

    def _run_capture(self) -> Capture:
        return run_capture(self.arch, self.ids, self.loaded.device)

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

    def extra_out(self, layer: int) -> torch.Tensor | None:
        """[T, d] what `layer` adds beyond attention and MLP (`arch.extra_part` names it), or None."""
        extra = self.capture().extra
        return None if extra is None else extra[self._check_layer(layer, self.n_layers - 1)]

    # ------------------------------------------------------------------ attention

    def record(self, layer: int) -> AttentionRecord:
        """What `layer`'s attention computed with (NotAvailable for a layer without attention)."""
        capture = self.capture()
        record = capture.attention[self._check_layer(layer, self.n_layers - 1)]
        if record is None:
            why = capture.unrecorded.get(layer, NO_ATTENTION)
            raise NotAvailable(f"layer {layer} has no softmax attention llmvis can show ({why})")
        return record

    def attention_layers(self, required: bool = False) -> list[int]:
        """The layers whose attention views can show (all of them, except a hybrid's other mixers);
        `required`: NotAvailable, with the reason, when there is none."""
        layers = [i for i, r in enumerate(self.capture().attention) if r is not None]
        if required and not layers:
            self.record(0)  # raises, saying why layer 0 has no attention
        return layers

    def missing_attention(self) -> dict[int, str]:
        """Layer → why it has no attention to show (empty for an attention-only model)."""
        capture = self.capture()
        return {i: capture.unrecorded.get(i, NO_ATTENTION) for i, r in enumerate(capture.attention) if r is None}

    def visible_keys(self, layer: int, positions: Sequence[int]) -> torch.Tensor:
        """[len(positions)] how many keys each query can see in `layer` (causal, windows, chunks)."""
        record = self.record(layer)
        idx = torch.tensor(list(positions), dtype=torch.long)
        return record.last_key[idx] - record.first_key[idx] + 1

    @staticmethod
    def _weights(record: AttentionRecord, queries: torch.Tensor, keys_end: int) -> torch.Tensor:
        """softmax(soft-cap(q·kᵀ·scaling), masked to each query's band) in fp32: [H, n, keys_end].

        GQA: head h reads kv head h // (H / kv_heads): a group's query rows are stacked into one
        product per kv head ([kv, groups·n, hd] · kᵀ), so k is neither copied nor broadcast (a
        broadcast product copies k for every block of rows). The scaling goes on q ([H, n, hd]),
        not on the scores ([H, n, keys]: the big tensor here). Both: a layer's head-mean
        attention at T = 8,000 in 0.50 s instead of 0.57 on two cores."""
        q = record.q[:, queries.to(record.q.device)].float() * record.scaling
        k = record.k[:, :keys_end].float().to(q.device)
        heads, n, hd = q.shape
        kv = k.shape[0]
        scores = torch.bmm(q.reshape(kv, heads // kv * n, hd), k.transpose(-1, -2)).reshape(heads, n, -1)
        if record.softcap is not None:
            scores = torch.tanh(scores / record.softcap) * record.softcap
        if record.key_bias is not None:  # ALiBi: a bias per head and key position
            scores.add_(record.key_bias[:, None, :keys_end].to(scores.device))
        first = record.first_key[queries].to(scores.device)[:, None]
        last = record.last_key[queries].to(scores.device)[:, None]
        # only the columns some query cannot see are masked (a causal chunk: its last rows' triangle),
        # not the whole [H, n, keys] block, which would cost as much as the softmax
        if len(queries):
            lo, hi = int(first.max()), int(last.min()) + 1
            if hi < keys_end:
                right = torch.arange(hi, keys_end, device=scores.device)[None, :]
                scores[..., hi:].masked_fill_(right > last, float("-inf"))
            if lo > 0:
                left = torch.arange(0, min(lo, keys_end), device=scores.device)[None, :]
                scores[..., : left.shape[-1]].masked_fill_(left < first, float("-inf"))
        if record.sinks is None:
            return torch.softmax(scores, dim=-1)
        sinks = record.sinks.to(scores.device)[:, None, None].expand(heads, n, 1)
        return torch.softmax(torch.cat([scores, sinks], dim=-1), dim=-1)[..., :-1]

    @torch.no_grad()
    def attention(self, layer: int, queries: slice | Sequence[int] | None = None, pad: bool = True) -> torch.Tensor:
        """attention: [heads, query, key] of `layer` for query rows `queries` (default all), keys 0..T-1
        (`pad=False`: keys up to the last query only, which the later keys' zeros would only copy).

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
                return hit[:, list(rows)] if pad or not rows else hit[:, list(rows), : max(rows) + 1]
        q_idx = torch.tensor(list(rows), dtype=torch.long)
        keys_end = t if len(rows) == 0 else max(rows) + 1
        w = self._weights(self.record(layer), q_idx, keys_end)
        if keys_end < t and pad:
            w = torch.nn.functional.pad(w, (0, t - keys_end))
        if full:
            nbytes = w.numel() * w.element_size()
            if nbytes <= self.cache.max_bytes // 8:
                self.cache.put(cache_key, w, nbytes)
        return w

    @torch.no_grad()
    def mean_attention(self, layer: int, rows: Sequence[int]) -> torch.Tensor:
        """[len(rows), max(rows) + 1] head-averaged attention of query `rows` over the keys up to
        the last of them (later keys get nothing: causal). fp32; from the layer's kept Ā when
        `keep_mean_attention` kept it (consecutive rows of one of its blocks: a view)."""
        rows = [int(q) for q in rows]
        if not rows or any(not 0 <= q < self.n_positions for q in rows):
            raise IndexError(f"query positions must be in 0..{self.n_positions - 1}")
        end = max(rows) + 1
        kept = self.cache.peek((self.key, "mean_attention", layer))
        if kept is not None:
            return kept.rows_of(rows, end)
        hit = self.cache.peek((self.key, "attention", layer))
        if hit is not None:
            return hit[:, rows, :end].mean(0)
        record, out = self.record(layer), torch.zeros(len(rows), end)
        for a in range(0, len(rows), MEAN_ROWS):  # pieces that stay in cache (keep_mean_attention)
            piece = rows[a : a + MEAN_ROWS]
            stop = max(piece) + 1
            out[a : a + len(piece), :stop] = self._weights(record, torch.tensor(piece), stop).mean(0).cpu()
        return out

    def keep(self, key: Any, value: Any, nbytes: int, expendable: bool = False) -> bool:
        """Keep something derived from this run beside its capture: older runs' entries are
        evicted for it if need be (least recently used first), and this run's expendable ones
        (cheap to recompute), never the rest of this run's; whether kept. The run being looked
        at comes first: an older run's summaries must not crowd it out."""
        return self.cache.put_for(self.key, key, value, nbytes, expendable)

    @torch.no_grad()
    def keep_mean_attention(self, layer: int, chunk: int = MEAN_ROWS, pause: Callable[[], None] | None = None) -> bool:
        """Compute and keep the layer's head-mean attention Ā (fp32, on CPU: H times smaller
        than its heads'; its causal lower part only, in blocks of `chunk` rows: kept_attention.py)
        while it fits the cache beside this run's own entries (older runs' entries are evicted
        for it, never this run's), else on disk within the cache's spill budget; whether kept.
        `pause()` runs after each block (a waiting request gets the model in tens of ms, not
        after a whole layer: about a second at T = 4,096 on one core). 128 rows: the block stays
        in cache through the product, the mask and the softmax (1.4 s for the bundled model's
        30 layers at T = 1,664 on one core; 1.9 s in blocks of 256)."""
        key, t = (self.key, "mean_attention", layer), self.n_positions
        if key in self.cache:
            return True
        record = self.record(layer)  # (the capture first: the room left is beside it)
        kept = self.cache.started(key)  # a summary ahead left it part-way: go on from there
        if kept is None:
            nbytes = Staircase.nbytes(t, chunk)
            in_memory = self.cache.could_hold(self.key, nbytes)  # beside this run's own entries
            if not in_memory and not (self.cache.may_spill(self.key, nbytes) and disk_has_room(nbytes)):
                return False
            try:
                kept = Staircase(t, chunk, None if in_memory else SpillFile())
            except OSError:
                return False
        try:
            while not kept.complete:
                a, b = kept.next_rows()
                kept.append(mean_attention_block(record, a, b))
                # (a view let in may go on with it and keep it: then it is done)
                if pause is not None and not kept.complete and self.cache.paused_part_way(key, kept, pause) is not None:
                    return True
        except OSError:  # the spill's disk failed or filled meanwhile: rollouts compute Ā again
            self.cache.finish(key)
            return False
        self.cache.finish(key)
        nbytes = Staircase.nbytes(t, kept.rows)
        if kept.spill is None:
            return self.keep(key, kept, nbytes)
        self.cache.put_spilled(key, kept, nbytes)
        return True

    @torch.no_grad()
    def attention_row(self, position: int) -> torch.Tensor:
        """attention_row: [layers, heads, key] — how `position` attends, every layer and head.

        Keys after `position` are zero; a layer without attention (a hybrid's) is NaN.
        Costs O(L·T·d): no T×T matrix is built. On CPU.
        """
        if not 0 <= position < self.n_positions:
            raise IndexError(f"position {position} out of range 0..{self.n_positions - 1}")
        layers = self.attention_layers(required=True)
        q_idx = torch.tensor([position])
        out = torch.full((self.n_layers, self.n_heads, self.n_positions), float("nan"))
        out[layers] = 0.0
        for layer in layers:
            out[layer, :, : position + 1] = self._weights(self.record(layer), q_idx, position + 1)[:, 0].cpu()
        return out

    # ------------------------------------------------------------------ MLP and unembedding

    @torch.no_grad()
    def mlp_input(self, layer: int, rows: slice = ALL) -> torch.Tensor:
        """[T, d] what layer's MLP reads (its norm of the residual after attention, or in a
        parallel block of the layer's input), at positions `rows` (default all)."""
        residual = self.residual(layer)[rows]
        attn = self.attn_out(layer)[rows].to(residual.device)
        extra = self.extra_out(layer)
        if extra is not None and self.arch.extra_before_mlp:  # Falcon-H1's Mamba mixer, beside attention
            attn = attn + extra[rows]
        return self.arch.mlp_input(layer, residual, attn)

    @torch.no_grad()
    def mlp_activations(self, layer: int, rows: slice = ALL) -> torch.Tensor:
        """[T, intermediate] the MLP's neuron activations: the input of its output projection, as
        the layer's own MLP computes it (act(gate) * up for gated MLPs, act(fc1) for plain ones),
        at positions `rows` (default all; the MLP runs on those only)."""
        self._check_layer(layer, self.n_layers - 1)
        site = self.arch.mlp_out_projection(layer)
        x = self.mlp_input(layer, rows)  # (before the hook: a first call captures the run, every row)
        seen: list[torch.Tensor] = []
        handle = site.register_forward_pre_hook(
            lambda _m, args: seen.append(args[0][0] if args[0].dim() == 3 else args[0])
        )
        try:
            self.arch.run_mlp(layer, x.to(device_of(self.arch.mlp(layer), x.device))[None])
        finally:
            handle.remove()
        return seen[0]

    # ------------------------------------------------------------------ mixtures of experts

    @torch.no_grad()
    def routing(self, layer: int) -> Routing:
        """What `layer`'s router decided for every token: its own router on what the MLP read
        (NotAvailable where the layer's MLP is not a mixture). Cached with the run."""
        self._check_layer(layer, self.n_layers - 1)
        self.arch.router(layer)  # NotAvailable before any work
        cache_key = (self.key, "routing", layer)
        hit = self.cache.get(cache_key)
        if hit is not None:
            return hit
        x = self.mlp_input(layer)
        r = self.arch.route(layer, x.to(device_of(self.arch.mlp(layer), x.device)))
        routing = Routing(r.probs.cpu(), r.chosen.cpu(), r.weights.cpu())
        self.keep(cache_key, routing, sum(t.numel() * t.element_size() for t in vars(routing).values()))
        return routing

    @torch.no_grad()
    def expert_parts(self, layer: int, position: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What each chosen expert ([k, d], in routing order) and the shared expert ([d] or None)
        added to the residual at `position` in `layer`: they sum to the MLP's output there."""
        routing = self.routing(layer)
        x = self.mlp_input(layer, slice(position, position + 1))
        x = x.to(device_of(self.arch.mlp(layer), x.device))
        parts = [
            self.arch.expert_part(layer, x, int(e), routing.weights[position, i : i + 1])[0]
            for i, e in enumerate(routing.chosen[position])
        ]
        shared = self.arch.shared_part(layer, x)
        scale = self.arch.contribution_scale
        return torch.stack(parts) * scale, None if shared is None else shared[0] * scale

    @torch.no_grad()
    def normed(self, hidden: torch.Tensor) -> torch.Tensor:
        """final norm of `hidden: [..., d]` (on the norm's device)."""
        norm = self.final_norm
        return norm(hidden.to(device_of(norm, hidden.device), dtype_of(norm, hidden.dtype)))

    @torch.no_grad()
    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The logits' affine read-out of `x: [..., d]` -> [..., V] fp32: lm_head and the model's
        logit multiplier, no norm, no soft-capping (for linear read-outs)."""
        return self._readout(x)

    def _readout(self, x: torch.Tensor) -> torch.Tensor:
        """unembed, differentiable."""
        head = self.lm_head
        out = head(x.to(device_of(head, x.device), dtype_of(head, x.dtype))).float()
        multiplier = self.arch.logit_multiplier
        return out * multiplier if multiplier != 1.0 else out

    @torch.no_grad()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """logits: [..., V] of residual states `hidden: [..., d]`: final norm, read-out, soft-cap."""
        out = self.unembed(self.normed(hidden))
        cap = self.arch.final_softcap
        return torch.tanh(out / cap) * cap if cap else out

    @torch.no_grad()
    def norm_linearisation(self, final: torch.Tensor) -> NormLinearisation:
        """The final norm linearised at the final residual `final: [d]` (see NormLinearisation)."""
        return linearise(self.normed, final)

    def readout_row(self, token_id: int, foil: int | None = None) -> torch.Tensor:
        """[d] the read-out's row of `token_id` (less `foil`'s), times the logit multiplier."""
        return self.readout_affine(token_id, foil)[0]

    def readout_affine(self, token_id: int, foil: int | None = None) -> tuple[torch.Tensor, float]:
        """(row, base): the read-out of `token_id`'s logit (less `foil`'s) as row · x + base, so
        row is its gradient and base its value at x = 0 (the head's bias), both from one pass
        through the model's own lm_head and back (offloaded or tied weights alike). Kept with the
        run: a token's views (heads, neurons, the residual stream) each ask for it, and a pass
        reads the whole [V, d] head twice."""
        key = (self.key, "readout", token_id, foil)
        hit = self.cache.peek(key)
        if hit is not None:
            return hit
        d = int(self.residual(0).shape[-1])
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.zeros(1, d, requires_grad=True)
            out = self._readout(x)[0]
            y = out[token_id] - out[foil] if foil is not None else out[token_id]
            (row,) = torch.autograd.grad(y, x)
        found = (row[0], float(y.detach()))
        self.keep(key, found, d * 4 + 64, expendable=True)
        return found

    def readout_direction(self, final: torch.Tensor, token_id: int, foil: int | None = None) -> torch.Tensor:
        """[d] u with u · c = the direct effect of a part c of the residual on logit(token_id)
        (− logit(foil)): the final norm linearised at `final`, moved behind the read-out row."""
        return self.norm_linearisation(final).adjoint(self.readout_row(token_id, foil))

    # ------------------------------------------------------------------ heads and neurons

    @torch.no_grad()
    def head_mix(self, layer: int, positions: Sequence[int]) -> torch.Tensor:
        """[H, n, hd] each head's mix of values at query `positions`: Σ_j attention[h, i, j] · v[j],
        what the output projection reads (fp32)."""
        record = self.record(layer)
        if record.v is None:
            raise NotAvailable(f"layer {layer}'s attention did not hand its values to the capture")
        idx = torch.tensor([int(p) for p in positions], dtype=torch.long)
        end = int(idx.max()) + 1
        w = self._weights(record, idx, end)  # [H, n, end]
        v = record.v[:, :end].float().to(w.device)
        heads, n = w.shape[:2]
        kv = v.shape[0]
        return torch.matmul(w.reshape(kv, heads // kv, n, end), v[:, None]).reshape(heads, n, -1)

    @torch.no_grad()
    def head_outputs(self, layer: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What each head of `layer` adds to the residual at `position` ([H, d]) and the rest of
        what the block adds ([d]: the output projection's bias, through an output norm), fp32 on
        CPU. Each head's mix goes through the model's own output projection with the other heads
        zeroed; an output norm is linearised at the block's output, like the final norm. They sum
        to `attn_out(layer)[position]`; NotAvailable where they do not (a gate the seam does not know)."""
        mix = self.head_mix(layer, [position])[:, 0].cpu()  # [H, hd]
        gate = self.arch.head_gate(layer, self.residual(layer)[position : position + 1])
        if gate is not None:
            mix = mix * gate[0].cpu()
        heads, hd = mix.shape
        rows = torch.zeros(heads + 1, heads, hd)  # head h alone, then no head (the bias)
        rows[torch.arange(heads), torch.arange(heads)] = mix
        proj = self.arch.attn_out_projection(layer)
        x = rows.reshape(heads + 1, heads * hd)
        out = proj(x.to(device_of(proj, x.device), dtype_of(proj, x.dtype))).float().cpu()
        rest, parts = out[-1], out[:-1] - out[-1]
        if self.arch.attn_output_norm:
            norm = getattr(self.layers[layer], self.arch.attn_output_norm)
            lin = linearise(_on(norm), out[-1] + parts.sum(0))
            parts, rest = lin.apply(parts), lin.apply(rest[None])[0] + lin.bias
        scale = self.arch.attn_scale
        parts, rest = parts * scale, rest * scale
        self._check_heads_add_up(layer, position, parts.sum(0) + rest)
        return parts, rest

    @torch.no_grad()
    def head_projection(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(W: [H, hd, d] each head's slice of the attention's output projection, b: [d] its bias),
        fp32 on CPU, read by passing identity rows through the model's own module (Conv1D,
        offloaded or sharded weights alike). Cached with the run (it is the size of the weight)."""
        key = (self.key, "head_projection", layer)
        hit = self.cache.peek(key)
        if hit is not None:
            return hit
        record = self.record(layer)
        heads, hd = record.q.shape[0], record.q.shape[-1]
        proj = self.arch.attn_out_projection(layer)
        rows = torch.cat([torch.eye(heads * hd), torch.zeros(1, heads * hd)])
        out = proj(rows.to(device_of(proj, rows.device), dtype_of(proj, rows.dtype))).float().cpu()
        found = ((out[:-1] - out[-1]).reshape(heads, hd, -1), out[-1])
        self.keep(key, found, out.numel() * 4)
        return found

    @torch.no_grad()
    def value_outputs(self, layer: int, keys: int | torch.Tensor) -> torch.Tensor:
        """[n, H, d] what head h would write for each key position j if it attended to j alone:
        v_hj W_h (fp32 on CPU; without any gate, which depends on the query), for the keys
        j < `keys` (an int) or the positions in `keys` (a tensor of indices). Each head's
        product is written straight into its strided slot."""
        record = self.record(layer)
        if record.v is None:
            raise NotAvailable(f"layer {layer}'s attention did not hand its values to the capture")
        w_heads, _ = self.head_projection(layer)
        heads, d = w_heads.shape[0], w_heads.shape[-1]
        values = (record.v[:, :keys] if isinstance(keys, int) else record.v[:, keys.to(record.v.device)]).float().cpu()
        end = values.shape[1]
        group = heads // values.shape[0]
        written = torch.empty(end, heads, d)
        for h in range(heads):
            torch.mm(values[h // group], w_heads[h], out=written[:, h])
        return written

    def kept_value_outputs(self, layer: int) -> torch.Tensor | None:
        """The layer's value_outputs for every position, if `keep_value_outputs` kept them."""
        return self.cache.peek((self.key, "value_outputs", layer))

    def keep_value_outputs(self, layer: int) -> bool:
        """Compute the layer's value_outputs for every position and keep them, expendable (Ā and
        the other summaries may take their room: they cost seconds to redo, these 10–25 ms a
        layer at T = 1,536): the contribution graph then skips them (a quarter of its time).
        L·T·H·d floats: 0.95 GB at T = 1,536 on the bundled model. Whether kept."""
        key = (self.key, "value_outputs", layer)
        if key in self.cache:
            return True
        record = self.record(layer)
        if record.v is None or self.arch.head_gate(layer, self.residual(layer)[:1]) is not None:
            return False  # no values, or a gate per query: the graph does not read them
        w_heads, _ = self.head_projection(layer)
        nbytes = self.n_positions * w_heads.shape[0] * w_heads.shape[-1] * 4
        if not self.cache.could_hold(self.key, nbytes, expendable=True):
            return False
        return self.keep(key, self.value_outputs(layer, self.n_positions), nbytes, expendable=True)

    def _gated_values(self, layer: int, position: int, gate: torch.Tensor) -> torch.Tensor:
        """value_outputs of a gated layer for one query: [position + 1, H, d] (gate: [H, hd])."""
        v, (w_heads, _) = self.record(layer).v, self.head_projection(layer)
        assert v is not None
        heads, end = w_heads.shape[0], position + 1
        gated = v[:, :end].float().cpu().repeat_interleave(heads // v.shape[0], dim=0) * gate.cpu()[:, None]
        return torch.matmul(gated, w_heads).transpose(0, 1)

    def _attention_map(
        self, layer: int, pre: torch.Tensor
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        """(parts [..., d] written before the attention's output norm → what they add to the
        residual, the rest of what the block adds), for a block whose pre-norm output is `pre`."""
        _, bias = self.head_projection(layer)
        scale, d = self.arch.attn_scale, bias.shape[0]
        if not self.arch.attn_output_norm:
            return (lambda t: t if scale == 1.0 else t * scale), bias * scale
        lin = linearise(_on(getattr(self.layers[layer], self.arch.attn_output_norm)), pre)
        return (lambda t: lin.apply(t.reshape(-1, d)).reshape(t.shape) * scale), (
            lin.apply(bias[None])[0] + lin.bias
        ) * scale

    @torch.no_grad()
    def token_contributions(
        self, layer: int, positions: Sequence[int], values: torch.Tensor | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each query position p: what attention at `layer` brings to it from each earlier
        token j, Σ_h a_hj · v_hj W_h ([p + 1, d]), and the rest ([d]: the output bias); through an
        output norm linearised at the block's output and the block's scale, fp32 on CPU. They
        sum to `attn_out(layer)[p]` (checked, as in head_outputs). One batched product per
        layer (`values`: its value_outputs, when a caller already has them)."""
        positions = [int(p) for p in positions]
        end = max(positions) + 1
        weights = self._weights(self.record(layer), torch.tensor(positions), end).cpu()  # [H, n, end]
        gate = self.arch.head_gate(layer, self.residual(layer)[positions])
        _, bias = self.head_projection(layer)
        if gate is None:
            written = values[:end] if values is not None and values.shape[0] >= end else self.value_outputs(layer, end)
            raw: list[torch.Tensor] = [torch.empty(0)] * len(positions)
            order = sorted(range(len(positions)), key=positions.__getitem__)
            for a in range(0, len(order), GROUP):  # queries by position: each group stops at its last key
                group = order[a : a + GROUP]
                stop = positions[group[-1]] + 1
                mixed = weights[:, group, :stop].permute(2, 1, 0).contiguous()  # [stop, g, H]
                both = torch.bmm(mixed, written[:stop])  # [stop, g, d]: the group's queries at once
                for k, g in enumerate(group):
                    raw[g] = both[: positions[g] + 1, k]
        else:  # a gate per query: each query its own product
            raw = [
                (self._gated_values(layer, p, gate[k]) * weights[:, k, : p + 1].T[..., None]).sum(1)
                for k, p in enumerate(positions)
            ]
        out = []
        for p, parts in zip(positions, raw, strict=True):
            to_residual, rest = self._attention_map(layer, parts.sum(0) + bias)
            parts = to_residual(parts)
            self._check_heads_add_up(layer, p, parts.sum(0) + rest)
            out.append((parts, rest))
        return out

    def query_weights(self, layer: int, positions: Sequence[int]) -> torch.Tensor:
        """[H, n, max(positions) + 1] the attention weights of query `positions` (fp32 on CPU),
        for a caller that hands them to several of the methods below."""
        idx = torch.tensor([int(p) for p in positions], dtype=torch.long)
        return self._weights(self.record(layer), idx, int(idx.max()) + 1).cpu()

    @torch.no_grad()
    def token_proximities(
        self,
        layer: int,
        positions: Sequence[int],
        targets: torch.Tensor,
        values: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each query position p and the vector t_p its layer's parts add up into ([n, d]
        `targets`): each earlier token j's L1 proximity max(0, ‖t‖₁ − ‖t − z_pj‖₁) ([p + 1]),
        z_pj as in token_contributions, and the rest ([d]). The same numbers as the proximity
        of token_contributions' parts, without holding them: keys go through in chunks, and
        (unless `values` holds the layer's value_outputs, kept) each chunk's value outputs are
        made as it goes, so no [T, H, d] block is ever written and read back (at T = 1,536,
        32 MB a layer; chunk by chunk measured 8% faster for a first graph); each group's mix
        of them is made a few keys at a time into one buffer that stays in L2, not in fresh
        memory per product (a graph on one core 10–30% faster at T = 1,536 and 4,096). Checked
        to add up like token_contributions."""
        positions = [int(p) for p in positions]
        targets = targets.float().cpu()
        end = max(positions) + 1
        gate = self.arch.head_gate(layer, self.residual(layer)[positions])
        if gate is not None or self.arch.attn_output_norm:  # a map per query: through the parts
            return [
                ((t.abs().sum() - (t[None] - parts).abs().sum(-1)).clamp_min(0), rest)
                for t, (parts, rest) in zip(targets, self.token_contributions(layer, positions, values), strict=True)
            ]
        if weights is None:
            weights = self.query_weights(layer, positions)  # [H, n, end]
        kept = values[:end] if values is not None and values.shape[0] >= end else None
        w_heads, bias = self.head_projection(layer)
        scale = self.arch.attn_scale
        rest = bias * scale
        # what the heads add up to at each query (weights are 0 past it): each head's value mix
        # through its slice of the output projection, as the block computes it
        v = self.record(layer).v
        if v is None:
            raise NotAvailable(f"layer {layer}'s attention did not hand its values to the capture")
        heads = weights.shape[0]
        group_size = heads // v.shape[0]
        values_cpu = v[:, :end].float().cpu()
        total = torch.zeros(len(positions), w_heads.shape[-1])  # [n, d]
        for h in range(heads):
            total += (weights[h] @ values_cpu[h // group_size]) @ w_heads[h]
        total *= scale
        # the queries by position, in groups: each group's weights as [keys, g, H], and its keys'
        # distances ‖t − z‖₁ filled chunk by chunk, up to its last query
        order = sorted(range(len(positions)), key=positions.__getitem__)
        groups = [order[a : a + GROUP] for a in range(0, len(order), GROUP)]
        stops = [positions[g[-1]] + 1 for g in groups]
        mixed = [weights[:, g, :stop].permute(2, 1, 0).contiguous() for g, stop in zip(groups, stops, strict=True)]
        far = [torch.empty(stop, len(g)) for g, stop in zip(groups, stops, strict=True)]
        near = [targets[g] for g in groups]
        mixes = [torch.empty(MIX_KEYS, len(g), targets.shape[-1]) for g in groups]
        by_head = values_cpu[torch.arange(heads) // group_size] if kept is None else None  # [H, end, hd]
        made = torch.empty(heads, KEY_CHUNK, w_heads.shape[-1]) if by_head is not None else None
        for c0 in range(0, end, KEY_CHUNK):
            c1 = min(end, c0 + KEY_CHUNK)
            # the chunk's value outputs [C, H, d]: kept, or v_hj W_h for its keys now
            if by_head is not None:
                full = c1 - c0 == KEY_CHUNK
                chunk = torch.bmm(by_head[:, c0:c1], w_heads, out=made if full else None).transpose(0, 1)
            else:
                assert kept is not None
                chunk = kept[c0:c1]
            for stop, m, f, t, mix in zip(stops, mixed, far, near, mixes, strict=True):
                for k0 in range(c0, min(c1, stop), MIX_KEYS):
                    k1 = min(k0 + MIX_KEYS, c1, stop)
                    z = torch.bmm(m[k0:k1], chunk[k0 - c0 : k1 - c0], out=mix[: k1 - k0])  # [keys, g, d]
                    if scale != 1.0:
                        z *= scale
                    torch.sum(z.sub_(t).abs_(), -1, out=f[k0:k1])  # in place: |z − t| = |t − z|
        out: list[tuple[torch.Tensor, torch.Tensor]] = [(torch.empty(0), rest)] * len(positions)
        for g, f in zip(groups, far, strict=True):
            t_norm = targets[g].abs().sum(-1)
            prox = (t_norm[:, None] - f.T).clamp_min_(0)
            self._check_heads_add_up(layer, [positions[i] for i in g], total[g] + rest)
            for k, i in enumerate(g):
                out[i] = (prox[k, : positions[i] + 1], rest)
        return out

    @torch.no_grad()
    def source_value_outputs(self, layer: int, sources: Sequence[int]) -> torch.Tensor | None:
        """[len(sources), H, d] value_outputs of the positions `sources` (kept ones when the layer's
        are kept), for a caller splitting several queries' edges by head; None for a layer that
        gates heads per query (its outputs differ from query to query)."""
        if self.arch.head_gate(layer, self.residual(layer)[:1]) is not None:
            return None
        idx = torch.tensor([int(j) for j in sources], dtype=torch.long)
        kept = self.kept_value_outputs(layer)
        return kept[idx] if kept is not None else self.value_outputs(layer, idx)

    @torch.no_grad()
    def token_head_parts(
        self,
        layer: int,
        position: int,
        sources: Sequence[int],
        weights: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[len(sources), H, d] what each head of `layer` brings to `position` from each source
        token: a_hj · v_hj W_h, mapped to the residual as in token_contributions (`weights`:
        position's row [H, ≥ position + 1], when the caller has it; `values`: the sources'
        source_value_outputs, when it has them). Only the sources' value outputs are computed
        (a few rows, not the layer's)."""
        end = position + 1
        if weights is None:
            weights = self.query_weights(layer, [position])[:, 0]  # [H, end]
        weights = weights[:, :end]
        idx = torch.tensor([int(j) for j in sources], dtype=torch.long)
        gate = self.arch.head_gate(layer, self.residual(layer)[position : position + 1])
        if gate is not None:
            written = self._gated_values(layer, position, gate[0])[idx]
        else:
            ungated = values if values is not None else self.source_value_outputs(layer, sources)
            assert ungated is not None  # (no gate: source_value_outputs gives them)
            written = ungated
        by_head = weights.T[idx, :, None] * written
        w_heads, bias = self.head_projection(layer)
        pre = bias
        if self.arch.attn_output_norm:  # the norm is linearised at the block's pre-norm output
            mix = self.head_mix(layer, [position])[:, 0].cpu()
            if gate is not None:
                mix = mix * gate[0].cpu()
            pre = torch.einsum("hk,hkd->d", mix, w_heads) + bias
        to_residual, _ = self._attention_map(layer, pre)
        return to_residual(by_head)

    def _check_heads_add_up(self, layer: int, positions: int | Sequence[int], total: torch.Tensor) -> None:
        """NotAvailable unless `total` ([d], or [n, d] for n positions) equals what the attention
        block added at `positions` (one check for a group of queries)."""
        rows = [positions] if isinstance(positions, int) else [int(p) for p in positions]
        added_all = self.attn_out(layer)
        added = added_all[torch.tensor(rows, dtype=torch.long, device=added_all.device)].float().cpu()
        gaps = (total.reshape(len(rows), -1) - added).abs().amax(-1)
        exact = torch.finfo(dtype_of(self.arch.attn_out_projection(layer), torch.float32)).eps < 1e-6
        off = gaps > (2e-3 if exact else 5e-2) * added.abs().amax(-1) + 1e-5
        if bool(off.any()):
            gap = float(gaps[off].max())
            proj = type(self.arch.attn_out_projection(layer)).__name__
            raise NotAvailable(
                f"layer {layer}'s attention output is not the sum of its heads' value mixes through "
                f"{proj} (off by {gap:.3g}; the family gates or mixes heads after attention)"
            )

    @torch.no_grad()
    def neuron_effects(
        self, layer: int, position: int, direction: torch.Tensor, acts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, float]:
        """Each MLP neuron's direct effect on `direction · residual` at `position` ([intermediate]:
        activation × direction read back through the output projection), and the effect of the
        rest (the projection's bias, through an output norm); they sum to `direction · mlp_out`.
        The projection's transpose is its gradient, taken through the model's own module, so a
        whole layer costs one MLP row and one backward. `acts`: the position's activations, when
        the caller has them."""
        if acts is None:
            acts = self.mlp_activations(layer, slice(position, position + 1))[0].float().cpu()
        arch = self.arch
        u = direction.float().cpu() * arch.contribution_scale
        with torch.inference_mode(False), torch.enable_grad():
            a = torch.zeros(1, acts.shape[0], requires_grad=True)
            projected = self._projected(layer, a)[0]
            bias = projected.detach()
            if arch.mlp_output_norm:  # linearised at the MLP's output, as the final norm is
                norm = getattr(self.layers[layer], arch.mlp_output_norm)
                lin = linearise(_on(norm), self._projected(layer, acts[None]).detach()[0])
                u_in, rest = lin.adjoint(u), float(lin.adjoint(u) @ bias + u @ lin.bias)
            else:
                u_in, rest = u, float(u @ bias)
            (grad,) = torch.autograd.grad(projected @ u_in, a)
        return acts * grad[0], rest

    def _projected(self, layer: int, acts: torch.Tensor) -> torch.Tensor:
        """arch.mlp_projected of activation rows `acts: [n, I]` (fp32 on CPU), on its device."""
        proj = self.arch.mlp_out_projection(layer)
        x = acts.to(device_of(proj, acts.device), dtype_of(proj, acts.dtype))
        return self.arch.mlp_projected(layer, x).float().cpu()

    @torch.no_grad()
    def neuron_parts(
        self, layer: int, position: int, neurons: Sequence[int], acts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[len(neurons), d] what each listed neuron writes into the MLP's output at `position`
        (activation × its column of the output projection, before any output norm), fp32 on CPU."""
        if acts is None:
            acts = self.mlp_activations(layer, slice(position, position + 1))[0].float().cpu()
        idx = torch.tensor([int(n) for n in neurons], dtype=torch.long)
        rows = torch.zeros(len(idx) + 1, acts.shape[0])
        rows[torch.arange(len(idx)), idx] = acts[idx]
        out = self._projected(layer, rows)
        return out[:-1] - out[-1]
