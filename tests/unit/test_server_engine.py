"""The engine under load and failure: many clients, disconnects, exceptions, OOM, restarts.

Concurrency and disconnects run against a real uvicorn server in a thread, since an
in-process ASGI client neither runs requests in parallel nor drops connections.
"""

from __future__ import annotations

import functools
import threading
import time

import httpx
import pytest
import torch

import llmvis.analyses.attention
import llmvis.analyses.tokens  # noqa: F401
from server_helpers import client, live_server, make_app, parse_sse
from tiny_models import tiny_loaded

PROMPT = "The capital of France is"


def body(prompt: str = PROMPT, **params) -> dict:
    return {
        "mode": "completion",
        "prompt": prompt,
        "params": {"temperature": 0.8, "seed": 0, "max_new_tokens": 8, **params},
    }


def wait_for(predicate, timeout: float = 30.0, every: float = 0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def test_twenty_clients_at_once(tmp_path, monkeypatch):
    loaded = tiny_loaded("llama")
    app = make_app(tmp_path, loaded, queue_size=4)
    slow_steps(monkeypatch, loaded.model)  # a run outlasts the arrival of all 20, on any machine
    results: list[tuple[int, httpx.Response | None, list]] = []
    lock = threading.Lock()
    go = threading.Barrier(20)

    def one(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            go.wait()
            r = c.post("/api/runs", json=body(f"client {i}", max_new_tokens=40))
            events = parse_sse(r.content) if r.status_code == 200 else []
            with lock:
                results.append((r.status_code, r, events))

    with live_server(app) as url:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a client hung"
        with httpx.Client(base_url=url) as c:
            saved = c.get("/api/runs", params={"limit": 100}).json()
            health = c.get("/api/health").json()
    codes = sorted(code for code, _, _ in results)
    assert len(results) == 20 and set(codes) <= {200, 429}, codes
    accepted = [events for code, _, events in results if code == 200]
    refused = [r for code, r, _ in results if code == 429]
    assert len(accepted) >= 5 and refused, codes  # one running + 4 waiting at least; the rest refused
    for r in refused:
        assert int(r.headers["Retry-After"]) >= 1 and "waiting" in r.json()["detail"]
    assert all(events[-1].event == "done" and events[-1].json()["finish_reason"] == "length" for events in accepted)
    ids = {events[-1].json()["run_id"] for events in accepted}
    assert ids == {r["id"] for r in saved["runs"]}  # no run lost, none extra
    assert health["running"] is False and health["waiting"] == 0


def slow_steps(monkeypatch, model, seconds: float = 0.02) -> None:
    """Make each forward take about as long as a real model's step (the tiny one takes ~1 ms)."""
    real = model.forward

    @functools.wraps(real)  # (its signature: the deferred-head probe reads it, once per shared model)
    def forward(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)


def test_disconnect_cancels_the_run_within_a_step(tmp_path, monkeypatch):
    loaded = tiny_loaded("llama")
    app = make_app(tmp_path, loaded)
    slow_steps(monkeypatch, loaded.model, 0.05)  # room for a busy machine to notice the disconnect
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        seen = 0
        with c.stream("POST", "/api/runs", json=body(max_new_tokens=480)) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line == "event: token":
                    seen += 1
                    if seen == 3:
                        break  # closing the response drops the connection
        run = wait_for(lambda: (c.get("/api/runs").json()["runs"] or [None])[0])
        assert run["finish_reason"] == "cancelled"
        generated = run["n_tokens"] - run["prompt_len"]
        assert seen <= generated <= seen + 3, generated  # stopped within a step or two of the disconnect
        assert c.get("/api/health").json()["running"] is False
        events = parse_sse(c.post("/api/runs", json=body()).content)
        assert events[-1].event == "done"  # the engine serves the next run


def test_a_view_is_served_while_a_run_generates(tmp_path):
    app = make_app(tmp_path, tiny_loaded("llama"))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        first = parse_sse(c.post("/api/runs", json=body()).content)[-1].json()["run_id"]
        with c.stream("POST", "/api/runs", json=body(max_new_tokens=400)) as r:
            lines = r.iter_lines()
            while next(lines) != "event: token":
                pass
            with httpx.Client(base_url=url, timeout=60) as other:
                view = other.get(f"/api/runs/{first}/views/attention", params={"layer": 1})
                assert view.status_code == 200
                assert other.get("/api/health").json()["running"] is True  # the run is still going
            for line in lines:
                if line == "event: done":
                    break


def test_background_capture_makes_the_first_click_a_cache_hit(tmp_path, monkeypatch):
    from llmvis import internals

    loaded = tiny_loaded("llama")
    app = make_app(tmp_path, loaded)
    engine = app.state.engine
    with client(app) as c:
        run_id = parse_sse(c.post("/api/runs", json=body()).content)[-1].json()["run_id"]
        wait_for(lambda: engine.captures >= 1)
        ids = [t["id"] for t in c.get(f"/api/runs/{run_id}").json()["tokens"]]
        assert internals.default_key(loaded, ids) in engine.cache

        def no_second_capture(self):
            raise AssertionError("the view ran the capture again")

        monkeypatch.setattr(internals.Internals, "_run_capture", no_second_capture)
        assert c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 0}).status_code == 200


