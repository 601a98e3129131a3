"""Prompt logits without paying for them during the prefill.

Plain `model.generate` projects only the last prompt position onto the vocabulary. Prompt
statistics need every position, and on a small CPU that projection (positions x hidden x vocab)
is a large share of a long prefill. So the prefill runs the model exactly as generate does
(`logits_to_keep=1`) while a hook keeps the decoder's final hidden states; after the last token
the model's *own* head turns them into logits: the decoder is replaced by a stub that
returns the kept states, so final norm output, lm_head, soft-capping, logit scales — whatever the
architecture's forward does after its decoder — run unchanged. The stub lives in a shallow copy
of the model, so the live model is never modified and a replay may run beside a decode step. A
probe at first use checks the replay against a full forward; a model where it differs gets the
eager path instead.
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from llmvis.models.loaded import LoadedModel

PROBE_LEN = 8


class _Replay(nn.Module):
    """Stands in for the decoder: returns the kept hidden states as the decoder's output."""

    def __init__(self, output_type: Any, hidden: torch.Tensor) -> None:
        super().__init__()
        self.output_type = output_type
        self.hidden = hidden

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.output_type(last_hidden_state=self.hidden)


class DeferredHead:
    """Keeps the decoder's last hidden states of each prefill chunk; replays the head later."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.prefix: str = model.base_model_prefix
        self.decoder: nn.Module = getattr(model, self.prefix)
        self.chunks: list[torch.Tensor] = []  # [C, H] per forward, on the decoder's last device
        self.output_type: Any = None

    @contextmanager
    def capture(self) -> Iterator[None]:
        """While active, every decoder forward of this thread appends its final hidden states to
        `chunks` (the model may run elsewhere meanwhile: a view, or another server's background
        capture on a shared model, must not slip its states in)."""
        me = threading.get_ident()

        def keep(_module: nn.Module, _args: Any, output: Any) -> None:
            if threading.get_ident() != me:
                return
            self.output_type = type(output)
            self.chunks.append(output.last_hidden_state[0].detach())

        handle = self.decoder.register_forward_hook(keep)
        try:
            yield
        finally:
            handle.remove()

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's own logits [C, V] for kept hidden states [C, H]."""
        replay = copy.copy(self.model)  # shares every parameter and submodule ...
        modules = {**self.model._modules, self.prefix: _Replay(self.output_type, hidden[None])}
        object.__setattr__(replay, "_modules", modules)  # ... but the decoder
        replay.__dict__.pop("forward", None)  # a wrapper (accelerate's) bound to the original
        dummy = torch.zeros((1, hidden.shape[0]), dtype=torch.long, device=hidden.device)
        with torch.inference_mode():
            return replay(input_ids=dummy, use_cache=False).logits[0]


def defers_prompt_logits(loaded: LoadedModel) -> bool:
    """Whether this model's prompt logits may be replayed after the prefill (probed once)."""
    if loaded.deferred_head is None:
        loaded.deferred_head = supports_deferred_head(loaded.model, loaded.device)
    return loaded.deferred_head


def supports_deferred_head(model: Any, device: torch.device) -> bool:
    """Whether replayed logits equal a full forward's on a probe input (decided once per model)."""
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return False
    prefix = getattr(model, "base_model_prefix", "")
    if not isinstance(getattr(model, prefix, None), nn.Module):
        return False
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = (torch.arange(PROBE_LEN, device=device) * 7919 % vocab)[None]
    head = DeferredHead(model)
    try:
        with torch.inference_mode(), head.capture():
            full = model(input_ids=ids, use_cache=False).logits[0].float()
        replayed = head.logits(head.chunks[0]).float()
    except Exception:  # an architecture whose head needs more than the decoder's output
        return False
    if replayed.shape != full.shape:
        return False
    scale = float(full.abs().max()) or 1.0
    return bool(torch.allclose(replayed, full.to(replayed.device), rtol=0, atol=1e-5 * scale))
