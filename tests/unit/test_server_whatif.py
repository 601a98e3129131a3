"""POST /api/runs/{id}/whatif: ablate and look through the server, and its refusals."""

from __future__ import annotations

from server_helpers import client, make_app, parse_sse
from tiny_models import tiny_loaded

BODY = {
    "mode": "completion",
    "prompt": "The capital of France is Paris. The capital of Italy is",
    "params": {"temperature": 0, "max_new_tokens": 6},
}


def start(c, prompt: str = BODY["prompt"]) -> str:
    events = parse_sse(c.post("/api/runs", json={**BODY, "prompt": prompt}).content)
    assert events[-1].event == "done", events[-1].data
    return events[-1].json()["run_id"]


def test_what_if_answers_and_refuses_with_reasons(tmp_path):
    with client(make_app(tmp_path, tiny_loaded("llama"))) as c:
        run_id = start(c)
        same = c.post(f"/api/runs/{run_id}/whatif", json={"interventions": []})
        assert same.status_code == 200, same.text
        body = same.json()
        assert abs(body["before"]["prob"] - body["after"]["prob"]) < 1e-4 and max(body["kl"]) < 1e-4
        zero = {"site": "attn_out", "layer": 1, "positions": [3, 4]}
        changed = c.post(f"/api/runs/{run_id}/whatif", json={"interventions": [zero], "foil": 5, "top_n": 3})
        assert changed.status_code == 200, changed.text
        assert changed.json()["interventions"][0]["site"] == "attn_out" and len(changed.json()["after"]["top"]) == 3
        # patching from a run of another length, a layer beyond the model, an unknown run
        other = start(c, "Hello")
        bad = [
            ({"site": "residual", "layer": 0, "op": "patch", "source_run": other}, "same length"),
            ({"site": "mlp_out", "layer": 7}, "layer 7 is beyond the model"),
            ({"site": "head", "layer": 0}, "needs `head`"),
        ]
        for spec, message in bad:
            r = c.post(f"/api/runs/{run_id}/whatif", json={"interventions": [spec]})
            assert r.status_code == 422 and message in r.text, (spec, r.text)
        assert c.post("/api/runs/nope/whatif", json={"interventions": []}).status_code in (404, 422)
        assert c.get(f"/api/runs/{run_id}").status_code == 200  # still serving
        saved = [v["view"] for v in c.get(f"/api/runs/{run_id}/export.json").json()["views"]]
        assert saved == ["whatif", "whatif"]  # the two that answered


def test_a_sweep_streams_progress_then_its_result_and_saves_it(tmp_path):
    with client(make_app(tmp_path, tiny_loaded("llama"))) as c:
        run_id = start(c)
        ids = c.get(f"/api/runs/{run_id}").json()["tokens"]
        corrupted = [t["id"] for t in ids]
        corrupted[3] = (corrupted[3] + 11) % 200
        r = c.post(f"/api/runs/{run_id}/sweep", json={"corrupted_tokens": corrupted, "sites": ["residual", "heads"]})
        events = parse_sse(r.content)
        kinds = [e.event for e in events]
        assert kinds[-1] == "result", events[-1].data
        progress = [e.json() for e in events if e.event == "progress"]
        assert progress and progress[-1]["done"] == progress[-1]["total"]
        result = events[-1].json()
        assert [m["site"] for m in result["maps"]] == ["residual", "heads"]
        assert abs(result["maps"][0]["exact"][0][3] - 1.0) < 1e-3  # the edited token's own cell
        saved = [v["view"] for v in c.get(f"/api/runs/{run_id}/export.json").json()["views"]]
        assert saved == ["sweep"]
        # told, not failed: no corrupted run, another length
        for body, message in (({}, "needs a corrupted run"), ({"corrupted_tokens": corrupted[:-1]}, "same length")):
            events = parse_sse(c.post(f"/api/runs/{run_id}/sweep", json=body).content)
            assert events[-1].event == "error" and message in events[-1].data, events[-1].data
        assert c.post(f"/api/runs/{run_id}/sweep", json={"mode": "sideways"}).status_code == 422
        assert c.post("/api/runs/nope/sweep", json={}).status_code in (404, 422)


