"""llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on the bundled GGUF: a real
engine for the remote backend's tests. `make test` installs it; when it is missing the tests
that need it fail under CI and skip elsewhere."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from processes import free_port, stop

# llama-cpp-python's own defaults would penalise repeats (1.1) and truncate sampling (top_k 40,
# min_p 0.05); the tests compare against plain greedy, so requests say so.
NEUTRAL = {"repeat_penalty": 1.0, "min_p": 0.0}


def require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("sse_starlette") is None:
        message = "llama-cpp-python[server] is not installed (make test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)



class LlamaServer:
    """`python -m llama_cpp.server` on a free loopback port; `base_url` ends in /v1."""

    def __init__(self, gguf: Path, log: Path, timeout: float = 120.0) -> None:
        self.gguf = gguf
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._log = open(log, "w")  # noqa: SIM115
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(self.port), "--n_ctx", "2048", "--logits_all", "true", "--n_threads", "2",
               "--verbose", "false", "--interrupt_requests", "false"]  # queue, do not cut, concurrent runs
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"llama.cpp server exited; log:\n{log.read_text()[-3000:]}")
            try:
                models = httpx.get(f"{self.base_url}/models", timeout=2).json()["data"]
                self.model = models[0]["id"]
                return
            except (httpx.HTTPError, KeyError, IndexError, ValueError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("llama.cpp server did not start in time") from None
                time.sleep(0.3)

    def complete(self, **body) -> dict:
        """One non-streaming completion straight from the engine."""
        response = httpx.post(f"{self.base_url}/completions", json={**NEUTRAL, **body}, timeout=120)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        stop(self.proc)
        self._log.close()
