"""Export round trips: the JSON bundle reads back equal, the CSV carries every statistic."""

from __future__ import annotations

import math

import pytest

from conftest import tiny_loaded
from llmvis import export
from llmvis.generation import generate
from llmvis.trace import GenerationRequest, SamplingParams


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
