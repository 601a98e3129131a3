"""`llmvis trace` in the terminal, on the bundled model and on a remote engine."""

from __future__ import annotations

import json

import pytest

from llama_engine import NEUTRAL
from llmvis.cli import main
from llmvis.trace import Trace


def test_trace_prints_the_tokens_and_writes_the_trace(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["trace", "The capital of France is", "--max-new-tokens", "6", "--no-color", "--json", str(out)]) == 0
    trace = Trace.model_validate_json(out.read_text())
    printed = capsys.readouterr()
    assert trace.model.source == "bundled" and len(trace.generated) == 6
    assert printed.out.strip() == trace.text.strip()
    assert "6 tokens" in printed.err and "mean entropy ≥" not in printed.err


def test_trace_on_a_remote_engine(llama_engine, tmp_path, capsys):
    out = tmp_path / "remote.json"
    args = [
        "trace",
        "The capital of France is",
        "--backend",
        "openai",
        "--base-url",
        llama_engine.base_url,
        "--tokenizer",
        "smollm2",
        "--extra-body",
        json.dumps(NEUTRAL),
        "--max-new-tokens",
        "6",
        "--no-color",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    trace = Trace.model_validate_json(out.read_text())
    own = llama_engine.complete(prompt="The capital of France is", max_tokens=6, temperature=0, seed=1)
    assert trace.model.source == "remote" and trace.text == own["choices"][0]["text"]
    assert "mean entropy ≥" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="cannot reach the engine"):
        main(["trace", "x", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--tokenizer", "smollm2"])
    with pytest.raises(SystemExit, match="needs --base-url"):
        main(["trace", "x", "--backend", "openai"])
