"""A small client for OpenAI-compatible engines (vLLM, SGLang, TGI, llama.cpp's server).

Only what llmvis needs: list the served models and stream a completion. Every failure becomes an
EngineError whose message says what happened in one line; the API key is sent as a bearer token
and appears in no message, log line or repr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx


class EngineError(Exception):
    """The engine could not be reached, refused the request or broke off the stream."""


def normalise_base_url(url: str) -> str:
    """The OpenAI base URL (…/v1); a bare host:port gets /v1 added."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EngineError(f"not an http(s) URL: {url!r}")
    path = parts.path.rstrip("/") or "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


class EngineClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`transport`: httpx's default unless given (tests record the engine's bytes through one)."""
        self.base_url = normalise_base_url(base_url)
        headers = {"Accept": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise EngineError(f"the environment variable {api_key_env} (the API key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"EngineClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def models(self) -> list[str]:
        """Ids of the models the engine serves."""
        with _transport_errors():
            response = self._http.get("/models")
            _raise_for_status(response)
            data = response.json().get("data", [])
        return [str(m.get("id")) for m in data if isinstance(m, dict)]

    def stream_completion(self, body: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """POST /completions with stream=true; yields each chunk. Closing the iterator closes
        the connection, which makes engines abort the request."""
        with _transport_errors(), self._http.stream("POST", "/completions", json={**body, "stream": True}) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for_status(response)
            finished = False
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                chunk = _json(payload)
                if "error" in chunk:
                    raise EngineError(f"the engine reported an error: {_message(chunk)}")
                finished = finished or any(c.get("finish_reason") for c in chunk.get("choices", []))
                yield chunk
            if not finished:
                raise EngineError("the engine closed the connection before the completion finished")


@contextmanager
def _transport_errors() -> Iterator[None]:
    """Turns transport failures into EngineError."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise EngineError(f"cannot reach the engine: {_reason(exc)}") from exc
    except httpx.TimeoutException as exc:
        raise EngineError("the engine stopped answering (timed out)") from exc
    except httpx.TransportError as exc:
        raise EngineError(f"the connection to the engine broke: {_reason(exc)}") from exc


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail = _message(response.json())
    except ValueError:
        detail = response.text[:300]
    raise EngineError(f"the engine refused the request (HTTP {response.status_code}): {detail}")


def _message(body: Any) -> str:
    """The human part of an error body, in the shapes engines use."""
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            value = body.get(key)
            if isinstance(value, dict):
                return _message(value)
            if isinstance(value, list) and value:
                return "; ".join(str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value)[:300]
            if value:
                return str(value)[:300]
    return str(body)[:300]


def _json(payload: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise EngineError(f"the engine sent something that is not JSON: {payload[:80]!r}") from exc
    if not isinstance(value, dict):
        raise EngineError("the engine sent an unexpected chunk")
    return value


def _reason(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
