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


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server on the bundled GGUF (see llama_engine.py), once."""
    from llama_engine import LlamaServer, require_llama_cpp
    from llmvis.models.sources import bundled_gguf

    require_llama_cpp()
    server = LlamaServer(bundled_gguf(), tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def llama_engine(llama_server):
    """The engine, running when the test starts."""
    llama_server.ensure_running()
    return llama_server
