"""Every endpoint of the HTTP API on a tiny random model, streams parsed as a browser would."""

from __future__ import annotations

import json
import re

import pytest

import llmvis.analyses.attention
import llmvis.analyses.tokens  # noqa: F401
from llmvis import export
from llmvis.analyses.registry import VIEWS, ViewContext, compute
from llmvis.generation import generate
from llmvis.internals import Internals
from llmvis.trace import GenerationRequest, Trace
from server_helpers import client, make_app, parse_sse
from tiny_models import save_tiny_model, tiny_loaded

PROMPT = "The capital of France is"


def run_body(prompt: str = PROMPT, **params) -> dict:
    params = {"temperature": 0, "max_new_tokens": 8, **params}
    return {"mode": "completion", "prompt": prompt, "params": params}


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path, tiny_loaded("llama"))


@pytest.fixture
def c(app):
    with client(app) as c:
        yield c


def stream(c, body: dict, path: str = "/api/runs"):
    r = c.post(path, json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.content)


def test_health_and_model(c):
    health = c.get("/api/health").json()
    assert health["status"] == "ok" and health["model_loaded"] and health["model_state"] == "ready"
    assert health["running"] is False and health["waiting"] == 0
    model = c.get("/api/model").json()
    assert model["state"] == "ready" and model["model"]["name"] == "tiny-llama"
    assert model["model"]["layers"] == 2


def test_models_lists_loadable_sources(c):
    sources = c.get("/api/models").json()["sources"]
    assert all({"spec", "kind", "path"} <= set(s) for s in sources)


def test_without_a_model(tmp_path):
    with client(make_app(tmp_path)) as c:
        assert c.get("/api/health").json()["model_state"] == "none"
        assert c.get("/api/model").json() == {
            "state": "none",
            "model": None,
            "local": None,
            "local_hint": None,
            "loading": None,
            "last_error": None,
        }
        r = c.post("/api/runs", json=run_body())
        assert r.status_code == 503 and "no model is loaded" in r.json()["detail"]


def test_run_streams_start_tokens_done_and_is_saved(c):
    events = stream(c, run_body(max_new_tokens=6))
    kinds = [e.event for e in events]
    # the prompt's statistics come once, beside the tokens (whenever they are ready), before done
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("prompt_stats") == 1
    assert set(kinds[1:-1]) == {"token", "prompt_stats"}
    assert all(e.json()["type"] == e.event for e in events)
    start, done = events[0].json(), events[-1].json()
    assert "".join(t["text"] for t in start["prompt_tokens"]) == PROMPT
    prompt_stats = events[kinds.index("prompt_stats")].json()["stats"]
    assert len(prompt_stats) == len(start["prompt_tokens"]) and prompt_stats[0] is None
    assert all(0 < s["raw_prob"] <= 1 for s in prompt_stats[1:])
    tokens = [e.json()["token"] for e in events if e.event == "token"]
    assert len(tokens) == 6 and done["finish_reason"] == "length"
    assert [t["position"] for t in tokens] == list(range(len(start["prompt_tokens"]), len(start["prompt_tokens"]) + 6))
    assert done["run_id"] == start["run_id"] and done["text"] == "".join(t["text"] for t in tokens)
    saved = c.get(f"/api/runs/{done['run_id']}").json()  # saved before `done` was sent
    assert [t["id"] for t in saved["tokens"][saved["prompt_len"] :]] == [t["id"] for t in tokens]
    assert saved["tokens"][saved["prompt_len"]]["stats"] == tokens[0]["stats"]
    # the same request in-process gives the same tokens (greedy)
    request = GenerationRequest.model_validate(run_body(max_new_tokens=6))
    assert generate(tiny_loaded("llama"), request).ids == [t["id"] for t in saved["tokens"]]


def test_chat_mode_run(c):
    body = {
        "mode": "chat",
        "messages": [{"role": "user", "content": "hello"}],
        "params": {"temperature": 0.7, "max_new_tokens": 4, "seed": 1},
    }
    events = stream(c, body)
    assert events[-1].event == "done"
    roles = {t["role"] for t in events[0].json()["prompt_tokens"]}
    assert "user" in roles


