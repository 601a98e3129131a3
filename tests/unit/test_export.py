"""Export round trips: the JSON bundle reads back equal, the CSV carries every statistic."""

from __future__ import annotations

import math

import pytest

from llmvis import export
from llmvis.generation import generate
from llmvis.trace import GenerationRequest, SamplingParams
from tiny_models import tiny_loaded


@pytest.fixture(scope="module")
def trace():
    params = SamplingParams(temperature=0.8, max_new_tokens=6, seed=3)
    request = GenerationRequest(mode="completion", prompt='a "quoted", comma\nnew line 🙂', params=params)
    return generate(tiny_loaded("llama"), request)


def test_bundle_roundtrip(trace):
    views = [export.ExportedView(view="tokens", params={"position": 2}, result={"x": [1, 2.5]})]
    text = export.bundle(trace, views).model_dump_json()
    back = export.read_bundle(text)
    assert back.trace == trace and back.views == views


def test_bundle_rejects_other_files():
    with pytest.raises(ValueError, match="not an llmvis run bundle"):
        export.read_bundle('{"format": "other"}')
    with pytest.raises(ValueError, match="version"):
        export.read_bundle('{"format": "llmvis-run", "version": 99}')


def test_csv_roundtrip(trace):
    rows = export.read_csv(export.stats_csv(trace))
    assert len(rows) == len(trace.tokens)
    for row, token in zip(rows, trace.tokens, strict=True):
        assert int(row["position"]) == token.position and int(row["id"]) == token.id
        assert row["text"] == token.text and row["kind"] == token.kind
        if token.stats is None:
            assert row["raw_prob"] == ""
            continue
        assert math.isclose(float(row["raw_prob"]), token.stats.raw_prob)
        assert int(row["rank"]) == token.stats.rank
        assert int(row["top1_id"]) == token.stats.top[0].id
        if token.kind == "generated":
            assert math.isclose(float(row["sampled_prob"]), token.stats.sampled_prob)
        assert row["entropy_upper"] == row["missing_mass"] == ""  # exact statistics: no bounds


def test_csv_carries_a_remote_engines_entropy_bounds(trace):
    from llmvis.remote.stats import Returned, remote_stats

    remote = trace.model_copy(deep=True)
    token = remote.tokens[-1]
    token.stats = remote_stats(
        Returned(token.id, token.label, math.log(0.3)),
        [Returned(token.id, token.label, math.log(0.3)), Returned(1, "a", math.log(0.2))],
        400,
    )
    row = export.read_csv(export.stats_csv(remote))[-1]
    assert math.isclose(float(row["missing_mass"]), 0.5)
    assert math.isclose(float(row["entropy_upper"]), token.stats.entropy_upper)
    assert float(row["raw_entropy"]) < float(row["entropy_upper"])


TEMPLATE = (
    '<!doctype html><html><head><script type="module">console.log("report")</script></head>'
    '<body><div id="app"></div><script type="application/json" id="llmvis-data"></script></body></html>'
)


def slot_json(page: str) -> str:
    start = page.index('id="llmvis-data">') + len('id="llmvis-data">')
    return page[start : page.index("</script>", start)]


def test_report_html_embeds_the_bundle_safely(tmp_path, trace):
    template = tmp_path / "report.html"
    template.write_text(TEMPLATE)
    hostile = trace.model_copy(update={"title": "</script><script>alert(1)</script> <!-- \u2028"})
    run = export.bundle(hostile)
    page = export.report_html(run, template)
    assert "<script>alert(1)" not in page and page.count("</script>") == 2
    assert export.read_bundle(slot_json(page)) == run  # the JSON in the page reads back equal
    csp = export.report_csp(page)
    assert "connect-src 'none'" in csp and csp.count("'sha256-") == 1  # the one inline module script
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(b'console.log("report")').digest()).decode()
    assert f"'sha256-{digest}'" in csp


def test_report_without_a_build_says_so(tmp_path, trace):
    with pytest.raises(export.ReportUnavailable, match="make web"):
        export.report_html(export.bundle(trace), tmp_path / "missing.html")


def test_export_cli_writes_json_csv_html(tmp_path, trace, monkeypatch, capsys):
    import argparse

    from llmvis.store import Store

    template = tmp_path / "report.html"
    template.write_text(TEMPLATE)
    monkeypatch.setattr(export, "REPORT_TEMPLATE", template)
    store = Store(tmp_path / "data" / "runs.sqlite3")
    store.save(trace)
    store.record_view(trace.id, "tokens", {"position": 1}, '{"a": 1}')
    store.close()
    out = {k: tmp_path / f"run.{k}" for k in ("json", "csv", "html")}
    args = argparse.Namespace(run_id=trace.id, data_dir=str(tmp_path / "data"), **{k: str(v) for k, v in out.items()})
    assert export.export_cli(args) == 0
    run = export.read_bundle(out["json"].read_text())
    assert run.trace == trace and run.views[0].result == {"a": 1}
    assert out["csv"].read_text() == export.stats_csv(trace)
    assert export.read_bundle(slot_json(out["html"].read_text())).trace == trace
    missing = argparse.Namespace(run_id="nope", data_dir=str(tmp_path / "data"), json=None, csv=None, html=None)
    assert export.export_cli(missing) == 1 and "no run 'nope'" in capsys.readouterr().err
