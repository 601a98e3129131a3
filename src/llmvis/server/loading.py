"""Loading another model on the worker, with progress events, then swapping it in between two
generation steps. With a remote engine the model loaded is a local copy for the views, which
must share the engine's vocabulary."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable

import torch

from llmvis.models import load_model
from llmvis.models.errors import ModelLoadError
from llmvis.models.sources import resolve
from llmvis.remote.model import RemoteModel
from llmvis.server.schemas import ErrorEvent, LoadDoneEvent, LoadingState, LoadModelRequest, LoadProgressEvent
from llmvis.server.slot import ModelSlot
from llmvis.server.tickets import END, Busy, LoadTicket, error_message


class ModelLoader:
    def __init__(self, slot: ModelSlot, allow_remote_code: bool, on_swap: Callable[[], None]) -> None:
        """`on_swap()` runs once another model is in (to drop what refers to the old one)."""
        self.slot = slot
        self.on_swap = on_swap
        self.allow_remote_code = allow_remote_code
        self.loading: LoadingState | None = None
        self.last_error: str | None = None
        self._state = threading.Lock()

    def ticket(self, request: LoadModelRequest, loop: asyncio.AbstractEventLoop) -> LoadTicket:
        """Check the request eagerly (ModelLoadError → 400, PermissionError → 403, Busy → 409)."""
        if request.trust_remote_code and not self.allow_remote_code:
            raise PermissionError("trust_remote_code is refused: start the server with --trust-remote-code")
        try:
            resolve(request.spec)
        except OSError as exc:  # e.g. a name too long for the file system
            raise ModelLoadError(f"not a usable model path: {exc.strerror or exc}") from exc
        with self._state:
            if self.loading is not None:
                raise Busy(f"already loading {self.loading.spec}")
            self.loading = LoadingState(spec=request.spec, stage="queued", fraction=0.0)
        return LoadTicket(loop=loop, request=request)

    def load(self, ticket: LoadTicket, remote: RemoteModel | None) -> None:
        """The job on the worker: load, check against the engine's vocabulary, swap in."""
        request = ticket.request
        assert request is not None

        def progress(stage: str, fraction: float) -> None:
            fraction = min(1.0, max(0.0, float(fraction)))
            self.loading = LoadingState(spec=request.spec, stage=stage, fraction=fraction)
            ticket.emit(LoadProgressEvent(stage=stage, fraction=fraction))

        try:
            loaded = load_model(
                request.spec,
                device=None if request.device in (None, "auto") else request.device,
                dtype=None if request.dtype in (None, "auto") else request.dtype,
                trust_remote_code=request.trust_remote_code,
                progress=progress,
            )
            if remote is not None and loaded.info.tokenizer_hash != remote.info.tokenizer_hash:
                raise ValueError(
                    f"{loaded.info.name} has another vocabulary than the engine's {remote.info.name}: "
                    "a local copy for the views must use the same tokenizer"
                )
            old = self.slot.replace(loaded)
            self.on_swap()
            del old  # free the previous model's memory now, not at the next collection
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.last_error = None
            ticket.emit(LoadDoneEvent(model=loaded.info))
        except Exception as exc:
            message = str(exc) if isinstance(exc, ValueError) else error_message(exc)
            self.last_error = message
            ticket.emit(ErrorEvent(message=message))
        finally:
            with self._state:
                self.loading = None
            ticket.finished.set()
            ticket.emit(END)
