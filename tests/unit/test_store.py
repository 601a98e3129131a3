"""The SQLite run store: save/get/list/search/rename, soft delete with undo, purge, restart,
opened views, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from llmvis.generation import generate
from llmvis.store import SCHEMA_VERSION, Store
from llmvis.trace import GenerationRequest, SamplingParams, Trace
from tiny_models import tiny_loaded


@pytest.fixture(scope="module")
def trace() -> Trace:
    loaded = tiny_loaded("llama")
    params = SamplingParams(temperature=0, max_new_tokens=4)
    return generate(loaded, GenerationRequest(mode="completion", prompt="The capital of France", params=params))


def copy(trace: Trace, **update) -> Trace:
    fresh = Trace.from_json(trace.to_json())
    return fresh.model_copy(update=update)


def test_save_get_roundtrip_and_restart(tmp_path, trace):
    store = Store(tmp_path / "runs.sqlite3")
    store.save(trace)
    assert store.get(trace.id) == trace
    store.close()
    reopened = Store(tmp_path / "runs.sqlite3")  # a restarted server
    assert reopened.get(trace.id) == trace
    assert [r.id for r in reopened.list_runs()] == [trace.id]
    version = sqlite3.connect(tmp_path / "runs.sqlite3").execute("SELECT version FROM schema_version").fetchone()
    assert version == (SCHEMA_VERSION,)
    mode = sqlite3.connect(tmp_path / "runs.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_list_newest_first_search_limit(tmp_path, trace):
    store = Store(tmp_path / "r.db")
    now = time.time()
    store.save(copy(trace, id="a", created=now - 30, title="about Paris"))
    store.save(copy(trace, id="b", created=now - 20, title="cats 100%"))
    store.save(copy(trace, id="c", created=now - 10, title="dogs"))
    assert [r.id for r in store.list_runs()] == ["c", "b", "a"]
    assert [r.id for r in store.list_runs(limit=2)] == ["c", "b"]
    assert [r.id for r in store.list_runs(limit=2, offset=2)] == ["a"]
    assert [r.id for r in store.list_runs(search="paris")] == ["a"]
    assert [r.id for r in store.list_runs(search="100%")] == ["b"]  # % is literal, not a wildcard
    assert [r.id for r in store.list_runs(search="_")] == []
    assert {r.id for r in store.list_runs(search="France")} == {"a", "b", "c"}  # the prompt is searched
    assert store.count() == 3


def test_rename_delete_restore_purge(tmp_path, trace):
    store = Store(tmp_path / "r.db")
    store.save(trace)
    assert store.get(trace.id) is store.get(trace.id)  # parsed once, then shared
    assert store.rename(trace.id, "new name")
    assert store.get(trace.id).title == "new name"
    assert Trace.from_json(store.get_json(trace.id)).title == "new name"
    store.save(copy(trace, title=""))  # re-saving without a title keeps the user's
    assert store.get(trace.id).title == "new name"
    assert store.delete(trace.id)
    assert store.get(trace.id) is None and store.list_runs() == []
    assert not store.delete(trace.id) and not store.rename(trace.id, "x")
    assert store.restore(trace.id)
    assert store.get(trace.id) is not None and not store.restore(trace.id)
    store.delete(trace.id)
    assert store.purge(older_than_s=3600) == 0  # too recent
    assert store.purge(older_than_s=0) == 1
    assert not store.restore(trace.id)


def test_opened_views_kept_latest_per_params(tmp_path, trace):
    store = Store(tmp_path / "r.db")
    store.save(trace)
    store.record_view(trace.id, "tokens", {"position": 1}, '{"a": 1}')
    store.record_view(trace.id, "tokens", {"position": 1}, '{"a": 2}')
    store.record_view(trace.id, "attention", {"layer": 0}, '{"b": 1}')
    views = store.opened_views(trace.id)
    assert [(v.view, v.params, v.result) for v in views] == [
        ("tokens", {"position": 1}, {"a": 2}),
        ("attention", {"layer": 0}, {"b": 1}),
    ]


def test_concurrent_saves_from_threads(tmp_path, trace):
    store = Store(tmp_path / "r.db")
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(10):
                store.save(copy(trace, id=f"t{k}-{i}"))
                store.list_runs(search="France")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count() == 80