def test_bad_requests_are_422_before_the_stream(c):
    r = c.post("/api/runs", json=run_body(max_new_tokens=600))
    assert r.status_code == 422 and r.headers["content-type"] == "application/json"
    message = r.json()["detail"][0]["msg"]
    assert "600" in message and "512" in message  # both numbers: asked and the context
    for bad in ({"temperature": 3}, {"top_k": 0}, {"top_p": 0}, {"max_new_tokens": 0}):
        assert c.post("/api/runs", json=run_body(**bad)).status_code == 422
    assert c.post("/api/runs", json={"mode": "completion", "prompt": ""}).status_code == 422
    assert c.post("/api/runs", content=b"not json", headers={"content-type": "application/json"}).status_code == 422
    assert c.get("/api/runs").json()["total"] == 0  # nothing was started


def test_list_rename_delete_restore(c):
    ids = [stream(c, run_body(prompt))[0].json()["run_id"] for prompt in ("about cats", "about dogs")]
    listed = c.get("/api/runs").json()
    assert [r["id"] for r in listed["runs"]] == ids[::-1] and listed["total"] == 2
    assert [r["id"] for r in c.get("/api/runs", params={"search": "cats"}).json()["runs"]] == ids[:1]
    assert len(c.get("/api/runs", params={"limit": 1}).json()["runs"]) == 1
    r = c.patch(f"/api/runs/{ids[0]}", json={"title": "Cats, renamed"})
    assert r.status_code == 200 and r.json()["title"] == "Cats, renamed"
    assert c.get(f"/api/runs/{ids[0]}").json()["title"] == "Cats, renamed"
    r = c.delete(f"/api/runs/{ids[0]}")
    assert r.status_code == 200 and r.json()["undo"] == f"/api/runs/{ids[0]}/restore"
    assert c.get(f"/api/runs/{ids[0]}").status_code == 404
    assert [r["id"] for r in c.get("/api/runs").json()["runs"]] == ids[1:]
    assert c.post(f"/api/runs/{ids[0]}/restore").json()["id"] == ids[0]
    assert c.get(f"/api/runs/{ids[0]}").status_code == 200
    for method, path in (
        ("GET", "/api/runs/nope"),
        ("PATCH", "/api/runs/nope"),
        ("DELETE", "/api/runs/nope"),
        ("POST", "/api/runs/nope/restore"),
    ):
        body = {"title": "x"} if method == "PATCH" else None
        assert c.request(method, path, json=body).status_code == 404
    assert c.get("/api/runs/bad%20id").status_code == 422
    assert c.patch(f"/api/runs/{ids[0]}", json={"title": ""}).status_code == 422


def test_views_list_and_typed_routes(c, app):
    views = c.get("/api/views").json()["views"]
    by_name = {v["name"]: v for v in views}
    assert set(by_name) == set(VIEWS)
    assert by_name["attention"]["needs_internals"] and "layer" in by_name["attention"]["params_schema"]["properties"]
    schema = app.openapi()
    for name, view in VIEWS.items():
        op = schema["paths"][f"/api/runs/{{run_id}}/views/{name}"]["get"]
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{view.result.__name__}"}
        assert {p["name"] for p in op["parameters"]} == {"run_id", *view.params.model_fields}

    run_id = stream(c, run_body())[0].json()["run_id"]
    trace = Trace.model_validate(c.get(f"/api/runs/{run_id}").json())
    loaded = tiny_loaded("llama")
    r = c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 1, "head": 0})
    assert r.status_code == 200
    expected = compute("attention", ViewContext(trace, loaded, Internals(loaded, trace.ids)), {"layer": 1, "head": 0})
    assert r.json() == json.loads(expected.model_dump_json())
    r = c.get(f"/api/runs/{run_id}/views/tokens")
    assert r.status_code == 200

    bad = c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 99})
    assert bad.status_code == 422 and "layer 99" in bad.json()["detail"][0]["msg"]
    assert c.get(f"/api/runs/{run_id}/views/attention", params={"layer": "x"}).status_code == 422
    assert c.get(f"/api/runs/{run_id}/views/no_such_view").status_code == 404
    assert c.get("/api/runs/unknown/views/tokens").status_code == 404