def test_a_run_keeps_its_capture_as_it_generates_so_the_first_click_is_a_cache_hit(tmp_path, monkeypatch):
    """With a self-checked model the capture is in the cache when `done` arrives: no
    background capture runs, no view runs the model's forward again, and the run's heavy
    summaries are computed ahead while the server is idle."""
    from test_families import fresh

    from llmvis import internals

    loaded = fresh(tiny_loaded("llama"))
    assert loaded.info.internals is not None and loaded.info.internals.live_capture
    app = make_app(tmp_path, loaded)
    engine = app.state.engine

    def no_capture(self):
        raise AssertionError("the capture ran after the run")

    monkeypatch.setattr(internals.Internals, "_run_capture", no_capture)
    with client(app) as c:
        events = parse_sse(c.post("/api/runs", json=body()).content)
        assert events[-1].event == "done"
        run_id = events[-1].json()["run_id"]
        ids = [t["id"] for t in c.get(f"/api/runs/{run_id}").json()["tokens"]]
        assert internals.default_key(loaded, ids) in engine.cache
        for view, params in (("attention", {"layer": 1}), ("residual_stream", {}), ("logit_lens", {})):
            assert c.get(f"/api/runs/{run_id}/views/{view}", params=params).status_code == 200
        wait_for(lambda: engine.background.warmed >= 1)
        assert engine.captures == 0
        key = internals.default_key(loaded, ids)
        kept = {k[1] for k in engine.cache._entries if isinstance(k, tuple) and k[0] == key}
        assert {"pooled_heads", "head_scores", "mean_cosine", "mean_attention"} <= kept


def test_the_selected_tokens_graph_is_computed_ahead(tmp_path):
    """Once the run's summaries are done, a view of one token of it makes the worker compute
    that token's contribution graph: its nodes are kept before the Contributions tab asks."""
    from llmvis import internals

    loaded = tiny_loaded("llama")
    app = make_app(tmp_path, loaded)
    engine = app.state.engine
    with client(app) as c:
        events = parse_sse(c.post("/api/runs", json=body()).content)
        run_id = events[-1].json()["run_id"]
        ids = [t["id"] for t in c.get(f"/api/runs/{run_id}").json()["tokens"]]
        wait_for(lambda: engine.background.warmed >= 1)
        key = (internals.default_key(loaded, ids), "flow_splits")
        assert key not in engine.cache
        position = len(ids) - 3
        assert c.get(f"/api/runs/{run_id}/views/attention", params={"position": position}).status_code == 200
        top = (loaded.info.layers, position - 1)  # the graph's first node
        wait_for(lambda: top in (engine.cache.peek(key) or {}))
        graph = c.get(f"/api/runs/{run_id}/views/contribution_graph", params={"position": position})
        assert graph.status_code == 200 and graph.json()["source_position"] == position - 1


