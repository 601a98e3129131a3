"""View `embedding`: PCA recovers known axes and variances; UMAP/t-SNE run; params are checked."""

from __future__ import annotations

import math
import os
import time

import pytest
import torch

from llmvis.analyses import embedding as emb
from llmvis.analyses.registry import ViewContext, ViewParamError, compute
from llmvis.umap_process import PROCESS
from tiny_models import tiny_loaded
from trace_helpers import make_trace, random_ids, view_context

N, D = 40, 64


def _plane_points(n: int = N):
    """n points on a 2D plane in 64D: x = m + a·u + b·v with var(a) = 9, var(b) = 1 exactly.

    Returns (x: [n, D], u: [D], v: [D], a: [n], b: [n]); a and b are centred and orthogonal,
    so the principal axes are u and v with explained variance ratios 0.9 and 0.1.
    """
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(D, 2, generator=g, dtype=torch.float64))
    u, v = basis[:, 0], basis[:, 1]
    s = torch.randn(n, 2, generator=g, dtype=torch.float64)
    s = s - s.mean(0)
    s, _ = torch.linalg.qr(s)  # orthonormal, still centred (the ones vector is orthogonal to both)
    a, b = 3 * s[:, 0] * math.sqrt(n), s[:, 1] * math.sqrt(n)
    offset = torch.randn(D, generator=g, dtype=torch.float64) * 5
    return offset + a[:, None] * u + b[:, None] * v, u, v, a, b


class _FakeInternals:
    """Internals stand-in whose every layer's residual stream is the given points."""

    def __init__(self, x: torch.Tensor, layers: int = 2):
        self.x, self.n_layers, self.n_positions = x.float(), layers, x.shape[0]

    def residual(self, layer: int) -> torch.Tensor:
        return self.x


@pytest.fixture(scope="module")
def tiny():
    loaded = tiny_loaded("llama")
    ids = random_ids(loaded, 30, seed=4)
    return view_context(loaded, ids, 20)


def pca_of_plane(n: int) -> str:
    """PCA of n plane points finds the plane's axes, ratios and coordinates; returns its solver."""
    x, u, v, a, b = _plane_points(n)
    coords, axes, ratios, solver = emb.pca(x, 3)
    assert ratios[:2].tolist() == pytest.approx([0.9, 0.1], abs=1e-12)
    assert float(ratios[2]) == pytest.approx(0.0, abs=1e-12)
    assert abs(float(axes[0] @ u)) == pytest.approx(1.0, abs=1e-9)
    assert abs(float(axes[1] @ v)) == pytest.approx(1.0, abs=1e-9)
    assert torch.allclose(coords[:, 0].abs(), a.abs(), atol=1e-9)
    assert torch.allclose(coords[:, 1].abs(), b.abs(), atol=1e-9)
    peak = axes[:2].abs().argmax(dim=1)
    assert (axes[:2].gather(1, peak[:, None]) > 0).all()  # sign convention
    return solver


def test_pca_recovers_plane_axes():
    assert pca_of_plane(N) == "exact SVD"


def test_pca_of_many_points_uses_the_covariance_and_finds_the_same_axes():
    assert pca_of_plane(5 * D).startswith("exact (covariance")
    # on full-rank data: the SVD's coordinates and ratios, same signs
    g = torch.Generator().manual_seed(1)
    y = torch.randn(300, 48, generator=g, dtype=torch.float64) * torch.linspace(3, 0.1, 48, dtype=torch.float64)
    coords, axes, ratios, solver = emb.pca(y, 5)
    centred = y - y.mean(0)
    _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
    assert solver.startswith("exact (covariance")
    assert torch.allclose(ratios, sv[:5] ** 2 / (centred**2).sum(), atol=1e-12)
    signs = torch.sign(vh[:5].gather(1, vh[:5].abs().argmax(1, keepdim=True)))
    assert torch.allclose(axes, vh[:5] * signs, atol=1e-9)
    assert torch.allclose(coords, centred @ (vh[:5] * signs).T, atol=1e-8)


def test_pca_randomised_solver_agrees(monkeypatch):
    x, u, _, _, _ = _plane_points()
    monkeypatch.setattr(emb, "EXACT_SVD_MAX", 0)
    _, axes, ratios, solver = emb.pca(x, 2)
    assert solver.startswith("randomised")
    assert ratios.tolist() == pytest.approx([0.9, 0.1], abs=1e-5)
    assert abs(float(axes[0] @ u)) == pytest.approx(1.0, abs=1e-5)


def test_view_pca_of_known_points(tiny):
    x, _, _, a, b = _plane_points()
    loaded = tiny_loaded("llama")
    trace = make_trace(loaded, random_ids(loaded, N, seed=5), 10)
    ctx = ViewContext(trace, loaded, _FakeInternals(x))
    view = compute("embedding", ctx, {"dims": 3, "layer": 1})
    assert view.explained_variance_ratio == pytest.approx([0.9, 0.1, 0.0], abs=1e-6)
    assert view.scree[:2] == pytest.approx([0.9, 0.1], abs=1e-6)
    coords = torch.tensor(view.coords, dtype=torch.float64)
    assert coords.shape == (N, 3)
    assert torch.allclose(coords[:, 0].abs(), a.abs(), rtol=1e-3, atol=1e-4)
    assert torch.allclose(coords[:, 1].abs(), b.abs(), rtol=1e-3, atol=1e-4)
    assert view.positions == list(range(N))
    assert view.labels == [t.label for t in trace.tokens]


