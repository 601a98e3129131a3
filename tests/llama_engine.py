"""llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on the bundled GGUF: a real
engine for the remote backend's tests. `make test` installs it; when it is missing the tests
that need it fail under CI and skip elsewhere."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processes import free_port, stop

# llama-cpp-python's own defaults would penalise repeats (1.1) and truncate sampling (top_k 40,
# min_p 0.05); the tests compare against plain greedy, so requests say so.
NEUTRAL = {"repeat_penalty": 1.0, "min_p": 0.0}


class RecordingTransport(httpx.BaseTransport):
    """httpx's own transport, keeping every request body and the exact bytes the engine sent back
    in the same exchange: what a test compares llmvis's trace with. Two separate requests to
    llama.cpp need not answer alike (CPU kernels, batch split, prompt cache), one request does."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.exchanges: list[tuple[dict[str, Any], int, bytearray]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        body = json.loads(request.read() or b"{}")
        received = bytearray()
        self.exchanges.append((body, response.status_code, received))
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, received),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()

    def streamed(self) -> tuple[str, list[tuple[str, float, dict[str, float]]]]:
        """The text the last accepted completion streamed, and its tokens as (piece, logprob,
        top logprobs)."""
        body, _, received = next(e for e in reversed(self.exchanges) if e[1] == 200 and "prompt" in e[0])
        assert body.get("stream") is True
        text, tokens = "", []
        for line in received.decode("utf-8").splitlines():
            payload = line.removeprefix("data:").strip()
            if not line.startswith("data:") or payload == "[DONE]":
                continue
            choice = json.loads(payload)["choices"][0]
            text += choice.get("text") or ""
            logprobs = choice.get("logprobs") or {}
            tokens += zip(
                logprobs.get("tokens", []),
                logprobs.get("token_logprobs", []),
                logprobs.get("top_logprobs", []),
                strict=True,
            )
        return text, tokens


class _Tee(httpx.SyncByteStream):
    def __init__(self, stream: Any, into: bytearray) -> None:
        self._stream, self._into = stream, into

    def __iter__(self) -> Iterator[bytes]:
        for part in self._stream:
            self._into += part
            yield part

    def close(self) -> None:
        self._stream.close()


def require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("sse_starlette") is None:
        message = "llama-cpp-python[server] is not installed (make test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class LlamaServer:
    """`python -m llama_cpp.server` on a free loopback port; `base_url` ends in /v1.

    The engine is a fixture, not what is tested: if it has died between two tests (a crash, the
    OOM killer), `ensure_running` says so as a warning, with its exit code and log, and starts
    it again on the same port, so one lost engine does not fail every remote test after it."""

    def __init__(self, gguf: Path, log: Path, timeout: float = 120.0) -> None:
        self.gguf, self.log, self.timeout = gguf, log, timeout
        self.restarts: list[str] = []
        for attempt in range(3):  # another process may take the free port before the engine binds it
            self.port = free_port()
            self.base_url = f"http://127.0.0.1:{self.port}/v1"
            try:
                self._start()
                return
            except RuntimeError:
                if attempt == 2 or "address already in use" not in log.read_text().lower():
                    raise

    def _start(self) -> None:
        self._log = open(self.log, "a")  # noqa: SIM115
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "2048",
            "--logits_all",
            "true",
            "--n_threads",
            "2",
            "--verbose",
            "false",
            "--interrupt_requests",
            "false",
        ]  # queue, do not cut, concurrent runs
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"llama.cpp server exited; log:\n{self.log.read_text()[-3000:]}")
            try:
                models = httpx.get(f"{self.base_url}/models", timeout=2).json()["data"]
                self.model = models[0]["id"]
                return
            except (httpx.HTTPError, KeyError, IndexError, ValueError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("llama.cpp server did not start in time") from None
                time.sleep(0.3)

    def ensure_running(self) -> None:
        code = self.proc.poll()
        if code is None:
            return
        self._log.close()
        why = f"the llama.cpp engine had exited (code {code}); restarted. Its log:\n{self.log.read_text()[-2000:]}"
        self.restarts.append(why)
        warnings.warn(why, stacklevel=2)
        self._start()

    def complete(self, **body) -> dict:
        """One non-streaming completion straight from the engine."""
        response = httpx.post(f"{self.base_url}/completions", json={**NEUTRAL, **body}, timeout=120)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        stop(self.proc)
        self._log.close()