def test_a_new_run_interrupts_the_background_capture(tmp_path, monkeypatch):
    from llmvis import internals

    loaded = tiny_loaded("llama")
    app = make_app(tmp_path, loaded)
    engine = app.state.engine
    started, release = threading.Event(), threading.Event()
    real = internals.Internals._run_capture

    def slow_capture(self):
        started.set()
        release.wait(10)  # a long capture: its forward pass starts only when released
        return real(self)

    monkeypatch.setattr(internals.Internals, "_run_capture", slow_capture)
    with client(app) as c:
        first = parse_sse(c.post("/api/runs", json=body("first run")).content)[-1].json()["run_id"]
        assert started.wait(10)
        result: dict = {}

        def second() -> None:
            result["events"] = parse_sse(c.post("/api/runs", json=body("second run")).content)

        t = threading.Thread(target=second)
        t.start()
        wait_for(lambda: engine.background.cancel.is_set(), timeout=10)
        release.set()  # the capture's forward now meets the cancelled flag at its first layer
        t.join(30)
        assert result["events"][-1].event == "done"
        second_id = result["events"][-1].json()["run_id"]
        wait_for(lambda: engine.captures == 1)  # only the second run's capture completed

        def key(run_id: str) -> str:
            return internals.default_key(loaded, [t["id"] for t in c.get(f"/api/runs/{run_id}").json()["tokens"]])

        assert key(second_id) in engine.cache and key(first) not in engine.cache


@pytest.mark.parametrize("failure", ["exception", "oom"])
def test_failure_inside_a_run_leaves_the_server_healthy(tmp_path, monkeypatch, failure):
    loaded = tiny_loaded("llama")
    model = loaded.model
    real_forward = model.forward
    calls = {"n": 0}

    def failing_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # prefill, 2 decode steps, then the failure
            if failure == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            raise RuntimeError("boom inside the model")
        return real_forward(*args, **kwargs)

    app = make_app(tmp_path, loaded)
    with client(app) as c:
        monkeypatch.setattr(model, "forward", failing_forward)
        events = parse_sse(c.post("/api/runs", json=body(max_new_tokens=20)).content)
        monkeypatch.undo()
        assert events[0].event == "start" and events[-1].event == "error"
        error = events[-1].json()
        assert ("out of memory" if failure == "oom" else "boom inside the model") in error["message"]
        run = c.get(f"/api/runs/{error['run_id']}").json()
        assert run["finish_reason"] == "error" and run["error"] == error["message"]
        assert len(run["tokens"]) - run["prompt_len"] == len([e for e in events if e.event == "token"])
        health = c.get("/api/health").json()
        assert health["status"] == "ok" and health["model_loaded"] and not health["running"]
        after = parse_sse(c.post("/api/runs", json=body()).content)
        assert after[-1].event == "done"


def test_emoji_and_chinese_stream_without_replacement_characters(tmp_path):
    prompts = ["你好，世界！今天天气很好。", "emoji 🙂👍🏽🇫🇷 and 👩‍👩‍👧"]
    with client(make_app(tmp_path, tiny_loaded("llama"))) as c:
        for prompt in prompts:
            raw = c.post("/api/runs", json=body(prompt, max_new_tokens=12)).content
            raw.decode("utf-8")  # strict: the wire is valid UTF-8
            events = parse_sse(raw)
            start, done = events[0].json(), events[-1].json()
            texts = [t["text"] for t in start["prompt_tokens"]]
            assert "".join(texts) == prompt and "\ufffd" not in "".join(texts)
            pieces = [e.json()["token"]["text"] for e in events if e.event == "token"]
            saved = c.get(f"/api/runs/{done['run_id']}").json()
            assert done["text"] == "".join(pieces) == "".join(t["text"] for t in saved["tokens"][saved["prompt_len"] :])


def test_a_restarted_server_lists_its_runs_and_computes_their_views(tmp_path):
    loaded = tiny_loaded("llama")
    with client(make_app(tmp_path, loaded)) as c:
        run_id = parse_sse(c.post("/api/runs", json=body()).content)[-1].json()["run_id"]
        before = c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 1}).json()
    with client(make_app(tmp_path, loaded)) as c:  # a new process on the same data dir
        assert [r["id"] for r in c.get("/api/runs").json()["runs"]] == [run_id]
        after = c.get(f"/api/runs/{run_id}/views/attention", params={"layer": 1})
        assert after.status_code == 200 and after.json() == before
        assert c.get(f"/api/runs/{run_id}/views/tokens").status_code == 200


