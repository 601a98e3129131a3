"""The architecture seam (see base.py): `architecture_of(model)` picks the family's adapter by
`model_type`, else the structural default. Adding a family: a file here with a subclass of
`Architecture` registered with `@family(...)`, imported below, and an entry in the tiny-model
list of the tests (docs/ARCHITECTURE.md, "add an architecture")."""

from __future__ import annotations

from torch import nn

from llmvis.arch import (  # noqa: F401
    bloom,
    falcon,
    falcon_h1,
    gated,
    gemma,
    gpt2,
    gpt_neo,
    granite,
    jamba,
    llama4,
    olmo2,
    opt,
    parallel,
)
from llmvis.arch.base import Architecture, NotAvailable, Routing, device_of, dtype_of, text_config
from llmvis.arch.registry import FAMILIES


def architecture_of(model: nn.Module) -> Architecture:
    """The adapter for this model (raises NotAvailable when its decoder cannot be found)."""
    model_type = str(getattr(text_config(model.config), "model_type", ""))
    return FAMILIES.get(model_type, Architecture)(model)


__all__ = ["Architecture", "NotAvailable", "Routing", "architecture_of", "device_of", "dtype_of", "text_config"]
