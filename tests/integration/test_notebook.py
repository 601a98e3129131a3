"""docs/notebook.ipynb executed as a user would (nbclient, a real kernel, the bundled model):
every cell runs, and its outputs carry the runs and the charts' data, equal to what the
registry computes for the same run."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from llmvis.analyses import ViewContext, compute
from llmvis.internals import Internals
from llmvis.trace import Trace

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebook.ipynb"
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