def test_a_client_leaving_while_queued_never_runs(tmp_path, monkeypatch):
    loaded = tiny_loaded("llama")
    app = make_app(tmp_path, loaded)
    slow_steps(monkeypatch, loaded.model)
    engine = app.state.engine
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        with c.stream("POST", "/api/runs", json=body("first", max_new_tokens=60)) as first:
            lines = first.iter_lines()
            while next(lines) != "event: token":
                pass
            with (
                httpx.Client(base_url=url, timeout=60) as other,
                other.stream("POST", "/api/runs", json=body("second")) as second,
            ):
                assert second.status_code == 200
                wait_for(lambda: engine.waiting == 1)
            # the second client has gone while its run waited
            for line in lines:
                if line == "event: done":
                    break
        wait_for(lambda: not engine.running and engine.waiting == 0)
        titles = [r["title"] for r in c.get("/api/runs").json()["runs"]]
        assert titles == ["first"]


def test_runs_queued_across_a_model_load_run_on_the_new_model(tmp_path, monkeypatch):
    from tiny_models import save_tiny_model

    loaded = tiny_loaded("llama")
    directory = save_tiny_model(tmp_path / "tiny-qwen2", "qwen2")
    app = make_app(tmp_path / "data", loaded)
    slow_steps(monkeypatch, loaded.model)
    engine = app.state.engine
    results: dict = {}
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        with c.stream("POST", "/api/runs", json=body("first", max_new_tokens=40)) as first:
            lines = first.iter_lines()
            while next(lines) != "event: token":
                pass

            def load() -> None:
                with httpx.Client(base_url=url, timeout=60) as other:
                    results["load"] = parse_sse(other.post("/api/model/load", json={"spec": str(directory)}).content)

            def second() -> None:
                with httpx.Client(base_url=url, timeout=60) as other:
                    results["run"] = parse_sse(other.post("/api/runs", json=body("second")).content)

            loader = threading.Thread(target=load)
            loader.start()
            wait_for(lambda: engine.loading is not None)
            runner = threading.Thread(target=second)
            runner.start()  # validated against the old model, queued behind the load
            wait_for(lambda: engine.waiting == 1)
            for line in lines:
                if line == "event: done":
                    break
        loader.join(60)
        runner.join(60)
        assert results["load"][-1].event == "done"
        assert results["run"][-1].event == "done"
        run = c.get(f"/api/runs/{results['run'][-1].json()['run_id']}").json()
        assert run["model"]["name"] == "tiny-qwen2"


def background_job(layers: int):
    """A tiny model's slot, its background worker and a prompt's ids."""
    from llmvis.server import background
    from llmvis.server.slot import ModelSlot

    loaded = tiny_loaded("llama", layers=layers)
    slot = ModelSlot(loaded, 1 << 28)
    ids = loaded.tokenizer("The capital of France is Paris, and the capital of Spain is")["input_ids"]
    return loaded, slot, background.BackgroundCapture(slot), ids


def graphs_said(caplog) -> list[str]:
    """What the worker logged it made ahead, by graph: "selected token's graph ahead (6)"..."""
    return [r.getMessage().split(":")[0] for r in caplog.records if "graph ahead" in r.getMessage()]


def test_a_token_selected_during_the_summaries_has_its_graph_made_at_their_next_pause(caplog, monkeypatch):
    """The selected token's graph is what its next click waits for longest: a token selected
    while the first summary runs has its graph made at that summary's next pause, before the
    summary (and those after it) are done."""
    from llmvis.analyses import warm
    from llmvis.internals import default_key

    loaded, slot, job, ids = background_job(layers=3)
    ((first, warm_first),) = warm.EARLY_WARMERS  # (a summary with pauses: here in the main stage)
    rest = warm.WARMERS
    monkeypatch.setattr(warm, "EARLY_WARMERS", [])

    def selected_meanwhile(internals, pause):  # the user clicks a token as the first summary starts
        job.focus(loaded, ids, len(ids) - 2)
        warm_first(internals, pause)

    monkeypatch.setattr(warm, "WARMERS", [(first, selected_meanwhile), *rest])
    job.schedule(loaded, ids)
    with caplog.at_level("INFO", logger="llmvis.views"):
        job.run(lambda: True)
    said = [r.getMessage() for r in caplog.records if r.name == "llmvis.views"]
    graph = next(k for k, line in enumerate(said) if line.startswith("selected token's graph ahead"))
    first_done = said.index(next(line for line in said if line.startswith(f"summary ahead for {first}:")))
    assert graph < first_done, said
    assert job.warmed == 1
    assert (loaded.info.layers, len(ids) - 3) in slot.cache.peek((default_key(loaded, ids), "flow_splits"))


