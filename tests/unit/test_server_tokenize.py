"""GET /api/tokenize and forking with typed text (several forced tokens), on a tiny random model."""

from __future__ import annotations

import pytest

from llmvis.generation import generate
from llmvis.tokens import Labeler
from llmvis.trace import Trace
from server_helpers import client, make_app, parse_sse
from tiny_models import tiny_loaded


@pytest.fixture
def c(tmp_path):
    with client(make_app(tmp_path, tiny_loaded("llama"))) as c:
        yield c


def stream(c, path: str, body: dict) -> list:
    r = c.post(path, json=body)
    assert r.status_code == 200, r.text
    return parse_sse(r.content)


def test_tokenize_uses_the_models_tokenizer_without_special_tokens(c):
    tok = tiny_loaded("llama").tokenizer
    text = " Paris, France"
    r = c.get("/api/tokenize", params={"text": text})
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    expected = tok.encode(text, add_special_tokens=False)
    assert [t["id"] for t in tokens] == expected and len(expected) > 1
    assert tok.bos_token_id not in expected
    label = Labeler(tok)
    assert [t["label"] for t in tokens] == [label(i) for i in expected]
    assert tok.decode([t["id"] for t in tokens]).strip() == text.strip()


@pytest.mark.parametrize("query", [{"text": ""}, {"text": "x" * 201}, {}])
def test_tokenize_refuses_empty_missing_or_long_text(c, query):
    r = c.get("/api/tokenize", params=query)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "text"]


def test_tokenize_without_a_model_is_503(tmp_path):
    with client(make_app(tmp_path)) as c:
        r = c.get("/api/tokenize", params={"text": "hello"})
        assert r.status_code == 503 and "no model is loaded" in r.json()["detail"]


def test_fork_with_several_typed_tokens_forces_all_of_them(c):
    events = stream(
        c,
        "/api/runs",
        {"mode": "completion", "prompt": "The capital of France is", "params": {"temperature": 0, "max_new_tokens": 8}},
    )
    parent = Trace.model_validate(c.get(f"/api/runs/{events[0].json()['run_id']}").json())
    typed = [t["id"] for t in c.get("/api/tokenize", params={"text": " Paris, France"}).json()["tokens"]]
    assert len(typed) >= 3
    position = parent.prompt_len + 2
    body = {"position": position, "token_ids": typed, "params": {"temperature": 0, "max_new_tokens": 4}}
    events = stream(c, f"/api/runs/{parent.id}/fork", body)
    assert events[-1].event == "done"
    child = Trace.model_validate(c.get(f"/api/runs/{events[-1].json()['run_id']}").json())
    assert child.parent_id == parent.id and child.fork_position == position
    end = position + len(typed)
    assert child.ids[:position] == parent.ids[:position] and child.ids[position:end] == typed
    assert len(child.ids) == end + 4 and child.params.max_new_tokens == 4  # the new params
    # the same as a fresh run with that forced prefix (greedy: identical tokens)
    forced = [*parent.ids[parent.prompt_len : position], *typed]
    request = parent.request.model_copy(update={"forced_tokens": forced, "params": child.params})
    assert child.ids == generate(tiny_loaded("llama"), request).ids


def test_fork_takes_token_id_or_token_ids(c):
    events = stream(
        c, "/api/runs", {"mode": "completion", "prompt": "Hello", "params": {"temperature": 0, "max_new_tokens": 4}}
    )
    parent = c.get(f"/api/runs/{events[0].json()['run_id']}").json()
    path, position = f"/api/runs/{parent['id']}/fork", parent["prompt_len"]
    for body in (
        {"position": position},
        {"position": position, "token_id": 5, "token_ids": [5]},
        {"position": position, "token_ids": []},
    ):
        assert c.post(path, json=body).status_code == 422, body
    r = c.post(path, json={"position": position, "token_ids": [5, 10**6]})
    assert r.status_code == 422 and "vocabulary" in r.json()["detail"][0]["msg"]
    assert r.json()["detail"][0]["loc"] == ["body", "token_ids"]