def test_layer_zero_is_input_embeddings(tiny):
    view = compute("embedding", tiny, {"layer": 0})
    assert view.source == "input embeddings"
    ids = torch.tensor(tiny.trace.ids)
    embeds = tiny.loaded.model.get_input_embeddings()(ids).detach()
    expected, _, ratios, _ = emb.pca(embeds, 2)
    assert torch.allclose(torch.tensor(view.coords, dtype=torch.float64), expected, rtol=1e-3, atol=1e-4)
    assert view.explained_variance_ratio == pytest.approx(ratios.tolist(), rel=1e-3)
    last = compute("embedding", tiny, {"layer": tiny.internals.n_layers})
    assert "last layer" in last.source


def test_selection_of_points(tiny):
    view = compute("embedding", tiny, {"exclude_first": True, "max_points": 10})
    assert len(view.positions) == 10 and view.positions[0] == 1 and view.positions[-1] == 29
    assert view.positions == sorted(set(view.positions))
    assert view.labels == [tiny.trace.tokens[i].label for i in view.positions]


@pytest.mark.parametrize("method,dims", [("tsne", 3), ("umap", 2)])
def test_nonlinear_methods(tiny, method, dims):
    view = compute("embedding", tiny, {"method": method, "dims": dims, "layer": 1, "seed": 3})
    coords = torch.tensor(view.coords)
    assert coords.shape == (30, dims) and torch.isfinite(coords).all()
    assert coords.std(dim=0).min() > 0  # not collapsed to a point
    assert view.explained_variance_ratio is None and method in view.solver.lower().replace("-", "")
    again = compute("embedding", tiny, {"method": method, "dims": dims, "layer": 1, "seed": 3})
    assert again.coords == view.coords  # seeded: reproducible


def test_umap_runs_in_a_process_of_its_own_compiled_ahead(tiny):
    """compile_umap_soon() starts one helper process (a second call starts nothing), at the
    lowest priority, which compiles and then answers the UMAP view; if it dies, the next fit
    starts another, whose seeded result is the same."""
    emb.compile_umap_soon()  # started here, or by an earlier test
    assert not emb.compile_umap_soon()  # one process
    proc = PROCESS._proc
    deadline = time.monotonic() + 60
    while os.getpriority(os.PRIO_PROCESS, proc.pid) != 19 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == 19 and proc.pid != os.getpid()
    asked = {"method": "umap", "layer": 1, "seed": 5}
    view = compute("embedding", tiny, asked)
    assert PROCESS.compiled and PROCESS._proc is proc and len(view.coords) == 30
    proc.kill()
    proc.join(10)
    assert PROCESS.start()  # a dead process is replaced
    fresh = PROCESS._proc
    with PROCESS.held():  # a view running: the compilation is stopped, then goes on
        assert settles(fresh.pid, lambda s: s == "T") and not PROCESS.compiled
    assert settles(fresh.pid, lambda s: s != "T")
    again = compute("embedding", tiny, asked)
    assert PROCESS._proc is fresh and PROCESS.compiled
    assert again.coords == view.coords


def settles(pid: int, want, within: float = 5.0) -> bool:
    """Whether the process's state (R, S, T: stopped… from /proc, Linux) comes to satisfy `want`
    (a signal is delivered asynchronously)."""
    deadline = time.monotonic() + within
    while True:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if want(state) or time.monotonic() > deadline:
            return want(state)
        time.sleep(0.01)


def test_a_umap_that_cannot_run_is_a_clear_not_available(tiny, monkeypatch):
    from llmvis.arch import NotAvailable
    from llmvis.umap_process import UmapUnavailable

    def missing(*_):
        raise UmapUnavailable("UMAP is not available: ModuleNotFoundError: No module named 'umap'")

    monkeypatch.setattr(PROCESS, "fit", missing)
    with pytest.raises(NotAvailable, match="No module named 'umap'"):
        compute("embedding", tiny, {"method": "umap", "layer": 1})


def test_the_server_starts_umap_when_the_embedding_tab_asks(tmp_path, monkeypatch):
    from llmvis.server import views as server_views
    from server_helpers import client, make_app, parse_sse

    calls: list[str] = []
    monkeypatch.setattr(server_views, "compile_umap_soon", lambda: calls.append("umap") or True)  # real: above
    with client(make_app(tmp_path, tiny_loaded("llama"))) as c:
        body = {"mode": "completion", "prompt": "a b c d e f g h i j k l", "params": {"max_new_tokens": 4}}
        run_id = parse_sse(c.post("/api/runs", json=body).content)[-1].json()["run_id"]
        assert c.get(f"/api/runs/{run_id}/views/uncertainty").status_code == 200
        assert not calls  # only the Embedding tab starts it
        assert c.get(f"/api/runs/{run_id}/views/embedding").status_code == 200
        assert calls == ["umap"]


@pytest.mark.parametrize(
    "params,match",
    [
        ({"method": "tsne", "max_points": 8}, "at least 10 tokens"),
        ({"method": "umap", "max_points": 9}, "at least 10 tokens"),
        ({"max_points": 3, "dims": 3}, "at least 4 tokens"),
        ({"layer": 3}, "out of range"),
        ({"dims": 4}, "dims"),
        ({"method": "mds"}, "method"),
    ],
)
def test_bad_params(tiny, params, match):
    with pytest.raises(ViewParamError, match=match):
        compute("embedding", tiny, params)


def test_json_size_at_4096():
    loaded = tiny_loaded("llama", layers=1)
    ids = random_ids(loaded, 4096)
    ctx = view_context(loaded, ids, 4000)
    size = len(compute("embedding", ctx, {"dims": 3, "layer": 1}).model_dump_json())
    assert size <= 1_000_000, size
