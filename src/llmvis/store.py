"""Runs persisted in SQLite (stdlib sqlite3): one row per run, the Trace as JSON.

Why SQLite: one file in the data dir, safe across restarts, searchable without loading every
trace. The schema is versioned in `schema_version` so later versions can migrate. One
connection guarded by a lock (WAL mode) keeps it thread-safe for the server's worker thread
and its request threads. Deletion is soft (`deleted_at`) so the UI can undo; rows deleted
longer than `purge_after_s` ago are purged when the store opens. The views a user opened are
kept with their results so an export can show them without the model.

Parsed traces of recent runs are kept in a small LRU (a view click must not re-parse megabytes
of JSON); callers treat the returned Trace as read-only. `get_json` serves the stored JSON as is.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llmvis.trace import Trace

SCHEMA_VERSION = 1
PURGE_AFTER_S = 24 * 3600.0
MAX_VIEWS_PER_RUN = 64
PARSED_TRACES = 8  # parsing a 4k-token trace takes a second or more: keep the recent ones

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    title TEXT NOT NULL,
    mode TEXT NOT NULL,
    model_name TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    prompt_len INTEGER NOT NULL,
    prompt_text TEXT NOT NULL,
    output_text TEXT NOT NULL,
    parent_id TEXT,
    fork_position INTEGER,
    deleted_at REAL,
    trace TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created DESC);
CREATE TABLE IF NOT EXISTS opened_views (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    view TEXT NOT NULL,
    params TEXT NOT NULL,
    result TEXT NOT NULL,
    opened REAL NOT NULL,
    PRIMARY KEY (run_id, view, params)
);
"""


class RunRow(BaseModel):
    """A run without its tokens: what the history list shows."""

    id: str
    created: float
    title: str
    mode: str
    model_name: str
    finish_reason: str
    n_tokens: int
    prompt_len: int
    prompt_preview: str
    output_preview: str
    parent_id: str | None
    fork_position: int | None


class OpenedView(BaseModel):
    view: str
    params: dict[str, Any]
    result: dict[str, Any]
    opened: float


_SUMMARY = (
    "id, created, title, mode, model_name, finish_reason, n_tokens, prompt_len,"
    " substr(prompt_text, 1, 200), substr(output_text, 1, 200), parent_id, fork_position"
)


