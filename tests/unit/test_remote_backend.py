"""The remote backend against a scripted engine: requests, events, ids, and every failure path."""

from __future__ import annotations

import logging
import math
import threading

import pytest

from fake_engine import FakeEngine, chunk
from llmvis.generation import GenerationError, SamplingParams, StartEvent, TokenEvent
from llmvis.models.errors import ModelLoadError
from llmvis.remote.client import EngineClient, EngineError, normalise_base_url
from llmvis.remote.generate import RemoteGeneration
from llmvis.remote.model import connect_remote
from llmvis.trace import GenerationRequest
from server_helpers import client, make_app, parse_sse
from tiny_models import save_tiny_model
from trace_helpers import cancel_after


@pytest.fixture
def engine():
    fake = FakeEngine()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("tok") / "tiny", "llama"))


def _request(**params) -> GenerationRequest:
    return GenerationRequest(
        mode="completion",
        prompt="hello world",
        params=SamplingParams(**{"temperature": 0, "max_new_tokens": 4, "top_n": 2, **params}),
    )


def _pieces(remote, words):
    """Stream pieces for `words`: each the chosen token with one rival, as an engine sends them."""
    out = []
    for word in words:
        out.append((word, math.log(0.6), {word: math.log(0.6), "zz": math.log(0.3)}))
    return out


def test_base_urls_are_normalised():
    assert normalise_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert normalise_base_url("h:8000") == "http://h:8000/v1"
    with pytest.raises(EngineError):
        normalise_base_url("ftp://h/v1")


def test_connect_names_the_served_models_and_needs_a_local_tokenizer(engine, tokenizer_dir):
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir)
    assert remote.engine_model == "fake-model" and remote.info.source == "remote"
    assert remote.info.path == engine.base_url and remote.info.tokenizer_hash
    with pytest.raises(ModelLoadError, match=r"does not serve 'other'.*fake-model"):
        connect_remote(engine.base_url, "other", tokenizer=tokenizer_dir)
    with pytest.raises(ModelLoadError, match="tokenizer"):
        connect_remote(engine.base_url, "fake-model", tokenizer="/nonexistent/dir")
    with pytest.raises(ModelLoadError, match="cannot reach the engine"):
        connect_remote("http://127.0.0.1:9/v1", tokenizer=tokenizer_dir)


def test_a_run_streams_start_tokens_done_with_the_engines_numbers(engine, tokenizer_dir):
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir, extra_body={"repeat_penalty": 1})
    words = _single_token_words(remote.tokenizer, 3)
    engine.script = lambda h: engine.stream(h, [chunk(_pieces(remote, [w])) for w in words] + [chunk([], "length")])
    generation = RemoteGeneration(remote, _request(top_k=5, stop=["\n"]))
    events = list(generation)
    assert isinstance(events[0], StartEvent) and events[-1].type == "done"
    tokens = [e.token for e in events if isinstance(e, TokenEvent)]
    assert [t.text for t in tokens] == words and generation.trace.text == "".join(words)
    for t in tokens:
        assert t.id == remote.tokenizer.encode(t.text, add_special_tokens=False)[0]
        assert abs(t.stats.raw_prob - 0.6) < 1e-12 and t.stats.rank == 0
        assert abs(t.stats.missing_mass - 0.1) < 1e-9
        assert t.stats.raw_entropy <= t.stats.entropy_upper
    body = engine.requests[-1][1]
    assert body["prompt"] == "hello world" and body["temperature"] == 0 and body["logprobs"] == 2
    assert body["top_k"] == 5 and body["stop"] == ["\n"] and body["repeat_penalty"] == 1
    assert body["stream"] is True and body["seed"] == generation.trace.params.seed
    assert generation.trace.finish_reason == "length"


def test_token_ids_sent_by_the_engine_are_used_as_they_are(engine, tokenizer_dir):
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir)
    engine.script = lambda h: engine.stream(
        h, [chunk([("token_id:42", -0.1, {"token_id:42": -0.1, "token_id:7": -2.5})], "stop")]
    )
    trace = _run(remote, _request())
    token = trace.generated[0]
    assert token.id == 42 and token.text == remote.tokenizer.decode([42])
    assert [c.id for c in token.stats.top] == [42, 7]
    assert trace.finish_reason == "eos"


