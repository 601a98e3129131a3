"""`serve(settings)`: load the model with a progress bar, pick a port, print the URL, run uvicorn.

The socket is bound here, before the model loads, so a port in use is reported at once (or,
when the user did not name a port, the next free one is taken) and nothing can take the port
between the check and uvicorn starting. For the same reason torch, transformers and the app are
imported inside the functions, after the port is checked: importing them takes seconds.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable
from typing import Any, TextIO

from llmvis.config import DEFAULT_PORT, Settings
from llmvis.server.security import is_loopback, is_wildcard, resolve_token

PORT_TRIES = 20


class ServeError(RuntimeError):
    """A clear one-line reason the server cannot start; `serve` prints it and exits with 2."""


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket on `port`, or on the first free port from 5050 when port is None."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    candidates = [port] if port is not None else list(range(DEFAULT_PORT, DEFAULT_PORT + PORT_TRIES))
    last: OSError | None = None
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), candidate))
            sock.listen(128)
            sock.set_inheritable(True)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                raise ServeError(f"cannot listen on {host}:{candidate}: {exc.strerror}") from exc
    if port is not None:
        raise ServeError(
            f"port {port} is already in use on {host}: stop the other server or pass another --port"
        ) from last
    raise ServeError(f"ports {candidates[0]}..{candidates[-1]} are all in use on {host}; pass --port") from last


def url_for(host: str, port: int, token: str | None) -> str:
    shown = "127.0.0.1" if is_wildcard(host) else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def progress_bar(out: TextIO = sys.stderr) -> Callable[[str, float], None]:
    """A one-line text progress bar for load_model's progress(stage, fraction) callback."""
    width = 30

    def report(stage: str, fraction: float) -> None:
        filled = int(width * max(0.0, min(1.0, fraction)))
        out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} {stage[:40]:<40}")
        if fraction >= 1.0:
            out.write("\n")
        out.flush()

    return report


def serve(settings: Settings) -> None:
    """Run the server until Ctrl-C (blocking). A reason not to start → stderr, exit status 2."""
    try:
        _serve(settings)
    except ServeError as exc:
        print(f"llmvis: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _load(settings: Settings, sock: socket.socket) -> Any:
    from llmvis.models import ModelLoadError, load_model

    spec = settings.model or "smollm2"
    print(f"loading {spec} …", file=sys.stderr)
    try:
        loaded = load_model(
            spec,
            device=settings.device,
            dtype=settings.dtype,
            device_map=settings.device_map,
            trust_remote_code=settings.trust_remote_code,
            progress=progress_bar(),
        )
    except ModelLoadError as exc:
        sock.close()
        raise ServeError(f"cannot load {spec}: {exc}") from exc
    info = loaded.info
    print(
        f"\rloaded {info.name} ({info.parameters / 1e6:.0f}M parameters, {info.device}, {info.dtype})", file=sys.stderr
    )
    return loaded


def _connect(settings: Settings, sock: socket.socket) -> Any:
    from llmvis.models import ModelLoadError
    from llmvis.remote.model import connect_remote

    assert settings.base_url is not None
    print(f"connecting to {settings.base_url} …", file=sys.stderr)
    try:
        remote = connect_remote(
            settings.base_url,
            settings.model,
            tokenizer=settings.tokenizer,
            api_key_env=settings.api_key_env,
            extra_body=settings.extra_body,
            timeout=settings.engine_timeout,
            trust_remote_code=settings.trust_remote_code,
        )
    except ModelLoadError as exc:
        sock.close()
        raise ServeError(str(exc)) from exc
    print(f"runs go to {remote.info.name} at {remote.client.base_url}", file=sys.stderr)
    return remote


def _serve(settings: Settings) -> None:
    import uvicorn

    from llmvis.server.app import create_app

    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    if settings.port is None and port != DEFAULT_PORT:
        print(f"port {DEFAULT_PORT} is in use; using {port}", file=sys.stderr)
    if not is_loopback(settings.host):
        print(
            f"warning: listening on {settings.host}, reachable from other machines; a token is required",
            file=sys.stderr,
        )
    settings = settings.model_copy(update={"token": resolve_token(settings.host, settings.token)})
    if settings.backend == "openai":
        loaded, remote = None, _connect(settings, sock)
    else:
        loaded, remote = _load(settings, sock), None
    app = create_app(settings, loaded, remote)
    url = url_for(settings.host, port, app.state.token)
    print(f"llmvis is running at {url}  (Ctrl-C to stop)", flush=True)
    if settings.open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])