def test_views_computed_are_logged_with_their_time(c, caplog):
    """`llmvis serve --log-views` shows what each view cost and how long it waited for the model."""
    from llmvis.cli import build_parser, cmd_serve  # noqa: F401  (the flag exists)

    assert build_parser().parse_args(["serve", "--log-views"]).log_views
    run_id = stream(c, run_body())[0].json()["run_id"]
    with caplog.at_level("INFO", logger="llmvis.views"):
        assert c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 1}).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "llmvis.views"]
    views = [line for line in lines if line.startswith("view ")]  # (beside the summaries computed ahead)
    assert len(views) == 1 and views[0].startswith("view attention {'layer': 1}: ")
    assert all(line.startswith(("view ", "summary ahead for ")) for line in lines)
    took, waited = (float(w) for w in re.findall(r"(\d+\.\d+) s", views[0]))
    assert took >= 0 and waited >= 0


def test_view_needing_another_model_is_409(c, app):
    run_id = stream(c, run_body())[0].json()["run_id"]
    store = app.state.store
    trace = store.get(run_id)
    other = trace.model_copy(update={"id": "othermodel", "model": trace.model.model_copy(update={"name": "other"})})
    store.save(other)
    r = c.get("/api/runs/othermodel/views/attention")
    assert r.status_code == 409 and "other" in r.json()["detail"]
    assert c.get("/api/runs/othermodel/views/tokens").status_code == 200  # token views need no weights


