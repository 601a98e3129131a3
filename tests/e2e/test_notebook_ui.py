"""Issue 19 in the browser: what a notebook cell shows (`llmvis.show(...)._repr_html_()`) opened
in Chromium as a page that embeds it, with every network request refused and recorded: the
chips and a chart draw inside the sandboxed frame, a click shows the candidates, and nothing
is fetched. Then docs/notebook.ipynb executed as a user would (nbclient, a real kernel, the
bundled model): every cell runs, its outputs carry the runs and the charts' data equal to what
the registry computes, and the executed notebook's outputs draw in Chromium."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from e2e_helpers import ARTIFACTS, ROOT
from nbclient import NotebookClient

from llmvis.analyses import ViewContext, compute
from llmvis.internals import Internals
from llmvis.trace import Trace

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


NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
SRCDOC = re.compile(r"srcdoc='([^']*)'")
DATA = re.compile(r'<script type="application/json" id="llmvis-data">(.*?)</script>', re.S)


def html_outputs(cell) -> list[str]:
    return [o["data"]["text/html"] for o in cell.get("outputs", []) if "text/html" in o.get("data", {})]


def bundles(cell) -> list[dict]:
    """The run bundles inside a cell's frames."""
    out = []
    for frame in html_outputs(cell):
        for doc in SRCDOC.findall(frame):
            found = DATA.search(html.unescape(doc))
            assert found, "every frame carries its run"
            out.append(json.loads(found.group(1)))
    return out


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    out = tmp_path_factory.mktemp("nb") / "executed.ipynb"
    nbformat.write(nb, out)
    return nb, out


def code_cells(nb) -> dict[str, object]:
    return {"".join(c.source).strip().splitlines()[-1]: c for c in nb.cells if c.cell_type == "code"}


def test_every_cell_runs_and_shows_its_run(executed, bundled):
    nb, path = executed
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    cells = code_cells(nb)
    (run,) = bundles(cells["trace"])
    trace = Trace.model_validate(run["trace"])
    assert trace.generated and run["views"] == []

    (shown,) = bundles(cells[")"])  # the llmvis.show(...) cell ends with its closing parenthesis
    assert [v["view"] for v in shown["views"]] == ["logit_lens", "attention", "residual_stream"]
    assert shown["trace"]["id"] == trace.id
    ctx = ViewContext(trace, bundled, Internals(bundled, trace.ids))
    for view in shown["views"]:
        expected = compute(view["view"], ctx, view["params"]).model_dump(mode="json")
        assert view["result"].keys() == expected.keys()
        assert _close(view["result"], expected), view["view"]

    (fork,) = bundles(cells["forked"])
    forked = Trace.model_validate(fork["trace"])
    first = trace.prompt_len
    assert forked.parent_id == trace.id and forked.ids[first] == trace.tokens[first].stats.top[1].id
    (comparison,) = html_outputs(cells["llmvis.compare(trace, forked)"])
    assert f"share {first} tokens" in comparison
    print(f"notebook with outputs: {path.stat().st_size / 1024:.0f} kB")


def _close(a, b, tol: float = 1e-4) -> bool:
    """Equal structure, numbers within `tol` (a kernel may take another path in another process)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= tol * max(1.0, abs(b))
    return a == b


def test_executed_notebook_draws(executed, browser, tmp_path: Path):
    """The executed notebook's outputs, one after another as Jupyter shows them: every frame draws
    its run's chips, and the `show` cell its three charts, with no request anywhere."""
    nb, _ = executed
    frames = [h for c in nb.cells if c.cell_type == "code" for h in html_outputs(c) if "<iframe" in h]
    assert len(frames) == 3  # the run, the run with views, the fork
    page_file = tmp_path / "executed.html"
    page_file.write_text("<!doctype html><html><body>" + "".join(frames) + "</body></html>", "utf-8")
    ctx = browser.new_context(viewport={"width": 1200, "height": 2000})
    requests: list[str] = []
    ctx.route(
        "**/*",
        lambda r: (requests.append(r.request.url), r.continue_() if r.request.url.startswith("file:") else r.abort()),
    )
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(page_file.as_uri())
        page.wait_for_function("() => document.querySelectorAll('iframe').length === 3")
        inner = page.frames[1:]
        assert len(inner) == 3
        for frame in inner:
            poll(
                frame, "() => document.querySelectorAll('[data-testid=conversation] .tok.generated').length > 0", 60_000
            )
        charts = poll(
            inner[1],
            """() => { const c = Object.entries(window.__llmvis.charts()).filter(([k, v]) => k.startsWith('saved.') && v.visible);
                       return c.length === 3 && c.every(([, v]) => v.series.some((s) => s.length > 0)) ? c : null; }""",
            60_000,
        )
        assert len(charts) == 3
        page.screenshot(path=str(ARTIFACTS / "notebook-executed.png"), full_page=True)
        assert [u for u in requests if not u.startswith("file:")] == []
        assert not errors, errors
    finally:
        ctx.close()