def test_the_summaries_ahead_let_a_waiting_view_in_and_stop_for_a_new_job():
    from llmvis.server import background
    from llmvis.server.slot import ModelSlot

    slot = ModelSlot(tiny_loaded("llama"), 1 << 20)
    job = background.BackgroundCapture(slot)
    order: list[str] = []
    with slot.lock:
        waiter = threading.Thread(target=lambda: (slot.lock.__enter__(), order.append("view"), slot.lock.__exit__()))
        waiter.start()
        wait_for(lambda: slot.lock._next == 2)  # the view now waits for the lock
        job._pause()  # between two layers: the view goes first
        order.append("summary")
    waiter.join(5)
    assert order == ["view", "summary"]
    job.cancel.set()
    with pytest.raises(background._Superseded):
        job._pause()


def test_a_waiting_view_shows_on_its_runs_progress_until_it_is_done(tmp_path):
    """GET /api/runs/{id}/progress lists the run's views being computed, with their step: a view
    queued behind the model lock says it waits for the model; once answered it is gone."""
    app = make_app(tmp_path, tiny_loaded("llama"))
    engine = app.state.engine
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        run_id = parse_sse(c.post("/api/runs", json=body()).content)[-1].json()["run_id"]
        other = parse_sse(c.post("/api/runs", json=body("Another prompt")).content)[-1].json()["run_id"]
        wait_for(lambda: not engine.background.pending)
        assert c.get(f"/api/runs/{run_id}/progress").json() == {"views": []}
        answer: dict = {}
        with engine.slot.lock:  # the model is busy: the view waits
            asker = threading.Thread(
                target=lambda: answer.update(r=httpx.get(f"{url}/api/runs/{run_id}/views/attribution", timeout=60))
            )
            asker.start()
            views = wait_for(lambda: c.get(f"/api/runs/{run_id}/progress").json()["views"])
            assert [(v["view"], v["step"]) for v in views] == [("attribution", "waiting")]
            assert views[0]["seconds"] >= 0
            assert c.get(f"/api/runs/{other}/progress").json() == {"views": []}  # another run's list
        asker.join(timeout=60)
        assert answer["r"].status_code == 200
        assert c.get(f"/api/runs/{run_id}/progress").json() == {"views": []}
        assert c.get("/api/runs/nosuchrun/progress").status_code == 404


def test_after_the_selected_token_the_graphs_beside_it_are_made_the_next_in_the_way_it_moved_first(caplog):
    """The arrow keys' next stops: once the selected token's graph is made and nothing waits, the
    graphs of the tokens beside it are made too, the one the selection last moved towards first."""
    from llmvis.internals import default_key

    loaded, slot, job, ids = background_job(layers=2)
    key, top = default_key(loaded, ids), loaded.info.layers

    def made(position: int) -> bool:  # the graph's top node: the token's prediction, read one before
        return (top, position - 1) in (slot.cache.peek((key, "flow_splits")) or {})

    with caplog.at_level("INFO", logger="llmvis.views"):
        assert job.focus(loaded, ids, 6)
        job.run(lambda: True)
        assert made(6) and made(7) and made(5) and not made(8)
        assert job.focus(loaded, ids, 3)  # back: the token before it now comes first
        job.run(lambda: True)
    said = graphs_said(caplog)
    assert said == [
        "selected token's graph ahead (6)",
        "neighbour's graph ahead (7)",
        "neighbour's graph ahead (5)",
        "selected token's graph ahead (3)",
        "neighbour's graph ahead (2)",
        "neighbour's graph ahead (4)",
    ]
    assert made(2) and made(4)