def test_prompt_pieces_keep_characters_split_over_byte_tokens_whole(engine, tokenizer_dir):
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir)
    engine.script = lambda h: engine.stream(h, [chunk([], "length")])
    request = _request().model_copy(update={"prompt": "hello 你好 🙂"})
    start = next(iter(RemoteGeneration(remote, request)))
    pieces = [t.text for t in start.prompt_tokens]
    assert "" in pieces  # a token holding part of a character: they really are split
    assert "".join(pieces) == "hello 你好 🙂" and not any("\ufffd" in p for p in pieces)


def test_forks_send_the_forced_tokens_as_text(engine, tokenizer_dir):
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir)
    forced = remote.tokenizer.encode(" forced", add_special_tokens=False)
    engine.script = lambda h: engine.stream(h, [chunk([], "length")])
    request = _request().model_copy(update={"forced_tokens": forced})
    trace = _run(remote, request)
    assert engine.requests[-1][1]["prompt"] == "hello world" + remote.tokenizer.decode(forced)
    assert trace.ids[trace.prompt_len :] == forced


def test_a_fork_inherits_its_parents_statistics_up_to_the_new_token(engine, tokenizer_dir):
    """The engine returns no statistics for the text it is sent; the parent saw the same prefix."""
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir)
    w = _single_token_words(remote.tokenizer, 4)

    def step(word):
        return chunk([(word, math.log(0.6), {word: math.log(0.6), w[3]: math.log(0.3)})])

    engine.script = lambda h: engine.stream(h, [step(w[0]), step(w[1]), step(w[2]), chunk([], "length")])
    parent = _run(remote, _request(max_new_tokens=3))
    ids = remote.token_map.id_of
    forced = [ids(w[0]), ids(w[3])]  # keep the first token, then the parent's runner-up
    fork = RemoteGeneration(
        remote, _request(max_new_tokens=3).model_copy(update={"forced_tokens": forced}), parent=parent
    )
    for _ in fork:
        pass
    kept, new = fork.trace.tokens[fork.trace.prompt_len : fork.trace.prompt_len + 2]
    assert kept.stats == parent.generated[0].stats
    assert new.id == ids(w[3]) and new.stats.rank == 1 and new.stats.raw_prob == pytest.approx(0.3)
    assert new.stats.gap_to_top1 == pytest.approx(math.log(2))
    assert new.stats.entropy_upper == parent.generated[1].stats.entropy_upper
    assert all(t.stats is None for t in fork.trace.tokens[: fork.trace.prompt_len])
    typed = RemoteGeneration(remote, _request().model_copy(update={"forced_tokens": [ids(w[2])] * 2}), parent=parent)
    first, second = next(typed).prompt_tokens[-2:]  # w[2] is no candidate at the first position
    assert first.stats is None and second.stats is None


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            lambda e, h: e.json(h, 400, {"error": {"message": "logprobs must be <= 5"}}),
            r"refused the request \(HTTP 400\): logprobs must be <= 5",
        ),
        (
            lambda e, h: e.stream(h, [chunk([(" a", -0.1, {" a": -0.1})])], done=False),
            "closed the connection before the completion finished",
        ),
        (lambda e, h: e.stream(h, [{"error": {"message": "out of memory"}}]), "reported an error: out of memory"),
        (
            lambda e, h: e.stream(h, [{"choices": [{"text": "x", "logprobs": None, "finish_reason": None}]}]),
            "without logprobs",
        ),
        (lambda e, h: e.stream(h, [chunk([(" a", -0.1, {" a": -0.1})])], delay=2.0), "timed out"),
    ],
    ids=["http-400", "dropped", "error-chunk", "no-logprobs", "timeout"],
)
def test_engine_failures_become_one_line_generation_errors(engine, tokenizer_dir, script, message):
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir)
    remote.client = EngineClient(engine.base_url, timeout=0.5)
    engine.script = lambda h: script(engine, h)
    generation = RemoteGeneration(remote, _request())
    with pytest.raises(GenerationError, match=message):
        list(generation)
    assert generation.trace.finish_reason == "error" and "\n" not in generation.trace.error


