"""Helpers for the browser tests: a real `llmvis serve` subprocess and a page wrapper.

Chromium missing: the tests fail when CI is set (CI must run them) and skip otherwise. The
web app must be built (`make web`) before they run; they fail with that hint if it is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from processes import free_port, stop

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
STATIC = ROOT / "src" / "llmvis" / "static" / "index.html"
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}


def require_browser() -> None:
    if not CHROMIUM.exists():
        msg = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    if not STATIC.exists():
        pytest.fail(f"the web app is not built ({STATIC} missing): run `make web`")


def wait_ready(base: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llmvis serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/api/health", timeout=2) as r:
                health = json.load(r)
            last = health.get("model_state", "")
            if health.get("model_loaded"):
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"llmvis serve was not ready in {timeout}s (model_state={last!r})")


class Server:
    def __init__(
        self,
        model: str | None,
        data_dir: Path,
        log: Path,
        timeout: float,
        extra_args: list[str] | None = None,
        one_thread: bool = True,
    ) -> None:
        """`one_thread`: torch on one thread (tests beside each other); off for a bench, which
        measures what a user's server does with every core."""
        self.log = log
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env["TOKENIZERS_PARALLELISM"] = "false"
        if one_thread:
            env["OMP_NUM_THREADS"] = "1"
        for attempt in range(3):  # another process may take the free port before the server binds it
            self.port = free_port()
            self.base = f"http://127.0.0.1:{self.port}"
            cmd = [sys.executable, "-m", "llmvis.cli", "serve", "--port", str(self.port), "--no-browser"]
            cmd += ["--data-dir", str(data_dir), *(["--model", model] if model else []), *(extra_args or [])]
            self._out = open(log, "w")  # noqa: SIM115
            self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
            try:
                wait_ready(self.base, self.proc, timeout)
                return
            except Exception:
                self.stop()
                if attempt < 2 and "in use" in log.read_text():
                    continue
                raise RuntimeError(f"server failed to start; log:\n{log.read_text()[-3000:]}") from None

    def stop(self) -> None:
        stop(self.proc)
        self._out.close()


def tiny_model_server(tmp_path: Path, arch: str) -> Server:
    """`llmvis serve` of its own on a tiny random model of `arch`, saved under `tmp_path`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import save_tiny_model

    save_tiny_model(tmp_path / arch, arch)
    return Server(str(tmp_path / arch), tmp_path / "data", tmp_path / "serve.log", timeout=120)


class Page:
    """A page on the app plus the errors it logged (CSP violations and uncaught errors included)."""

    def __init__(self, browser, base: str, locale: str = "en-US") -> None:
        self.context = browser.new_context(viewport=VIEWPORT, locale=locale, device_scale_factor=1)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.goto(base + "/")

    def js(self, expr: str, arg=None):
        """Evaluate a function expression (no string eval in the page: the CSP forbids it)."""
        return self.page.evaluate(expr, arg)

    def until(self, expr: str, timeout: float = 30.0, arg=None, what: str = ""):
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expr, arg)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or expr}")
            time.sleep(0.1)

    def close(self) -> None:
        self.context.close()


def click_candidate(p: Page, index: int) -> None:
    """Click the row of candidate `index` (0 = top bar) in the Tokens tab's chart."""
    n = p.js(
        "() => { const r = window.__llmvis.app.run; return r.tokens[window.__llmvis.app.selected].stats.top.length; }"
    )
    row = n - 1 - index  # bars are drawn bottom-up
    x, y = p.js("(row) => window.__llmvis.chartPixel('tokens.top', [0.02, row])", row)
    p.page.mouse.click(x, y)