def test_a_token_selected_while_a_neighbours_graph_is_made_goes_first_then_its_own_neighbours(caplog, monkeypatch):
    from llmvis.analyses import flow
    from llmvis.server import background

    loaded, _slot, job, ids = background_job(layers=2)
    real = flow.warm_graph

    def selected_meanwhile(internals, position, pause):  # the user moves on during the neighbour 7
        if position == 7 and job._selections == 1:
            job.focus(loaded, ids, 10)
        real(internals, position, pause)

    monkeypatch.setattr(background, "warm_graph", selected_meanwhile)
    with caplog.at_level("INFO", logger="llmvis.views"):
        job.focus(loaded, ids, 6)
        job.run(lambda: True)
    said = graphs_said(caplog)
    assert said == [
        "selected token's graph ahead (6)",
        "selected token's graph ahead (10)",  # at the neighbour's first pause, which then stopped
        "neighbour's graph ahead (11)",
        "neighbour's graph ahead (9)",
    ]


def test_a_token_of_another_run_selected_while_one_run_is_warmed_is_warmed_after_it(caplog, monkeypatch):
    """It is not dropped: its run is scheduled, and the pass over the first run stops making
    neighbours for it."""
    from llmvis.analyses import warm
    from llmvis.server import background
    from llmvis.server.slot import ModelSlot

    loaded = tiny_loaded("llama", layers=2)
    slot = ModelSlot(loaded, 1 << 28)
    job = background.BackgroundCapture(slot)
    first = loaded.tokenizer("The capital of France is Paris, and the capital of Spain is")["input_ids"]
    other = loaded.tokenizer("One, two, three, four, five, six")["input_ids"]
    ((name, warm_first),) = warm.EARLY_WARMERS  # (a summary with pauses: here in the main stage)
    rest = warm.WARMERS
    monkeypatch.setattr(warm, "EARLY_WARMERS", [])

    def selected_meanwhile(internals, pause):  # a click on a token of the other run
        assert not job.focus(loaded, other, 4)
        warm_first(internals, pause)

    monkeypatch.setattr(warm, "WARMERS", [(name, selected_meanwhile), *rest])
    job.focus(loaded, first, 6)
    with caplog.at_level("INFO", logger="llmvis.views"):
        job.run(lambda: True)
        assert job.pending
        monkeypatch.setattr(warm, "WARMERS", rest)
        job.run(lambda: True)
    said = graphs_said(caplog)
    assert said == [
        "selected token's graph ahead (6)",
        "selected token's graph ahead (4)",  # the other run's, in a pass of its own
        "neighbour's graph ahead (5)",
        "neighbour's graph ahead (3)",
    ]


def test_the_graphs_beside_the_selected_token_come_before_the_late_summaries_and_at_their_pauses(caplog, monkeypatch):
    from llmvis.analyses import warm

    loaded, _slot, job, ids = background_job(layers=2)
    (name, late), *_ = warm.LATE_WARMERS

    def moved_meanwhile(internals, pause):  # the user presses an arrow key during the late summary
        job.focus(loaded, ids, 8)
        late(internals, pause)

    monkeypatch.setattr(warm, "LATE_WARMERS", [(name, moved_meanwhile)])
    job.focus(loaded, ids, 7)
    with caplog.at_level("INFO", logger="llmvis.views"):
        job.run(lambda: True)
    said = [
        r.getMessage().split(":")[0]
        for r in caplog.records
        if "graph ahead" in r.getMessage() or r.getMessage().startswith(f"summary ahead for {name}")
    ]
    assert said == [
        "selected token's graph ahead (7)",
        "neighbour's graph ahead (8)",
        "neighbour's graph ahead (6)",
        "selected token's graph ahead (8)",  # at the late summary's first pause ...
        "neighbour's graph ahead (9)",  # ... with its neighbours
        f"summary ahead for {name}",
    ]


