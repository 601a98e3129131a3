"""The load-time self-check: are this model's internals what its own eager forward computes?

On a few tokens, the capture (residual stream), two layers' recomputed attention, the MLP's
activations and the logit read-out are compared with the unmodified model run with the eager
kernel and `output_attentions` / `output_hidden_states`. What fails, or what the architecture
seam cannot read, makes the views that need it unavailable, each with its reason: a user is
told, never shown a wrong number. A few tokens cost ≤ 0.1 s on the bundled model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import DynamicCache

from llmvis.analyses.registry import VIEWS
from llmvis.arch import NotAvailable
from llmvis.capture import Capture, Recorder, attention_implementation
from llmvis.capture_cache import CaptureCache
from llmvis.internals import Internals
from llmvis.models.info import InternalsReport
from llmvis.models.loaded import LoadedModel

log = logging.getLogger("llmvis")

CHECK_TOKENS = 8


@torch.no_grad()
def check_internals(loaded: LoadedModel) -> InternalsReport:
    """What this model's internals views can show, checked against its own eager forward."""
    # part ("capture", "attention", "mlp", "one_mlp": no layer is a mixture…) → why it is unavailable
    failed: dict[str, str] = {}
    family, wiring, worst, tol = "unknown", "", 0.0, 1e-3
    moe: list[int] = []
    attention_layers: list[int] | None = None
    per_token: int | None = None
    live = False
    try:
        family, wiring = loaded.arch.family, loaded.arch.wiring
        internals = Internals(loaded, _probe_ids(loaded), cache=CaptureCache(1 << 30))
        per_token = internals.capture().nbytes // CHECK_TOKENS
        attention_layers = internals.attention_layers()
        with _eager(loaded.model):
            ref = loaded.model(
                torch.tensor([internals.ids], device=loaded.device), output_attentions=True, output_hidden_states=True
            )
        tol = 1e-3 if _dtype(loaded) == torch.float32 else 5e-2
        worst = max(worst, _compare_stream(internals, ref, tol, failed))
        worst = max(worst, _compare_attention(internals, ref, tol, failed))
        worst = max(worst, _compare_mlp(internals, tol, failed))
        moe = [i for i in range(internals.n_layers) if loaded.arch.mlp_kind(i) == "experts"]
        worst = max(worst, _compare_experts(internals, moe, tol, failed))
        live = "capture" not in failed and _live_capture_matches(loaded, internals, tol)
    except NotAvailable as exc:
        failed["capture"] = str(exc)
    except Exception as exc:  # an architecture the seam does not know: say so, do not crash the load
        log.warning("internals self-check failed", exc_info=True)
        failed["capture"] = f"the internals could not be read from this model ({type(exc).__name__}: {exc})"[:300]
    verified = "capture" not in failed and worst <= tol  # what could be checked matched
    return InternalsReport(
        family=family,
        wiring=wiring,
        verified=verified,
        max_error=worst,
        unavailable=_views_without(failed),
        attention_layers=attention_layers,
        moe_layers=moe,
        capture_bytes_per_token=per_token,
        live_capture=live,
    )


def _probe_ids(loaded: LoadedModel) -> list[int]:
    vocab = int(loaded.info.vocab_size)
    return [(i * 7919 + 11) % vocab for i in range(CHECK_TOKENS)]


def _dtype(loaded: LoadedModel) -> torch.dtype:
    return next(loaded.model.parameters()).dtype


def _error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Largest difference relative to the reference's scale."""
    theirs = theirs.float().cpu()
    return float((ours.float().cpu() - theirs).abs().max()) / max(1.0, float(theirs.abs().max()))


def _compare_stream(internals: Internals, ref: Any, tol: float, failed: dict[str, str]) -> float:
    n = internals.n_layers
    errors = [_error(internals.residual(i), ref.hidden_states[i][0]) for i in range(n)]
    errors.append(_error(internals.logits(internals.residual(n)), ref.logits[0]))
    if max(errors) > tol:
        failed["capture"] = f"the captured residual stream differs from the model's own by {max(errors):.2g}"
        return max(errors)
    # what attention and the MLP add must be all that each layer adds (Gemma 4 adds per-layer inputs)
    parts = max(_error(_sum_of_parts(internals, i), internals.residual(i + 1)) for i in range(n))
    if parts > tol:
        failed["contributions"] = (
            f"its layers add more to the residual stream than attention and MLP outputs (off by {parts:.2g})"
        )
    return max(*errors, parts)


def _sum_of_parts(internals: Internals, layer: int) -> torch.Tensor:
    """The layer's input plus what attention, the MLP (and a named extra part) added."""
    extra = internals.extra_out(layer)
    total = internals.residual(layer) + internals.attn_out(layer) + internals.mlp_out(layer)
    return total if extra is None else total + extra


