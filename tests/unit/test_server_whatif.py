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