def test_an_engine_that_allows_fewer_logprobs_is_asked_again_within_its_limit(engine, tokenizer_dir):
    """vLLM refuses more than --max-logprobs (20 by default); OpenAI more than 5."""
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir)

    def limited(h):
        asked = engine.requests[-1][1]["logprobs"]
        if asked > 5:
            engine.json(h, 400, {"error": {"message": f"logprobs must be at most 5, got {asked}"}})
        else:
            engine.stream(h, [chunk(_pieces(remote, [" a"])), chunk([], "length")])

    engine.script = limited
    trace = _run(remote, _request(top_n=30))
    assert [body["logprobs"] for _, body in engine.requests[-3:]] == [30, 20, 5]
    assert remote.max_logprobs == 5 and trace.finish_reason == "length" and len(trace.generated) == 1
    _run(remote, _request(top_n=30))
    assert engine.requests[-1][1]["logprobs"] == 5  # remembered: asked once
    engine.script = lambda h: engine.json(h, 400, {"error": {"message": "temperature must be >= 0"}})
    with pytest.raises(GenerationError, match="temperature"):  # other refusals are not retried
        _run(remote, _request())


def test_cancel_closes_the_connection(engine, tokenizer_dir):
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir)
    closed = threading.Event()

    def slow(h):
        engine.stream(h, [chunk(_pieces(remote, [" a"])) for _ in range(50)], delay=0.05)
        closed.set()

    engine.script = slow
    cancel = threading.Event()
    generation = RemoteGeneration(remote, _request(max_new_tokens=50), cancel)
    cancel_after(generation, cancel, 2)
    assert generation.trace.finish_reason == "cancelled" and len(generation.trace.generated) <= 3
    assert closed.wait(5), "the engine's stream ended once the client closed it"


def test_the_api_key_is_sent_and_never_shown(engine, tokenizer_dir, monkeypatch, caplog):
    secret = "sk-very-secret-123456"
    monkeypatch.setenv("LLMVIS_TEST_KEY", secret)
    with pytest.raises(ModelLoadError, match="LLMVIS_MISSING_KEY"):
        connect_remote(engine.base_url, tokenizer=tokenizer_dir, api_key_env="LLMVIS_MISSING_KEY")
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir, api_key_env="LLMVIS_TEST_KEY")
    assert engine.requests[-1][0].get("Authorization") == f"Bearer {secret}"
    engine.script = lambda h: engine.json(h, 401, {"error": {"message": "bad key"}})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(GenerationError) as failure:
        _run(remote, _request())
    assert secret not in str(failure.value) and secret not in repr(remote) and secret not in caplog.text
    assert secret not in remote.info.model_dump_json()


def test_the_server_streams_remote_runs_and_reports_engine_errors(engine, tokenizer_dir, tmp_path):
    remote = connect_remote(engine.base_url, tokenizer=tokenizer_dir)
    engine.script = lambda h: engine.stream(h, [chunk(_pieces(remote, [" a", " b"])), chunk([], "length")])
    app = make_app(tmp_path)
    app.state.engine.remote = remote
    body = {"mode": "completion", "prompt": "hello", "params": {"temperature": 0, "max_new_tokens": 2, "top_n": 2}}
    with client(app) as c:
        assert c.get("/api/model").json()["model"]["source"] == "remote"
        events = parse_sse(c.post("/api/runs", json=body).content)
        assert [e.event for e in events] == ["start", "token", "token", "done"]
        run_id = events[0].json()["run_id"]
        saved = c.get(f"/api/runs/{run_id}").json()
        assert saved["model"]["source"] == "remote" and saved["finish_reason"] == "length"
        assert c.get(f"/api/runs/{run_id}/views/tokens").status_code == 200
        needs = c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 0})
        assert needs.status_code == 409 and "local copy" in needs.json()["detail"]
        engine.script = lambda h: engine.json(h, 503, {"detail": "engine overloaded"})
        events = parse_sse(c.post("/api/runs", json=body).content)
        assert events[-1].event == "error" and "engine overloaded" in events[-1].json()["message"]
        assert c.get("/api/health").json()["status"] == "ok"


def _single_token_words(tokenizer, n):
    """Pieces that the tokenizer encodes as exactly the token that decodes to them."""
    words = []
    for i in range(len(tokenizer) - 1, 0, -1):
        text = tokenizer.decode([i])
        if len(text) > 1 and tokenizer.encode(text, add_special_tokens=False) == [i]:
            words.append(text)
        if len(words) == n:
            return words
    raise AssertionError("no single-token words")


def _run(remote, request):
    generation = RemoteGeneration(remote, request)
    for _ in generation:
        pass
    return generation.trace
