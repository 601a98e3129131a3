"""UMAP in a process of its own, started ahead at the lowest priority.

numba compiles UMAP's functions again in every new process: about 14 s of a core, most of it
Python, which holds the GIL. Compiled on a thread of the server, even at nice 19, it slowed the
views computed meanwhile 2.5–3× (the Attribution tab's first rollout at T = 1,536 on the bundled
model: 1.6 s → 4.5 s): their Python between two torch operations waited for the GIL each time.
A process shares no GIL, and at nice 19 it takes only CPU nobody else wants. It then serves the
fits (the server's thread waits on a pipe, holding nothing); it lives as long as the server.

Even at nice 19 a compiling process took a share of the cores from a view's OpenMP threads,
which then waited for each other (the same rollout: 1.6 s → 2.5 s). So while it compiles, a
view that does not need it stops it (SIGSTOP) and lets it go on (SIGCONT) when done: it compiles
only while no view runs.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

WARM_UP_POINTS = 30  # a fit this small compiles every function a real fit uses


class UmapUnavailable(RuntimeError):
    """UMAP cannot run here (not installed, or its process failed)."""


class UmapProcess:
    """One helper process, started on the first `start()` or `fit()`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fit_lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None
        # a flag in shared memory without a lock (the process may be stopped at any instruction):
        # its warm-up fit (the compilation) is done
        self._compiled: Any = None
        self._holds = 0  # views running that have it stopped while it compiles
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def compiled(self) -> bool:
        return self._compiled is not None and bool(self._compiled.value)

    def start(self) -> bool:
        """Start the process (it compiles at once) unless it runs; whether this call started it."""
        with self._lock:
            return self._start()

    def _start(self) -> bool:
        if self.running:
            return False
        ctx = mp.get_context("spawn")  # a fresh interpreter: never a fork of a threaded server
        parent, child = ctx.Pipe()
        self._compiled = ctx.RawValue("b", 0)
        self._proc = ctx.Process(target=_serve, args=(child, self._compiled), name="llmvis-umap", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        if self._holds:  # started while a view runs: it waits for that view too
            self._signal(signal.SIGSTOP)
        return True

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """While the block runs (a view), the process does not compile: stopped, then continued."""
        with self._lock:
            self._holds += 1
            if self._holds == 1 and not self.compiled:
                self._signal(signal.SIGSTOP)
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                if self._holds == 0:
                    self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        if sig == signal.SIGCONT and not self._stopped:
            return
        if self.running:
            with contextlib.suppress(OSError):
                os.kill(self._proc.pid, sig)
                self._stopped = sig == signal.SIGSTOP

    def fit(self, data: np.ndarray, dims: int, neighbors: int, seed: int) -> np.ndarray:
        """UMAP of `data: [n, d]` (float32) → [n, dims], seeded."""
        with self._fit_lock:  # one exchange on the pipe at a time; `held()` is not kept waiting
            with self._lock:
                self._start()
                self._signal(signal.SIGCONT)  # the user waits for this one: not held
                conn = self._conn
            assert conn is not None
            try:
                conn.send((np.ascontiguousarray(data, dtype=np.float32), dims, neighbors, seed))
                ok, out = conn.recv()
            except (EOFError, OSError) as exc:  # it died: the next call starts another
                with self._lock:
                    self._stop()
                raise UmapUnavailable(f"the UMAP process stopped ({exc or type(exc).__name__})") from exc
        if not ok:
            raise UmapUnavailable(out)
        return np.asarray(out)

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._signal(signal.SIGCONT)  # a stopped process would not act on the terminate
            self._proc.terminate()
            self._proc.join(5)
        self._proc, self._conn, self._compiled = None, None, None
        self._stopped = False


def _serve(conn: Connection, compiled: Any) -> None:
    """The helper: compile (a small fit), raise the `compiled` flag, then answer fits until the
    pipe closes."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    try:
        import umap

        points = np.random.default_rng(0).normal(size=(WARM_UP_POINTS, 4)).astype(np.float32)
        umap.UMAP(n_components=2, n_neighbors=5, random_state=0, n_jobs=1).fit_transform(points)
        failed = None
    except Exception as exc:  # not installed or broken: every fit is answered with why
        failed = f"UMAP is not available: {type(exc).__name__}: {exc}"
    compiled.value = 1
    while True:
        try:
            data, dims, neighbors, seed = conn.recv()
        except (EOFError, OSError):
            return
        if failed is not None:
            conn.send((False, failed))
            continue
        try:
            model = umap.UMAP(n_components=dims, n_neighbors=neighbors, random_state=seed, n_jobs=1)
            conn.send((True, np.asarray(model.fit_transform(data))))
        except Exception as exc:
            conn.send((False, f"UMAP failed: {type(exc).__name__}: {exc}"))


PROCESS = UmapProcess()
atexit.register(PROCESS.stop)  # before multiprocessing's own clean-up, which would not continue it