@pytest.mark.parametrize("view", ["attention", "head_contributions"])
def test_after_the_summaries_a_token_selected_on_the_contributions_tab_has_its_neighbours_views_made_too(
    tmp_path, caplog, view
):
    """The tab the user looks at needs them next: selected by one of its views, each
    neighbour's per-token views come before its graph; by another tab's view, the graphs only.
    Both after the tabs' summaries, before the late ones."""
    from llmvis.analyses import warm

    loaded = tiny_loaded("llama", layers=2)
    app = make_app(tmp_path, loaded)
    engine = app.state.engine
    with client(app) as c, caplog.at_level("INFO", logger="llmvis.views"):
        run_id = parse_sse(c.post("/api/runs", json=body()).content)[-1].json()["run_id"]
        n = len(c.get(f"/api/runs/{run_id}").json()["tokens"])
        wait_for(lambda: engine.background.warmed >= 1)
        caplog.clear()
        assert c.get(f"/api/runs/{run_id}/views/{view}", params={"position": n - 4}).is_success
        wait_for(lambda: engine.background.warmed >= 2)
    said = [r.getMessage().split(":")[0] for r in caplog.records if "ahead" in r.getMessage()]
    graphs = [said.index(f"neighbour's graph ahead ({p})") for p in (n - 3, n - 5)]
    summaries = [said.index(f"summary ahead for {name}") for name, _ in warm.WARMERS + warm.LATE_WARMERS]
    assert max(summaries[: len(warm.WARMERS)]) < min(graphs) and max(graphs) < min(summaries[len(warm.WARMERS) :])
    made = [line for line in said if line.startswith("neighbour's views ahead")]
    if view == "head_contributions":
        assert made == [f"neighbour's views ahead ({n - 3})", f"neighbour's views ahead ({n - 5})"]
        assert said.index(made[0]) < graphs[0] and said.index(made[1]) < graphs[1]
    else:
        assert made == []


def test_a_token_selected_while_the_selected_one_is_warmed_has_the_neighbours_made_next(caplog, monkeypatch):
    """Not the neighbours of the token the user has left, nor inside the selected one's graph."""
    from llmvis.analyses import flow
    from llmvis.server import background

    loaded, _slot, job, ids = background_job(layers=2)
    real = flow.warm_graph

    def moved_meanwhile(internals, position, pause):
        if position == 6:
            job.focus(loaded, ids, 3, "contribution_graph")
        real(internals, position, pause)

    monkeypatch.setattr(background, "warm_graph", moved_meanwhile)
    job.focus(loaded, ids, 6, "contribution_graph")
    with caplog.at_level("INFO", logger="llmvis.views"):
        job.run(lambda: True)
    said = graphs_said(caplog)
    assert said == [
        "selected token's graph ahead (6)",
        "selected token's graph ahead (3)",
        "neighbour's graph ahead (2)",
        "neighbour's graph ahead (4)",
    ]


def test_on_the_contributions_tab_the_next_tokens_views_are_made_ahead_and_answer_as_computed(tmp_path, caplog):
    """An arrow key's next stop: after a Contributions view of one token, the worker makes the
    next token's head and neuron contributions with the tab's params; asked, they answer from
    there, the same numbers as computed on request (another thread count: within rounding)."""
    from llmvis.internals import default_key

    loaded = tiny_loaded("llama")
    app = make_app(tmp_path, loaded)
    engine = app.state.engine
    with client(app) as c, caplog.at_level("INFO", logger="llmvis.views"):
        run_id = parse_sse(c.post("/api/runs", json=body()).content)[-1].json()["run_id"]
        ids = [t["id"] for t in c.get(f"/api/runs/{run_id}").json()["tokens"]]
        wait_for(lambda: engine.background.warmed >= 1)
        position = len(ids) - 4
        assert c.get(f"/api/runs/{run_id}/views/head_contributions", params={"position": position}).is_success
        key = default_key(loaded, ids)
        wait_for(lambda: any(k[:3] == (key, "view", "neuron_contributions") for k in engine.cache._entries))
        wait_for(lambda: not engine.background.active)
        ahead = {}
        for name, params in (("head_contributions", {}), ("neuron_contributions", {"top_k": 10})):
            answer = c.get(f"/api/runs/{run_id}/views/{name}", params={"position": position + 1, **params})
            assert answer.is_success
            ahead[name] = answer.json()
        said = [r.getMessage() for r in caplog.records if "made ahead" in r.getMessage()]
        assert [line.split(" {")[0] for line in said] == ["view head_contributions", "view neuron_contributions"]
        for name in ahead:  # the kept results gone: computed on request
            for k in [k for k in engine.cache._entries if k[:3] == (key, "view", name)]:
                engine.cache.discard(k)
        heads = c.get(f"/api/runs/{run_id}/views/head_contributions", params={"position": position + 1}).json()
        neurons = c.get(
            f"/api/runs/{run_id}/views/neuron_contributions", params={"position": position + 1, "top_k": 10}
        ).json()
    assert heads["target"] == ahead["head_contributions"]["target"]
    assert torch.allclose(
        torch.tensor(heads["effects"]), torch.tensor(ahead["head_contributions"]["effects"]), atol=1e-3, rtol=1e-3
    )
    layers = zip(neurons["layers"], ahead["neuron_contributions"]["layers"], strict=True)
    for got, made in layers:
        assert got["mlp_effect"] == pytest.approx(made["mlp_effect"], rel=1e-3, abs=1e-3)
        both = {n["neuron"] for n in got["top"]} & {n["neuron"] for n in made["top"]}
        assert len(both) >= len(got["top"]) - 2  # (a tie at the cut may swap the last ones)