def test_a_fork_generated_under_an_intervention_streams_and_keeps_its_plan(tmp_path):
    with client(make_app(tmp_path, tiny_loaded("llama"))) as c:
        run_id = start(c)
        parent = c.get(f"/api/runs/{run_id}").json()
        position = parent["prompt_len"] + 1
        plan = [{"site": "head", "layer": 1, "head": 0}, {"site": "mlp_out", "layer": 0, "op": "scale", "factor": 3.0}]
        events = parse_sse(
            c.post(f"/api/runs/{run_id}/fork", json={"position": position, "interventions": plan}).content
        )
        assert events[-1].event == "done", events[-1].data
        fork = c.get(f"/api/runs/{events[-1].json()['run_id']}").json()
        assert [i["site"] for i in fork["request"]["interventions"]] == ["head", "mlp_out"]
        assert [t["id"] for t in fork["tokens"][:position]] == [t["id"] for t in parent["tokens"][:position]]
        bad = c.post(
            f"/api/runs/{run_id}/fork",
            json={
                "position": position,
                "interventions": [{"site": "mlp_out", "layer": 0, "op": "patch", "source_run": run_id}],
            },
        )
        assert bad.status_code == 422 and "no run to read from" in bad.text
        assert c.post(f"/api/runs/{run_id}/fork", json={"position": position}).status_code == 422  # nothing to do


def test_a_steering_vector_from_a_contrast_pair_steers_a_fork(tmp_path):
    loaded = tiny_loaded("llama")
    with client(make_app(tmp_path, loaded)) as c:
        r = c.post("/api/steering", json={"layer": 1, "positive": "hello hello hello", "negative": "1 2 3 4"})
        assert r.status_code == 200, r.text
        body = r.json()
        from llmvis.internals import Internals

        mean = [
            Internals(loaded, loaded.tokenizer.encode(t, add_special_tokens=False)).residual(1).mean(0)
            for t in ("hello hello hello", "1 2 3 4")
        ]
        expected = (mean[0] - mean[1]).tolist()
        assert len(body["vector"]) == len(expected)
        assert max(abs(a - b) for a, b in zip(body["vector"], expected, strict=True)) < 1e-3 * (1 + body["norm"])
        run_id = start(c)
        position = c.get(f"/api/runs/{run_id}").json()["prompt_len"]
        steer = {"site": "residual", "layer": 1, "op": "add", "vector": body["vector"], "factor": 4.0}
        events = parse_sse(
            c.post(f"/api/runs/{run_id}/fork", json={"position": position, "interventions": [steer]}).content
        )
        assert events[-1].event == "done", events[-1].data
        assert c.post("/api/steering", json={"layer": 99, "positive": "a", "negative": "b"}).status_code == 422


def test_a_steering_vector_from_saved_runs_is_their_mean_residual_difference(tmp_path):
    loaded = tiny_loaded("llama")
    with client(make_app(tmp_path, loaded)) as c:
        positive, negative = start(c, "hello hello hello"), start(c, "1 2 3 4")
        r = c.post("/api/steering", json={"layer": 2, "positive_run": positive, "negative": "1 2 3 4"})
        assert r.status_code == 200, r.text
        from llmvis.internals import Internals

        ids = [t["id"] for t in c.get(f"/api/runs/{positive}").json()["tokens"]]  # prompt and reply
        text = loaded.tokenizer.encode("1 2 3 4", add_special_tokens=False)
        expected = Internals(loaded, ids).residual(2).mean(0) - Internals(loaded, text).residual(2).mean(0)
        body = r.json()
        assert body["positive_tokens"] == len(ids) and body["negative_tokens"] == len(text)
        assert max(abs(a - b) for a, b in zip(body["vector"], expected.tolist(), strict=True)) < 1e-3
        both_runs = c.post("/api/steering", json={"layer": 2, "positive_run": positive, "negative_run": negative})
        assert both_runs.status_code == 200 and both_runs.json()["negative_tokens"] > 4
        # each side exactly once; an unknown run
        for bad, status, message in (
            ({"positive": "a", "positive_run": positive, "negative": "b"}, 422, "not both"),
            ({"negative": "b"}, 422, "give either `positive`"),
            ({"positive_run": "nope", "negative": "b"}, 404, "nope"),
        ):
            r = c.post("/api/steering", json={"layer": 1, **bad})
            assert r.status_code == status and message in r.text, (bad, r.text)
