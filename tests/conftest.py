"""Shared fixtures: tiny random models for every architecture, the bundled model once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from llmvis.models.loaded import LoadedModel
from tiny_models import ARCHITECTURES

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(params=ARCHITECTURES)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def bundled() -> LoadedModel:
    """The real bundled SmolLM2-135M-Instruct (converted once into the user cache)."""
    from llmvis.models import load_model

    return load_model("smollm2")
