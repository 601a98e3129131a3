"""The web UI against `llmvis serve --backend openai`: runs go to llama.cpp's server on the bundled
GGUF, which returns only its top-N candidates, and the views that need weights ask for a local
copy until the page loads one.

The tests share one server and run in order: the second loads the local copy.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_helpers import Page, Server
from test_ui import GENERATED, generate, set_number, shot, wait_charts

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# A view that needs weights answers 409 until a local copy is loaded; Chromium logs each such
# response as "Failed to load resource: ... 409". Those are expected; anything else is not.
EXPECTED_409 = "status of 409"


@pytest.fixture
def rpage(browser, remote_server: Server) -> Iterator[Page]:
    p = Page(browser, remote_server.base)
    yield p
    p.close()


def wait_remote(p: Page) -> None:
    p.page.wait_for_selector("[data-testid=model-remote]", timeout=30_000)


def greedy_run(p: Page, max_tokens: int = 12) -> int:
    """A short greedy run; returns the position of its first generated token."""
    p.page.click("[data-testid=mode] button[data-value=completion]")
    set_number(p, "temperature-box", "0")
    generate(p, "The capital of France is", max_tokens=max_tokens)
    assert p.js(GENERATED) > 0
    assert p.js("() => window.__llmvis.app.run.model.source") == "remote"
    return p.js("() => window.__llmvis.app.run.promptLen")


def unexpected(errors: list[str]) -> list[str]:
    return [e for e in errors if EXPECTED_409 not in e]


def test_remote_run_shows_entropy_bounds_and_the_engine(rpage: Page, llama_engine):
    p = rpage
    wait_remote(p)
    # The model panel: runs go to the engine; the load box is for a local copy, none yet.
    host = llama_engine.base_url.split("//")[1].split("/")[0]
    assert host in p.page.locator("[data-testid=model-remote]").text_content()
    name = p.page.locator("[data-testid=model-info] .model-name").text_content()
    assert "/" not in name and name.endswith(".gguf"), name  # llama.cpp names it by its file
    assert p.page.locator("[data-testid=load]").text_content() == "Load copy"
    assert p.page.locator("[data-testid=local-copy-hint]").is_visible()
    assert p.page.locator("[data-testid=model-status]").text_content() == "No local copy loaded"

    first = greedy_run(p)
    stats = p.js(f"() => window.__llmvis.app.run.tokens[{first}].stats")
    assert stats["entropy_upper"] is not None and stats["missing_mass"] is not None

    # The tooltip: the entropy as bounds, and the mass outside the returned candidates.
    p.page.locator(f".tok[data-p='{first}']").hover()
    tip = p.page.locator("[data-testid=token-tooltip]")
    tip.wait_for(state="visible")
    text = tip.text_content()
    assert "≥" in text and "nats (≤" in text, text
    assert f"outside top-{len(stats['top'])}" in text, text
    shot(p, "remote-tooltip")

    # The Tokens tab shows the same numbers for the selected token.
    p.page.locator(f".tok[data-p='{first}']").click()
    p.page.click("[data-testid=tab-tokens]")
    wait_charts(p, "tokens", ["top"])
    facts = p.page.locator("[data-tab=tokens] .facts").text_content()
    assert "≥" in facts and "outside top-" in facts, facts
    p.page.mouse.move(5, 5)
    shot(p, "remote-tokens")
    assert not unexpected(p.errors), p.errors


def test_weight_views_ask_for_a_local_copy_then_compute(rpage: Page):
    p = rpage
    wait_remote(p)
    first = greedy_run(p)
    p.page.locator(f".tok[data-p='{first}']").click()

    # Without local weights the Attention tab says why, with a button to the load box.
    p.page.click("[data-testid=tab-attention]")
    status = p.page.locator("[data-testid=status-attention]")
    button = p.page.locator("[data-testid=load-for-attention]")
    button.wait_for(timeout=30_000)
    assert "local copy" in status.text_content() and "engine at" in status.text_content(), status.text_content()
    assert button.text_content() == "Load a local copy"
    shot(p, "remote-needs-copy")
    button.click()
    assert p.js("() => document.activeElement.dataset.testid") == "model-spec"
    # ... suggesting the local spec the server took the engine model's tokenizer from.
    assert p.page.input_value("[data-testid=model-spec]") == "smollm2"

    # Load the bundled model as the local copy: the run model stays the engine's, and the tab computes.
    p.page.fill("[data-testid=model-spec]", "smollm2")
    p.page.click("[data-testid=load]")
    model_status = p.page.locator("[data-testid=model-status]")
    p.until("() => document.querySelector('[data-testid=model-status]').textContent.startsWith('Local copy:')",
            180, what="the local copy to load")
    assert "SmolLM2" in model_status.text_content()
    assert p.js("() => window.__llmvis.app.model.source") == "remote"
    assert p.js("() => window.__llmvis.app.localModel.source") != "remote"
    assert p.page.locator("[data-testid=model-remote]").is_visible()
    charts = wait_charts(p, "attention", ["matrix", "row"], timeout=180)
    assert charts["attention.matrix"]["series"][0]["length"] > 0
    assert not button.is_visible()
    assert "err" not in (status.get_attribute("class") or "")
    p.page.wait_for_timeout(300)
    shot(p, "remote-attention")

    # A reload finds the local copy through GET /api/model.
    p.page.reload()
    wait_remote(p)
    p.until("() => document.querySelector('[data-testid=model-status]').textContent.startsWith('Local copy:')",
            30, what="the local copy after a reload")
    assert not unexpected(p.errors), p.errors
