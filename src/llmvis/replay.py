"""Skip what an intervention cannot change: the decoder layers below the first one it touches.

Those layers compute, in the intervened forward, exactly what they computed in the run's own
forward, whose outputs (the residual stream) the capture holds. For one forward each such layer
is swapped for a stand-in that returns its captured output shaped as the layer returns it, so a
forward that patches layer l costs the layers from l on. The captured values equal the model's
own hidden states (the exactness tests hold them to 1e-5), so results agree with a full forward
to that rounding, not bit for bit; an empty plan never replays anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import torch
from torch import nn

from llmvis.internals import Internals

# a decoder layer's output form: (None, ()) a tensor; (tuple type, Nones) a tuple of the hidden
# states and what the loop reads only for `output_attentions` or a cache. One per model, seen once
# on a 2-token forward; None: a layer returns something else.
Form = tuple[Any, tuple]
_FORMS: WeakKeyDictionary[nn.Module, list[Form] | None] = WeakKeyDictionary()


class _Replay(nn.Module):
    """Stands in for a decoder layer: returns the run's captured output of that layer, repeated
    over the batch, computing nothing else. Attributes the model's loop reads from its
    layers (e.g. `attention_type`) come from the layer."""

    def __init__(self, layer: nn.Module, output: torch.Tensor, form: Form) -> None:
        super().__init__()
        self.layer = layer
        self.output = output
        self.form = form

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.layer, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        x = args[0] if args else kwargs["hidden_states"]
        # a copy: the layers above may write to their input in place, never to the capture
        out = self.output.to(x.device, x.dtype).unsqueeze(0).repeat(x.shape[0], 1, 1)
        kind, rest = self.form
        return out if kind is None else kind((out, *rest))


def layer_list(run: Internals) -> nn.ModuleList:
    decoder = run.arch.decoder
    return next(m for n in ("layers", "h", "blocks") if isinstance(m := getattr(decoder, n, None), nn.ModuleList))


def layer_forms(run: Internals) -> list[Form] | None:
    """How each decoder layer returns its output, or None when some layer's output does not
    start with its hidden states (then nothing is replayed)."""
    model = run.model
    if model in _FORMS:
        return _FORMS[model]
    forms: list[Form | None] = [None] * run.n_layers

    def seen(i: int) -> Any:
        def hook(_m: Any, _args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                forms[i] = (None, ())
            elif isinstance(output, tuple) and isinstance(output[0], torch.Tensor):
                # what follows the hidden states (BLOOM's, GPT-Neo's attention weights) is read
                # by the model's loop only when attentions or a cache are asked for: never here
                forms[i] = (type(output), (None,) * (len(output) - 1))

        return hook

    handles = [layer.register_forward_hook(seen(i)) for i, layer in enumerate(run.arch.layers)]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([run.ids[:2]], device=run.loaded.device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    known = None if any(f is None for f in forms) else [f for f in forms if f is not None]
    _FORMS[model] = known
    return known


@contextmanager
def replayed(run: Internals, upto: int) -> Iterator[None]:
    """Layers 0..upto-1 of the model replaced by their captured outputs in `run` (a forward of
    `run`'s tokens, any batch size); nothing replaced where the layers' forms are unknown."""
    forms = layer_forms(run) if upto > 0 else None
    if forms is None:
        yield
        return
    layers = layer_list(run)
    kept = [layers[i] for i in range(upto)]
    for i in range(upto):
        layers[i] = _Replay(kept[i], run.residual(i + 1), forms[i])
    try:
        yield
    finally:
        for i, layer in enumerate(kept):
            layers[i] = layer
