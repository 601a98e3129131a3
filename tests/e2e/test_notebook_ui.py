"""Issue 19 in the browser: what a notebook cell shows (`llmvis.show(...)._repr_html_()`) opened
in Chromium as a page that embeds it, with every network request refused and recorded: the
chips and a chart draw inside the sandboxed frame, a click shows the candidates, and nothing
is fetched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from e2e_helpers import ARTIFACTS, ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cell_html() -> tuple[str, int, int]:
    sys.path.insert(0, str(ROOT / "tests"))
    import llmvis
    from llmvis.trace import GenerationRequest, SamplingParams
    from tiny_models import tiny_loaded

    loaded = tiny_loaded("llama")
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    trace = llmvis.generate(loaded, GenerationRequest(mode="completion", prompt="The capital of", params=params))
    shown = llmvis.show(trace, loaded, views=[("logit_lens", {"position": trace.prompt_len}), "layer_similarity"])
    return shown._repr_html_(), len(trace.tokens), trace.prompt_len


def poll(frame, expr: str, timeout_ms: int = 15_000):
    """Until `expr` (a function expression, run in the frame) is truthy; returns its value."""
    for _ in range(timeout_ms // 100):
        value = frame.evaluate(expr)
        if value:
            return value
        frame.page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {expr}")


def test_notebook_cell_draws_offline(browser, tmp_path: Path, cell_html):
    frame_html, n_tokens, prompt_len = cell_html
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    notebook = tmp_path / "notebook.html"
    notebook.write_text(f"<!doctype html><html><body><h1>In [3]:</h1>{frame_html}</body></html>", "utf-8")
    ctx = browser.new_context(viewport={"width": 1200, "height": 800})
    requests: list[str] = []

    def refuse(route) -> None:
        requests.append(route.request.url)
        route.continue_() if route.request.url.startswith("file:") else route.abort()

    ctx.route("**/*", refuse)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    try:
        page.goto(notebook.as_uri())
        page.wait_for_selector("iframe")
        frame = page.frame_locator("iframe")
        frame.locator("[data-testid=conversation] .tok").first.wait_for()
        inner = page.frames[1]
        assert inner.evaluate("() => document.querySelectorAll('[data-testid=conversation] .tok').length") == n_tokens
        # the first tab is the views: one chart per view, each with data
        saved = poll(
            inner,
            """() => { const c = Object.entries(window.__llmvis.charts()).filter(([k, v]) => k.startsWith('saved.') && v.visible);
                       return c.length === 2 && c.every(([, v]) => v.series.some((s) => s.length > 0)) ? c : null; }""",
        )
        assert len(saved) == 2
        page.screenshot(path=str(ARTIFACTS / "notebook-cell.png"))
        # a click on a generated token shows its candidates
        frame.locator(".tok.generated").nth(2).click()
        frame.locator("[data-testid=tab-tokens]").click()
        top = poll(
            inner, "() => { const c = window.__llmvis.charts()['tokens.top']; return c && c.visible ? c : null; }"
        )
        selected = inner.evaluate("() => window.__llmvis.app.selected")
        assert selected == prompt_len + 2
        candidates = inner.evaluate(f"() => window.__llmvis.app.run.tokens[{selected}].stats.top.length")
        assert top["series"][0]["length"] == candidates > 0
        page.screenshot(path=str(ARTIFACTS / "notebook-cell-candidates.png"))
        assert [u for u in requests if not u.startswith("file:")] == []  # nothing fetched from anywhere
        assert not errors, errors
    finally:
        ctx.close()
