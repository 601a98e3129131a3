"""A scripted OpenAI-compatible server for the remote backend's failure paths (the real engine,
llama.cpp, is in llama_engine.py): each test sets what /v1/completions answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def chunk(pieces: list[tuple[str, float, dict[str, float]]], finish: str | None = None) -> dict[str, Any]:
    """A completions stream chunk carrying `pieces` as (token, logprob, top_logprobs)."""
    return {
        "choices": [
            {
                "index": 0,
                "text": "".join(p for p, _, _ in pieces),
                "finish_reason": finish,
                "logprobs": {
                    "tokens": [p for p, _, _ in pieces],
                    "token_logprobs": [lp for _, lp, _ in pieces],
                    "top_logprobs": [top for _, _, top in pieces],
                }
                if pieces
                else None,
            }
        ]
    }


class FakeEngine:
    """`script(handler)` answers POST /v1/completions; `requests` records (headers, body)."""

    def __init__(self, models: tuple[str, ...] = ("fake-model",)) -> None:
        self.models = models
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.script: Callable[[BaseHTTPRequestHandler], None] = lambda h: self.stream(h, [])
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                engine.requests.append((dict(self.headers), {}))
                engine.json(self, 200, {"data": [{"id": m} for m in engine.models]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                engine.requests.append((dict(self.headers), json.loads(self.rfile.read(length) or b"{}")))
                engine.script(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def stream(
        handler: BaseHTTPRequestHandler, chunks: list[dict[str, Any]], *, done: bool = True, delay: float = 0.0
    ) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            for c in chunks:
                time.sleep(delay)
                handler.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
                handler.wfile.flush()
            if done:
                handler.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
