"""OPT: the decoder is `model.decoder`, and a layer holds its MLP's parts itself (fc1, its
activation, fc2) with no MLP module, so what the MLP adds is fc2's output."""

from typing import Any

import torch

from llmvis.arch.base import Architecture, NotAvailable
from llmvis.arch.registry import family


@family("opt")
class Opt(Architecture):
    family = "OPT"
    mlp_norm = "final_layer_norm"

    def __init__(self, model: Any) -> None:
        if not getattr(model.config, "do_layer_norm_before", True):
            raise NotAvailable("post-LayerNorm OPT (opt-350m): the residual stream is normalised inside each layer")
        super().__init__(model)

    def _find_decoder(self) -> Any:
        return self.model.model.decoder

    def mlp(self, layer: int) -> Any:
        return self.layers[layer].fc2

    def mlp_kind(self, layer: int) -> str:  # type: ignore[override]
        return "plain"

    def mlp_out_projection(self, layer: int) -> Any:
        return self.layers[layer].fc2

    def run_mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        block = self.layers[layer]  # the layer's own modules, in its forward's order
        return block.fc2(block.activation_fn(block.fc1(x)))
