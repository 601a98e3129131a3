"""Browser-test fixtures: a real `llmvis serve` on a tiny random model, Debian's Chromium.

Chromium missing: the tests fail when CI is set (CI must run them) and skip otherwise. The
web app must be built (`make web`) before they run; they fail with that hint if it is not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from e2e_helpers import ARTIFACTS, CHROMIUM, ROOT, Page, Server, require_browser


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory) -> Iterator[Server]:
    require_browser()
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import save_tiny_model

    tmp = tmp_path_factory.mktemp("e2e")
    model_dir = tmp / "tiny-llama"
    save_tiny_model(model_dir, "llama")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = Server(str(model_dir), tmp / "data", ARTIFACTS / "serve-tiny.log", timeout=120)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, tiny_server) -> Iterator[Page]:
    p = Page(browser, tiny_server.base)
    yield p
    p.close()


@pytest.fixture(scope="module")
def bundled_server(tmp_path_factory) -> Iterator[Server]:
    """`llmvis serve` with its default model (the bundled SmolLM2-135M-Instruct)."""
    require_browser()
    tmp = tmp_path_factory.mktemp("e2e-bundled")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = Server(None, tmp / "data", ARTIFACTS / "serve-bundled.log", timeout=600)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def remote_server(tmp_path_factory, llama_server) -> Iterator[Server]:
    """`llmvis serve --backend openai` against llama.cpp's server on the bundled GGUF: runs go to
    the engine; no local weights until the page loads a local copy."""
    require_browser()
    from llama_engine import NEUTRAL

    llama_server.ensure_running()
    tmp = tmp_path_factory.mktemp("e2e-remote")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = Server(
        None,
        tmp / "data",
        ARTIFACTS / "serve-remote.log",
        timeout=120,
        extra_args=[
            "--backend",
            "openai",
            "--base-url",
            llama_server.base_url,
            "--tokenizer",
            "smollm2",
            "--extra-body",
            json.dumps(NEUTRAL),
        ],
    )
    yield server
    server.stop()