def _row(row: tuple[Any, ...]) -> RunRow:
    return RunRow(**dict(zip(RunRow.model_fields, row, strict=True)))


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Store:
    def __init__(self, path: Path, *, purge_after_s: float = PURGE_AFTER_S) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._parsed: OrderedDict[str, Trace] = OrderedDict()
        with self._lock:
            self._migrate()
        self.purge(older_than_s=purge_after_s)

    def _migrate(self) -> None:
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer llmvis (schema {row[0]} > {SCHEMA_VERSION})")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # runs -----------------------------------------------------------------------------------

    def _remember(self, trace: Trace) -> None:
        self._parsed[trace.id] = trace
        self._parsed.move_to_end(trace.id)
        while len(self._parsed) > PARSED_TRACES:
            self._parsed.popitem(last=False)

    def save(self, trace: Trace) -> None:
        """Insert or replace a run (its title is kept when the run already exists)."""
        title = trace.title or trace.request.title()
        with self._lock:
            self._parsed.pop(trace.id, None)
            existing = self._db.execute("SELECT title FROM runs WHERE id = ?", (trace.id,)).fetchone()
            if existing is not None and not trace.title:
                title = existing[0]
            self._db.execute(
                "INSERT OR REPLACE INTO runs (id, created, title, mode, model_name, finish_reason,"
                " n_tokens, prompt_len, prompt_text, output_text, parent_id, fork_position,"
                " deleted_at, trace) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,NULL,?)",
                (
                    trace.id,
                    trace.created,
                    title,
                    trace.request.mode,
                    trace.model.name,
                    trace.finish_reason,
                    len(trace.tokens),
                    trace.prompt_len,
                    trace.request.user_text,
                    trace.text,
                    trace.parent_id,
                    trace.fork_position,
                    trace.model_copy(update={"title": title}).to_json(),
                ),
            )
            self._remember(trace.model_copy(update={"title": title}))

    def get(self, run_id: str) -> Trace | None:
        """The run's Trace (shared with other callers: do not modify it), or None."""
        with self._lock:
            if run_id in self._parsed and self._live(run_id):
                self._parsed.move_to_end(run_id)
                return self._parsed[run_id]
        text = self.get_json(run_id)
        if text is None:
            return None
        trace = Trace.from_json(text)
        with self._lock:
            self._remember(trace)
        return trace

    def get_json(self, run_id: str) -> str | None:
        """The run's Trace as stored (JSON text), or None."""
        with self._lock:
            row = self._db.execute("SELECT trace FROM runs WHERE id = ? AND deleted_at IS NULL", (run_id,)).fetchone()
        return None if row is None else row[0]

    def _live(self, run_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM runs WHERE id = ? AND deleted_at IS NULL", (run_id,)).fetchone()
        return row is not None

    def list_runs(self, *, search: str | None = None, limit: int = 50, offset: int = 0) -> list[RunRow]:
        """Live runs, newest first; `search` matches title, prompt or output (case-insensitive)."""
        sql = f"SELECT {_SUMMARY} FROM runs WHERE deleted_at IS NULL"
        args: list[Any] = []
        if search:
            sql += " AND (title LIKE ? ESCAPE '\\' OR prompt_text LIKE ? ESCAPE '\\' OR output_text LIKE ? ESCAPE '\\')"
            args += [_like(search)] * 3
        sql += " ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?"
        args += [limit, offset]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_row(r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM runs WHERE deleted_at IS NULL").fetchone()[0])

    def summary(self, run_id: str) -> RunRow | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_SUMMARY} FROM runs WHERE id = ? AND deleted_at IS NULL", (run_id,)
            ).fetchone()
        return None if row is None else _row(row)

    def rename(self, run_id: str, title: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE runs SET title = ?, trace = json_set(trace, '$.title', ?) WHERE id = ? AND deleted_at IS NULL",
                (title, title, run_id),
            )
            self._parsed.pop(run_id, None)
        return cur.rowcount > 0

    def delete(self, run_id: str) -> bool:
        """Soft delete: hidden at once, restorable until purged."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE runs SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (time.time(), run_id)
            )
        return cur.rowcount > 0

    def restore(self, run_id: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE runs SET deleted_at = NULL WHERE id = ? AND deleted_at IS NOT NULL", (run_id,)
            )
        return cur.rowcount > 0

    def purge(self, *, older_than_s: float = PURGE_AFTER_S) -> int:
        """Remove runs soft-deleted more than `older_than_s` ago (and their opened views)."""
        cutoff = time.time() - older_than_s
        with self._lock:
            cur = self._db.execute("DELETE FROM runs WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (cutoff,))
        return cur.rowcount

    # opened views ---------------------------------------------------------------------------

    def record_view(self, run_id: str, view: str, params: dict[str, Any], result_json: str) -> None:
        """Remember a view the user opened (latest result per view+params), for export."""
        key = json.dumps(params, sort_keys=True)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO opened_views (run_id, view, params, result, opened) VALUES (?,?,?,?,?)",
                (run_id, view, key, result_json, time.time()),
            )
            self._db.execute(
                "DELETE FROM opened_views WHERE run_id = ? AND rowid NOT IN (SELECT rowid FROM"
                " opened_views WHERE run_id = ? ORDER BY opened DESC LIMIT ?)",
                (run_id, run_id, MAX_VIEWS_PER_RUN),
            )

    def opened_views(self, run_id: str) -> list[OpenedView]:
        with self._lock:
            rows = self._db.execute(
                "SELECT view, params, result, opened FROM opened_views WHERE run_id = ? ORDER BY opened",
                (run_id,),
            ).fetchall()
        return [OpenedView(view=v, params=json.loads(p), result=json.loads(r), opened=o) for v, p, r, o in rows]
