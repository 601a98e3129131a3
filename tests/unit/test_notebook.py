"""Notebook display: the report page in a sandboxed frame, views from the same registry as the
server, forks and comparisons from Python (tiny random model; the web build must exist)."""

from __future__ import annotations

import html
import json
import re

import numpy
import pytest

import llmvis
from llmvis.analyses import ViewContext, compute
from llmvis.analyses.registry import UnknownViewError
from llmvis.export import bundle
from llmvis.generation import generate
from llmvis.internals import Internals
from llmvis.notebook import Shown
from llmvis.trace import GenerationRequest, SamplingParams
from tiny_models import tiny_loaded

SRCDOC = re.compile(r"srcdoc='([^']*)'")
DATA = re.compile(r'<script type="application/json" id="llmvis-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded("llama")


@pytest.fixture(scope="module")
def trace(loaded):
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    return generate(loaded, GenerationRequest(mode="completion", prompt="The capital of", params=params))


def page_of(frame_html: str) -> str:
    found = SRCDOC.search(frame_html)
    assert found, frame_html[:200]
    return html.unescape(found.group(1))


def bundle_of(page: str) -> dict:
    found = DATA.search(page)
    assert found
    return json.loads(found.group(1))


def test_trace_displays_as_a_sandboxed_report(trace):
    frame = trace._repr_html_()
    assert frame.startswith("<iframe") and 'sandbox="allow-scripts"' in frame
    assert "allow-same-origin" not in frame  # no origin: it cannot reach the notebook or its server
    page = page_of(frame)
    data = bundle_of(page)
    assert data["trace"]["id"] == trace.id and len(data["trace"]["tokens"]) == len(trace.tokens)
    assert data["views"] == []
    assert 'data-tab="tokens"' in page


def test_page_allows_no_network(trace):
    page = Shown(bundle(trace)).page()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert policy, "a CSP comes first in the page"
    rules = dict(rule.strip().split(" ", 1) for rule in policy.group(1).split(";") if rule.strip())
    assert rules["default-src"] == "'none'" and rules["connect-src"] == "'none'"
    assert "'unsafe-eval'" not in rules["script-src"] and "http" not in rules["script-src"]
    assert page.index("Content-Security-Policy") < page.index("<script")


def test_show_carries_views_equal_to_the_registry(loaded, trace):
    position = trace.prompt_len
    shown = llmvis.show(trace, loaded, views=[("logit_lens", {"position": position}), "residual_stream"], theme="dark")
    page = shown.page()
    assert 'data-theme="dark"' in page and 'data-tab="saved"' in page
    views = bundle_of(page)["views"]
    assert [v["view"] for v in views] == ["logit_lens", "residual_stream"]
    ctx = ViewContext(trace, loaded, Internals(loaded, trace.ids))
    expected = compute("logit_lens", ctx, {"position": position}).model_dump(mode="json")
    assert views[0]["result"] == expected
    assert views[0]["params"]["position"] == position


def test_show_says_what_is_wrong(loaded, trace):
    with pytest.raises(ValueError, match="pass the loaded model"):
        llmvis.show(trace, views=["logit_lens"])
    with pytest.raises(UnknownViewError, match="unknown view"):
        llmvis.show(trace, loaded, views=["no_such_view"])


def test_save_writes_the_page(tmp_path, loaded, trace):
    out = llmvis.show(trace, loaded, views=["layer_similarity"]).save(tmp_path / "run.html")
    assert bundle_of(out.read_text("utf-8"))["views"][0]["view"] == "layer_similarity"


def test_fork_and_compare(loaded, trace):
    position = trace.prompt_len + 1
    runner_up = trace.tokens[position].stats.top[1].id
    forked = llmvis.fork(loaded, trace, position, runner_up)
    assert forked.parent_id == trace.id and forked.fork_position == position
    assert forked.ids[:position] == trace.ids[:position] and forked.ids[position] == runner_up
    comparison = llmvis.compare(trace, forked)
    assert comparison.divergence == position
    assert comparison.differences and all(d.position >= position for d in comparison.differences)
    assert f"share {position} tokens" in comparison._repr_html_()


def test_fork_refuses_what_the_route_refuses(loaded, trace):
    with pytest.raises(llmvis.GenerationError, match="not a generated position"):
        llmvis.fork(loaded, trace, 0, 1)
    with pytest.raises(llmvis.GenerationError, match="beyond the vocabulary"):
        llmvis.fork(loaded, trace, trace.prompt_len, 10**6)
    with pytest.raises(llmvis.GenerationError, match="give a token"):
        llmvis.fork(loaded, trace, trace.prompt_len)


def test_compact_page_keeps_float32_values(trace):
    top = trace.tokens[-1].stats.top
    shown = bundle_of(page_of(trace._repr_html_()))["trace"]["tokens"][-1]["stats"]["top"]
    for a, b in zip(top, shown, strict=True):
        assert a.id == b["id"] and numpy.float32(a.raw_prob) == numpy.float32(b["raw_prob"])
        assert len(repr(b["logit"])) <= 12  # shortest float32 decimals, not a double's 17 digits


def test_every_public_name_resolves():
    import subprocess
    import sys

    assert sorted(llmvis.__all__) == sorted(llmvis._WHERE)
    for name in llmvis.__all__:
        assert getattr(llmvis, name) is not None
    # `import llmvis` alone loads no torch: the CLI's --version and --help answer at once
    code = "import sys, llmvis; assert 'torch' not in sys.modules; print(llmvis.__version__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
