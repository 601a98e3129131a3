"""Family adapters by `model_type`; a model of another type gets the structural default."""

from __future__ import annotations

from collections.abc import Callable

from llmvis.arch.base import Architecture

FAMILIES: dict[str, type[Architecture]] = {}


def family(*model_types: str) -> Callable[[type[Architecture]], type[Architecture]]:
    def register(cls: type[Architecture]) -> type[Architecture]:
        for model_type in model_types:
            FAMILIES[model_type] = cls
        cls.model_types = model_types
        return cls

    return register