def _compare_attention(internals: Internals, ref: Any, tol: float, failed: dict[str, str]) -> float:
    attentions = list(getattr(ref, "attentions", None) or ())
    layers = [i for i, r in enumerate(internals.capture().attention) if r is not None]
    if not layers:
        failed["attention"] = "no layer of this model has softmax attention that llmvis can record"
        return 0.0
    if len(attentions) not in (internals.n_layers, len(layers)):
        failed["attention"] = "the model's own forward does not return its layers' attention to check against"
        return 0.0
    # a hybrid model returns the attention of its attention layers only, in order
    theirs = (
        dict(enumerate(attentions))
        if len(attentions) == internals.n_layers
        else dict(zip(layers, attentions, strict=True))
    )
    checked = [layers[0], layers[-1]]
    errors = [_error(internals.attention(layer), theirs[layer][0]) for layer in checked]
    if max(errors) > tol:
        failed["attention"] = f"recomputed attention differs from the model's own by {max(errors):.2g}"
    return max(errors)


def _live_capture_matches(loaded: LoadedModel, internals: Internals, tol: float) -> bool:
    """Whether the capture kept while generating — a prefill chunk, then decode steps over the
    KV cache, as generation runs them — equals the teacher-forced one. Not for recurrent token
    mixers (Mamba, linear attention): their steps and a whole-run scan round differently."""
    if loaded.arch.recurrent_mixer or internals.missing_attention():
        return False
    ids = internals.ids
    cache = DynamicCache(config=loaded.model.config)
    chunks = [ids[:5], *([i] for i in ids[5:])]
    try:
        with torch.inference_mode(), Recorder(loaded.arch) as recorder:
            for chunk in chunks:
                with recorder.forward(len(chunk)):
                    x = torch.tensor([chunk], device=loaded.device)
                    loaded.model(input_ids=x, logits_to_keep=1, **loaded.cache_kwargs(cache))
        live = recorder.capture()
    except Exception:
        log.info("no capture while generating for this model", exc_info=True)
        return False
    return _same_capture(live, internals.capture(), tol)


def _same_capture(a: Capture, b: Capture, tol: float) -> bool:
    tensors = zip((*a.residual, *a.attn, *a.mlp), (*b.residual, *b.attn, *b.mlp), strict=True)
    if any(x.shape != y.shape or _error(x, y) > tol for x, y in tensors):
        return False
    for ra, rb in zip(a.attention, b.attention, strict=True):
        if (ra is None) != (rb is None):
            return False
        if ra is None or rb is None:
            continue
        same_band = torch.equal(ra.first_key, rb.first_key) and torch.equal(ra.last_key, rb.last_key)
        if not same_band or ra.q.shape != rb.q.shape or ra.k.shape != rb.k.shape:
            return False
        if max(_error(ra.q, rb.q), _error(ra.k, rb.k)) > tol:
            return False
    return True


def _compare_mlp(internals: Internals, tol: float, failed: dict[str, str]) -> float:
    arch = internals.arch
    experts = [i for i in range(internals.n_layers) if arch.mlp_kind(i) == "experts"]
    if experts:  # the activations view shows every layer's neurons
        which = "every layer's MLP is" if len(experts) == internals.n_layers else f"the MLP of layers {experts} is"
        failed["one_mlp"] = f"{which} a mixture of experts: its neurons belong to the experts, not to one MLP"
    dense = next((i for i in range(internals.n_layers) if i not in experts), None)
    if dense is None:
        return 0.0
    try:
        acts = internals.mlp_activations(dense)
    except NotAvailable as exc:
        failed["mlp"] = str(exc)
        return 0.0
    error = _error(arch.mlp_contribution(dense, acts), internals.mlp_out(dense))
    if error > tol:
        failed["mlp"] = f"MLP activations do not reproduce the MLP's output (off by {error:.2g})"
    return error


def _compare_experts(internals: Internals, moe: list[int], tol: float, failed: dict[str, str]) -> float:
    """The routed experts' parts (and the shared expert's) at each probe token of the first
    mixture layer must sum to that layer's MLP output."""
    if not moe:
        return 0.0
    layer = moe[0]
    try:
        sums = []
        for pos in range(internals.n_positions):
            routed, shared = internals.expert_parts(layer, pos)
            sums.append(routed.sum(0) + (shared if shared is not None else 0))
    except NotAvailable as exc:
        failed["experts"] = str(exc)
        return 0.0
    except Exception as exc:  # a mixture whose router or experts are called otherwise: told, not fatal
        log.warning("experts self-check failed", exc_info=True)
        failed["experts"] = f"the routing could not be read from this model ({type(exc).__name__}: {exc})"[:300]
        return 0.0
    error = _error(torch.stack(sums), internals.mlp_out(layer))
    if error > tol:
        failed["experts"] = f"the routed experts do not add up to the layer's MLP output (off by {error:.2g})"
    return error


def _views_without(failed: dict[str, str]) -> dict[str, str]:
    """Each internals view that needs a failed part, with that part's reason."""
    out = {}
    for view in VIEWS.values():
        if not view.needs_internals:
            continue
        part = "capture" if "capture" in failed else next((u for u in view.uses if u in failed), None)
        if part is not None:
            out[view.name] = failed[part]
    return out


@contextmanager
def _eager(model: Any) -> Iterator[None]:
    """The model's own eager attention, which returns its weights."""
    with attention_implementation(model, "eager"):
        yield
