"""Helpers for the server tests: an app around a tiny model, a browser-like SSE parser and a
real uvicorn server in a thread (for concurrency and disconnect tests, which an in-process
ASGI client cannot show)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmvis.config import Settings
from llmvis.server.app import create_app
from processes import free_port

BASE = "http://127.0.0.1:5050"


def make_app(data_dir: Path, loaded: Any = None, **settings: Any) -> FastAPI:
    return create_app(Settings(data_dir=data_dir, **settings), loaded=loaded)


@contextmanager
def client(app: FastAPI, base_url: str = BASE) -> Iterator[TestClient]:
    with TestClient(app, base_url=base_url) as c:
        yield c


@dataclass
class SSEEvent:
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(body: bytes) -> list[SSEEvent]:
    """Parse an event stream exactly as the HTML spec's EventSource does (UTF-8, any newline,
    comments ignored, `data` lines joined with newlines, dispatch on a blank line)."""
    text = body.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    events: list[SSEEvent] = []
    event_type, data = "", []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data:
                events.append(SSEEvent(event_type or "message", "\n".join(data)))
            event_type, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event_type = value
        elif field == "data":
            data.append(value)
    return events


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port in a thread; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