def test_export_json_and_csv_round_trip(c):
    run_id = stream(c, run_body())[0].json()["run_id"]
    view = c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 0}).json()
    r = c.get(f"/api/runs/{run_id}/export.json")
    assert r.status_code == 200
    bundle = export.read_bundle(r.content)
    assert bundle.trace == Trace.model_validate(c.get(f"/api/runs/{run_id}").json())
    assert [(v.view, v.params["layer"]) for v in bundle.views] == [("attention", 0)]
    assert bundle.views[0].result == view
    r = c.get(f"/api/runs/{run_id}/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text == export.stats_csv(bundle.trace)
    assert c.get("/api/runs/nope/export.json").status_code == 404
    assert c.get("/api/runs/nope/export.csv").status_code == 404


def test_report_html_is_a_download_with_its_own_csp(c, tmp_path, monkeypatch):
    run_id = stream(c, run_body())[0].json()["run_id"]
    monkeypatch.setattr(export, "REPORT_TEMPLATE", tmp_path / "missing.html")
    r = c.get(f"/api/runs/{run_id}/report.html")
    assert r.status_code == 503 and "make web" in r.json()["detail"]
    template = tmp_path / "report.html"
    template.write_text(
        '<html><head><script type="module">go()</script></head><body>'
        '<script type="application/json" id="llmvis-data"></script></body></html>'
    )
    monkeypatch.setattr(export, "REPORT_TEMPLATE", template)
    r = c.get(f"/api/runs/{run_id}/report.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-disposition"] == f'attachment; filename="llmvis-{run_id}.html"'
    assert r.headers["content-security-policy"] == export.report_csp(r.text)  # not the app's CSP
    assert f'"id":"{run_id}"' in r.text
    assert c.get("/api/runs/nope/report.html").status_code == 404


def test_fork_equals_a_fresh_run_with_the_same_forced_prefix(c):
    events = stream(c, run_body(max_new_tokens=8))
    parent = Trace.model_validate(c.get(f"/api/runs/{events[0].json()['run_id']}").json())
    position = parent.prompt_len + 3
    alternative = parent.tokens[position].stats.top[1].id  # the model's second choice there
    events = stream(c, {"position": position, "token_id": alternative}, f"/api/runs/{parent.id}/fork")
    assert events[-1].event == "done"
    child = Trace.model_validate(c.get(f"/api/runs/{events[-1].json()['run_id']}").json())
    assert child.parent_id == parent.id and child.fork_position == position
    assert child.ids[:position] == parent.ids[:position] and child.ids[position] == alternative
    forced = [*parent.ids[parent.prompt_len : position], alternative]
    fresh = generate(tiny_loaded("llama"), parent.request.model_copy(update={"forced_tokens": forced}))
    assert child.ids == fresh.ids
    # new params apply to the continuation
    events = stream(
        c,
        {"position": position, "token_id": alternative, "params": {"temperature": 0, "max_new_tokens": 2}},
        f"/api/runs/{parent.id}/fork",
    )
    # the kept and forced tokens come with `start` (kind "generated"), then 2 new token events
    start_tokens = events[0].json()["prompt_tokens"]
    assert [t["id"] for t in start_tokens] == child.ids[: position + 1]
    assert [t["kind"] for t in start_tokens[parent.prompt_len :]] == ["generated"] * (position + 1 - parent.prompt_len)
    assert len([e for e in events if e.event == "token"]) == 2


def test_fork_refusals(c):
    parent_id = stream(c, run_body())[0].json()["run_id"]
    parent = c.get(f"/api/runs/{parent_id}").json()
    assert c.post("/api/runs/nope/fork", json={"position": 5, "token_id": 1}).status_code == 404
    r = c.post(f"/api/runs/{parent_id}/fork", json={"position": 0, "token_id": 1})
    assert r.status_code == 422 and "forks start at" in r.json()["detail"][0]["msg"]
    r = c.post(f"/api/runs/{parent_id}/fork", json={"position": parent["prompt_len"], "token_id": 10**6})
    assert r.status_code == 422 and "vocabulary" in r.json()["detail"][0]["msg"]


def test_load_model_streams_progress_and_swaps(c, tmp_path):
    directory = save_tiny_model(tmp_path / "tiny-qwen2", "qwen2")
    r = c.post("/api/model/load", json={"spec": str(directory), "device": "cpu", "dtype": "float32"})
    assert r.status_code == 200
    events = parse_sse(r.content)
    assert events[-1].event == "done" and {e.event for e in events[:-1]} <= {"progress"}
    assert events[-1].json()["model"]["model_type"] == "qwen2"
    model = c.get("/api/model").json()
    assert model["state"] == "ready" and model["model"]["name"] == "tiny-qwen2"
    assert stream(c, run_body())[-1].event == "done"


def test_load_model_refusals_keep_the_old_model(c, tmp_path):
    r = c.post("/api/model/load", json={"spec": str(tmp_path / "missing")})
    assert r.status_code == 400 and "no such model path" in r.json()["detail"]
    (tmp_path / "empty").mkdir()
    r = c.post("/api/model/load", json={"spec": str(tmp_path / "empty")})
    assert r.status_code == 400 and "config.json" in r.json()["detail"]
    r = c.post("/api/model/load", json={"spec": "smollm2", "trust_remote_code": True})
    assert r.status_code == 403 and "--trust-remote-code" in r.json()["detail"]
    assert c.post("/api/model/load", json={"spec": "x", "device": "gpu; rm"}).status_code == 422
    # a directory that resolves but fails to load: the stream ends with `error`
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    events = parse_sse(c.post("/api/model/load", json={"spec": str(broken)}).content)
    assert events[-1].event == "error" and events[-1].json()["message"]
    model = c.get("/api/model").json()
    assert model["model"]["name"] == "tiny-llama" and model["last_error"]
    assert stream(c, run_body())[-1].event == "done"


def test_openapi_module_writes_the_schema(tmp_path):
    from llmvis.server.openapi import main

    out = tmp_path / "schema.json"
    assert main([str(out)]) == 0
    schema = json.loads(out.read_text())
    assert "/api/runs" in schema["paths"] and "/api/runs/{run_id}/views/tokens" in schema["paths"]
    for name in ("StartEvent", "TokenEvent", "DoneEvent", "ErrorEvent", "Trace", "RunList"):
        assert name in schema["components"]["schemas"]
