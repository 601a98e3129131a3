"""The server on the bundled SmolLM2: real text in Chinese and emoji, fork, views, `serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import llmvis.analyses.attention  # noqa: F401  (registers the views used below)
from llmvis.generation import generate
from llmvis.trace import Trace
from processes import free_port
from server_helpers import client, make_app, parse_sse

pytestmark = pytest.mark.integration


def chat(text: str, **params) -> dict:
    return {
        "mode": "chat",
        "messages": [{"role": "user", "content": text}],
        "params": {"temperature": 0, "max_new_tokens": 24, **params},
    }


@pytest.fixture
def c(tmp_path, bundled):
    with client(make_app(tmp_path, bundled)) as c:
        yield c


@pytest.mark.parametrize("text", ["用中文介绍一下巴黎。", "Reply with three emoji: 🙂🚀🇫🇷"])
def test_chinese_and_emoji_stream_without_replacement_characters(c, text):
    raw = c.post("/api/runs", json=chat(text)).content
    events = parse_sse(raw.decode("utf-8").encode())  # strict UTF-8 on the wire
    assert events[-1].event == "done"
    prompt = "".join(t["text"] for t in events[0].json()["prompt_tokens"])
    pieces = [e.json()["token"]["text"] for e in events if e.event == "token"]
    assert text in prompt
    assert "\ufffd" not in prompt + "".join(pieces)
    assert events[-1].json()["text"] == "".join(pieces)


def test_fork_on_the_bundled_model_equals_a_forced_fresh_run(c, bundled):
    run_id = parse_sse(c.post("/api/runs", json=chat("The capital of France is", max_new_tokens=10)).content)[
        -1
    ].json()["run_id"]
    parent = Trace.model_validate(c.get(f"/api/runs/{run_id}").json())
    position = parent.prompt_len + 2
    token_id = parent.tokens[position].stats.top[1].id
    events = parse_sse(c.post(f"/api/runs/{run_id}/fork", json={"position": position, "token_id": token_id}).content)
    child = Trace.model_validate(c.get(f"/api/runs/{events[-1].json()['run_id']}").json())
    forced = [*parent.ids[parent.prompt_len : position], token_id]
    fresh = generate(bundled, parent.request.model_copy(update={"forced_tokens": forced}))
    assert child.ids == fresh.ids and child.parent_id == parent.id


def test_views_on_the_bundled_model(c):
    run_id = parse_sse(c.post("/api/runs", json=chat("Hi!", max_new_tokens=8)).content)[-1].json()["run_id"]
    r = c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 29, "head": "mean"})
    assert r.status_code == 200
    assert c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 30}).status_code == 422


def test_serve_prints_the_url_and_answers(tmp_path):
    port = free_port()
    code = (
        "from llmvis.config import Settings; from llmvis.server.run import serve; "
        f"serve(Settings(port={port}, data_dir={str(tmp_path)!r}))"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    try:
        line = proc.stdout.readline()  # blocks until the model is loaded and the URL printed
        assert line.startswith(f"llmvis is running at http://127.0.0.1:{port}/"), line
        deadline = time.time() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health").json()
                break
            except httpx.ConnectError:
                assert time.time() < deadline
                time.sleep(0.1)
        assert health["model_loaded"] and health["model_state"] == "ready"
        model = httpx.get(f"http://127.0.0.1:{port}/api/model").json()["model"]
        assert model["name"] == "SmolLM2-135M-Instruct"
        # a second server on the same named port fails with a clear message
        second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 2 and f"port {port} is already in use" in second.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
