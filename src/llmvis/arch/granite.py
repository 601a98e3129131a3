"""Granite: each block's output is scaled by `residual_multiplier` before it is added, and the
logits are divided by `logits_scaling`."""

from llmvis.arch.base import Architecture
from llmvis.arch.registry import family


@family("granite", "granitemoe", "granitemoeshared")
class Granite(Architecture):
    family = "Granite"

    @property
    def contribution_scale(self) -> float:
        return float(self.config.residual_multiplier)

    @property
    def logit_multiplier(self) -> float:
        return 1.0 / float(self.config.logits_scaling)