def test_a_token_selected_during_the_head_scores_has_its_graph_made_after_them(caplog, monkeypatch):
    """The Heads tab, clicked right after the Attention tab, waits for the head scores: they go
    before the selected token's graph, which then goes before the other summaries."""
    from llmvis.analyses import warm

    loaded, _slot, job, ids = background_job(layers=3)
    ((early, warm_early),) = warm.EARLY_WARMERS
    paused = []

    def selected_meanwhile(internals, pause):
        job.focus(loaded, ids, len(ids) - 2)
        warm_early(internals, lambda: (paused.append(1), pause()))

    monkeypatch.setattr(warm, "EARLY_WARMERS", [(early, selected_meanwhile)])
    job.schedule(loaded, ids)
    with caplog.at_level("INFO", logger="llmvis.views"):
        job.run(lambda: True)
    said = [r.getMessage().split(":")[0] for r in caplog.records if r.name == "llmvis.views"]
    assert paused and said[:2] == [f"summary ahead for {early}", f"selected token's graph ahead ({len(ids) - 2})"]
    assert len(said) == 2 + len(warm.WARMERS) + len(warm.LATE_WARMERS) + 2  # (and its neighbours)


@pytest.mark.parametrize("up_to", [64, 4])
def test_the_head_scores_go_before_the_selected_tokens_graph_only_on_runs_where_they_are_short(
    caplog, monkeypatch, up_to
):
    from llmvis.analyses import warm
    from llmvis.internals import Internals

    loaded = tiny_loaded("llama", layers=2)
    internals = Internals(loaded, loaded.tokenizer("The capital of France is Paris, and the capital of")["input_ids"])
    monkeypatch.setattr(warm, "EARLY_UP_TO", up_to)
    stages = {}
    for stage in ("early", "main"):
        caplog.clear()
        with caplog.at_level("INFO", logger="llmvis.views"):
            warm.warm_up(internals, lambda: None, None, stage)
        stages[stage] = [r.getMessage().split(":")[0].removeprefix("summary ahead for ") for r in caplog.records]
    main = [name for name, _ in warm.WARMERS]
    if internals.n_positions <= up_to:
        assert stages == {"early": ["head_health"], "main": main}
    else:
        assert stages == {"early": [], "main": ["head_health", *main]}


def test_a_view_computes_on_all_cores_but_one(tmp_path, monkeypatch):
    """The page draws on the same machine: a view on every core stalls at each parallel step
    whose thread the page preempts (a contribution graph 7.7–21.6 s instead of 0.6 s)."""
    from llmvis.server import views

    cores = torch.get_num_threads()
    seen: list[int] = []
    real = views.compute
    monkeypatch.setattr(views, "compute", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    app = make_app(tmp_path, tiny_loaded("llama"))
    with client(app) as c:
        run_id = parse_sse(c.post("/api/runs", json=body()).content)[-1].json()["run_id"]
        assert c.get(f"/api/runs/{run_id}/views/residual_stream", params={"position": 3}).is_success
    assert seen == [max(1, cores - 1)]
    assert torch.get_num_threads() == cores  # given back
