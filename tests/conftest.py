"""Shared fixtures: tiny random models for every architecture, the bundled model once per session."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from llmvis.models.loaded import LoadedModel, describe, stop_token_ids
from tiny_models import ARCHITECTURES, make_model

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@cache
def tiny_loaded(arch: str = "llama", layers: int = 2, attn: str = "sdpa") -> LoadedModel:
    """A LoadedModel around a tiny random model (cached: treat it as read-only)."""
    model, tok = make_model(arch, layers, attn=attn)
    info = describe(model, tok, name=f"tiny-{arch}", source="hf_dir", path=f"<tiny-{arch}>")
    return LoadedModel(model, tok, info, stop_token_ids(model, tok))


@pytest.fixture(params=ARCHITECTURES)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def bundled() -> LoadedModel:
    """The real bundled SmolLM2-135M-Instruct (converted once into the user cache)."""
    from llmvis.models import load_model

    return load_model("smollm2")
