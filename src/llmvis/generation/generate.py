"""The streaming generation loop: one forward per token, statistics captured on the device.

The loop is deliberately plain — prefill, then one decode step per token with the model's own
KV cache — so that greedy output equals `model.generate(do_sample=False)` and the recorded
probabilities equal the softmax of the scores transformers itself computes. The sampler is
transformers' own warpers (temperature, top-k, top-p) followed by torch.multinomial with a
seeded generator, so the same seed and params give the same tokens.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, Protocol

import torch
from transformers import DynamicCache, LogitsProcessorList

from llmvis.arch import NotAvailable
from llmvis.capture import AttentionRecord, Capture, Recorder
from llmvis.generation.attention_ahead import MeanAttentionJob
from llmvis.generation.errors import GenerationError
from llmvis.generation.events import GenerationEvent, PromptStatsEvent, TokenEvent
from llmvis.generation.head import DeferredHead, defers_prompt_logits
from llmvis.generation.overlap import PromptStatsJob, can_overlap, prompt_row_pieces
from llmvis.generation.recorder import RunRecorder
from llmvis.generation.sampling import build_processors
from llmvis.generation.stats import (
    gc_paused,
    known_rows,
    row_to_stats,
    row_width,
    rows_to_stats,
    step_row,
)
from llmvis.interventions import InterventionError, Window, intervening, plan_for_generation
from llmvis.kept_attention import Staircase
from llmvis.models.loaded import LoadedModel
from llmvis.trace import FinishReason, GenerationRequest, Token, TokenStats, Trace

log = logging.getLogger("llmvis")


class CaptureSink(Protocol):
    """Where a run's capture goes (the server's cache), and whether one of n positions fits; with
    it, the rows of each layer's Ā computed during the run (attention_ahead.py), in Staircases
    the sink gives out for a run of n positions (None: no room for them)."""

    def fits(self, positions: int) -> bool: ...

    def staircase(self, positions: int) -> Staircase | None: ...

    def __call__(self, ids: list[int], capture: Capture, mean_attention: dict[int, Staircase]) -> None: ...


PREFILL_CHUNK = 512  # prompt positions per forward when their full logits are held at once
DEFERRED_CHUNK = 4096  # per forward when only hidden states are kept: bounds activation memory


class Generation:
    """An iterator of events for one run; `trace` holds everything produced so far.

    With `keep_capture`, the run's capture (capture.py) is kept as its forwards compute it:
    prefill and decode steps already run every layer over every position, so the views'
    residual stream, block outputs, queries and keys are recorded then, plus one step for the
    last token, and handed to `keep_capture(ids, capture)` before the done event, so a click
    on a view finds it ready. A recording that fails leaves the run as it is (no capture).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        request: GenerationRequest,
        cancel: threading.Event | None = None,
        keep_capture: CaptureSink | None = None,
    ) -> None:
        self.loaded = loaded
        self.cancel = cancel or threading.Event()
        self.keep_capture = keep_capture
        self._recorder: Recorder | None = None
        self.recorder = RunRecorder(loaded.tokenizer, loaded.labeler, loaded.info, request)
        self.params = self.recorder.params
        self.trace = self.recorder.trace
        self._head: DeferredHead | None = None  # keeps the prompt's hidden states until their stats are sent
        self._job: PromptStatsJob | None = None  # computes those stats beside the decode steps
        # the prefill's attention records, for Ā
        self._known_records: list[Callable[[], AttentionRecord] | None] | None = None
        self._attention_job: MeanAttentionJob | None = None  # the known rows of Ā, after the stats
        self._mean_attention: dict[int, Staircase] = {}  # what that job made, once it is done
        self._plan: Any = None  # (internals, steps, window) of the interventions applied while generating
        if request.interventions:
            try:
                internals, steps = plan_for_generation(
                    loaded, self.recorder.known, request.interventions, self.params.max_new_tokens
                )
            except InterventionError as exc:
                raise GenerationError(str(exc)) from exc
            self._plan = (internals, steps, Window())
        self._position = 0  # where the next forward's positions start
        self._events = self._run()

    def __iter__(self) -> Iterator[GenerationEvent]:
        return self

    def __next__(self) -> GenerationEvent:
        return next(self._events)

    def _run(self) -> Iterator[GenerationEvent]:
        """Prefill, start event, decode steps (with the prompt's statistics among them), done."""
        self.recorder.start()
        model = self.loaded.model
        self._head = DeferredHead(model) if defers_prompt_logits(self.loaded) else None
        cache = DynamicCache(config=model.config)
        self._open_recorder()
        try:
            if self._plan is None:
                yield from self._steps(cache)
            else:
                internals, steps, window = self._plan
                window.thread = threading.get_ident()
                with intervening(internals, steps, window):
                    yield from self._steps(cache)
        finally:
            if self._recorder is not None:
                self._recorder.close()
                self._recorder = None

    def _steps(self, cache: DynamicCache) -> Iterator[GenerationEvent]:
        rec, top_n = self.recorder, self.params.top_n
        rows, last_logits = self._prefill(rec.known, cache)
        known_stats: list[TokenStats | None] = (
            [None] * len(rec.known)
            if self._head is not None
            else [None, *rows_to_stats(rows, top_n, self.loaded.labeler, sampled=False)]
        )
        start = rec.add_known(known_stats)
        prefill_s = time.perf_counter() - rec.t0
        yield start
        if self._head is not None and can_overlap(self.loaded):  # free beside the decode steps
            self._job = PromptStatsJob(self._head, torch.tensor(rec.known), top_n)
            if self._recorder is not None:
                self._known_records = self._recorder.known_records()
        try:
            finish = yield from self._decode(last_logits, cache)
        except BaseException as exc:
            if self._job is not None:
                self._job.close()
            if self._attention_job is not None:
                self._attention_job.take()
            rec.fail(exc, prefill_s)
            raise
        self._keep_capture(
            cache, self._attention_job.take() if self._attention_job is not None else self._mean_attention
        )
        if self._head is not None:  # the prompt's statistics are not sent yet
            yield self._prompt_stats()
        yield rec.finish(finish, prefill_s)

    # ------------------------------------------------------------------ the kept capture

    def _open_recorder(self) -> None:
        keep = self.keep_capture
        if keep is None or not keep.fits(len(self.recorder.known) + self.params.max_new_tokens):
            return
        if self._plan is not None:  # the views show the unmodified model on the run's tokens
            return
        try:
            self._recorder = Recorder(self.loaded.arch, steps=self.params.max_new_tokens).open()
        except Exception:  # an architecture the seam cannot read: the run goes on without
            log.debug("no capture during generation", exc_info=True)

    @contextlib.contextmanager
    def _recording(self, n: int) -> Iterator[None]:
        """Around each forward of n new positions: recorded when the capture is kept, and the
        interventions told which positions it covers."""
        if self._plan is not None:
            self._plan[2].offset = self._position
        with contextlib.nullcontext() if self._recorder is None else self._recorder.forward(n):
            yield
        self._position += n

    def _start_mean_attention(self) -> None:
        """The known positions' rows of Ā on the core the prompt's statistics used, when the
        capture is kept and the sink has room for them."""
        records, self._known_records = self._known_records, None
        keep = self.keep_capture
        if records is None or keep is None or not any(records):
            return
        positions = len(self.recorder.known) + self.params.max_new_tokens
        self._attention_job = MeanAttentionJob(records, len(self.recorder.known), lambda: keep.staircase(positions))

    def _keep_capture(self, cache: DynamicCache, mean_attention: dict[int, Staircase]) -> None:
        """Run the last token through the model (its states are the views' too), then hand the
        capture over (with the rows of Ā computed meanwhile); the recorder is closed either way."""
        recorder, self._recorder = self._recorder, None
        if recorder is None or self.keep_capture is None:
            return
        try:
            ids = self.trace.ids
            if recorder.positions == len(ids) - 1:
                with torch.inference_mode(), recorder.forward(1):
                    last = torch.tensor([[ids[-1]]], device=self.loaded.device)
                    self.loaded.model(input_ids=last, logits_to_keep=1, **self.loaded.cache_kwargs(cache))
            if recorder.positions == len(ids):
                with torch.no_grad():
                    self.keep_capture(ids, recorder.capture(), mean_attention)
        except NotAvailable as exc:
            log.debug("the capture kept during generation is unusable: %s", exc)
        finally:
            recorder.close()

    def _prefill(self, known: list[int], cache: DynamicCache) -> tuple[list[list[float]], torch.Tensor]:
        """Run the prompt through the model in chunks; returns the logits after the last position
        and, unless a deferred head keeps the hidden states for later, the rows of every known
        token given its prefix."""
        model, device, head, top_n = self.loaded.model, self.loaded.device, self._head, self.params.top_n
        ids = torch.tensor(known, device=device)
        rows: list[list[float]] = []
        last = None
        with torch.inference_mode():
            step = PREFILL_CHUNK if head is None else DEFERRED_CHUNK
            for start in range(0, len(known), step):
                chunk = ids[start : start + step]
                if head is not None:
                    with head.capture(), self._recording(len(chunk)):
                        out = model(input_ids=chunk[None], logits_to_keep=1, **self.loaded.cache_kwargs(cache))
                    last = out.logits[0, -1].float()
                    continue
                with self._recording(len(chunk)):
                    out = model(input_ids=chunk[None], **self.loaded.cache_kwargs(cache))
                logits = out.logits[0].float()
                rows.extend(known_rows(logits, ids, start, top_n).tolist())
                last = logits[-1]
                del out, logits
        assert last is not None
        return rows, last

    def _decode(self, logits: torch.Tensor, cache: DynamicCache) -> Generator[GenerationEvent, None, FinishReason]:
        """One step per new token until a stop token, a stop string, max_new_tokens or a cancel.

        A step's statistics go into a row of a device buffer; rows are fetched (turned into token
        events) every `fetch_every` steps. The prompt's deferred statistics go out between two
        steps as soon as their job has them."""
        params, model, device = self.params, self.loaded.model, self.loaded.device
        cache_kw = self.loaded.cache_kwargs(cache)
        processors = build_processors(params)
        # Under a device map the logits may live on another device than the embeddings:
        # statistics and sampling stay where the logits are; only the next id moves.
        head_device = logits.device
        generator = torch.Generator(device=head_device).manual_seed(int(params.seed or 0))
        fetch_every = 1 if head_device.type == "cpu" else 8
        buffer = torch.full((params.max_new_tokens, row_width(params.top_n)), float("nan"), device=head_device)
        input_ids = torch.tensor([self.recorder.known], device=head_device)
        stop_ids = self.loaded.stop_ids
        stop_strings = _StopStrings(params.stop)
        pending: list[tuple[int, int]] = []  # (step, token id) whose rows are not fetched yet
        for step in range(params.max_new_tokens):
            if self.cancel.is_set():
                return "cancelled"
            with torch.inference_mode():
                chosen = self._sample(logits, input_ids, processors, generator, buffer[step])
                token_id = int(chosen)  # the one host sync a step needs
                pending.append((step, token_id))
                done = token_id in stop_ids or step == params.max_new_tokens - 1
                if not done:
                    next_ids = chosen.view(1, 1)
                    input_ids = torch.cat([input_ids, next_ids], dim=1)
                    with self._recording(1):
                        logits = model(input_ids=next_ids.to(device), **cache_kw).logits[0, -1]
            if self._job is not None and self._job.ready and not done:
                yield self._prompt_stats()
                self._start_mean_attention()
            if self._attention_job is not None and self._attention_job.done:  # its core back to the loop
                self._mean_attention, self._attention_job = self._attention_job.take(), None
            if len(pending) >= fetch_every or done or self.cancel.is_set():
                for event in self._fetch(buffer, pending):
                    stop_strings.add(event.token.text)
                    yield event
                pending.clear()
            if token_id in stop_ids:
                return "eos"
            if stop_strings.found:
                return "stop"
        return "length"

    def _sample(
        self,
        logits: torch.Tensor,
        input_ids: torch.Tensor,
        processors: LogitsProcessorList,
        generator: torch.Generator,
        row: torch.Tensor,
    ) -> torch.Tensor:
        """The next token (greedy: the raw argmax, as `generate` picks it), its statistics in `row`."""
        raw = logits.float()
        processed = processors(input_ids, raw[None])[0] if processors else raw  # type: ignore[arg-type]
        if self.params.greedy:
            chosen = raw.argmax()
        else:
            chosen = torch.multinomial(torch.softmax(processed, -1), 1, generator=generator)[0]
        step_row(raw, processed, chosen, self.params.top_n, row)
        return chosen

    def _fetch(self, buffer: torch.Tensor, pending: list[tuple[int, int]]) -> Iterator[TokenEvent]:
        """Token events for the pending steps, from their rows fetched in one copy."""
        fetched = buffer[pending[0][0] : pending[-1][0] + 1].tolist()
        for (_, token_id), row in zip(pending, fetched, strict=True):
            stats = row_to_stats(row, self.params.top_n, self.loaded.labeler)
            yield self.recorder.add_generated(token_id, stats)

    def _prompt_stats(self) -> PromptStatsEvent:
        """The deferred prompt statistics, from the job beside the decode, or computed now."""
        job, head, top_n = self._job, self._head, self.params.top_n
        self._job = self._head = None
        assert head is not None
        known = torch.tensor(self.recorder.known)
        pieces = job.rows() if job is not None else list(prompt_row_pieces(head, known, top_n, PREFILL_CHUNK))
        with gc_paused():
            rows = [row for piece in pieces for row in piece.tolist()]
            stats: list[TokenStats | None] = [None, *rows_to_stats(rows, top_n, self.loaded.labeler, False)]
            tokens = self.trace.tokens
            for pos in range(1, len(stats)):
                # a new Token (fields already validated): the start event handed out the original
                tokens[pos] = Token.model_construct(**{**vars(tokens[pos]), "stats": stats[pos]})
            return PromptStatsEvent(run_id=self.trace.id, stats=stats)


class _StopStrings:
    """The end of the generated text, long enough to hold any stop string, and whether one is in it."""

    def __init__(self, stop: list[str]) -> None:
        self.stop = stop
        self.keep = 2 * max((len(x) for x in stop), default=0) + 64
        self.tail = ""

    def add(self, piece: str) -> None:
        self.tail = (self.tail + piece)[-self.keep :]

    @property
    def found(self) -> bool:
        return any(s in self.tail for s in self.stop)


def start_generation(
    loaded: LoadedModel,
    request: GenerationRequest,
    cancel: threading.Event | None = None,
    keep_capture: CaptureSink | None = None,
) -> Generation:
    """Validate the request (raising GenerationError) and return its event iterator."""
    return Generation(loaded, request, cancel, keep_capture)


def generate(loaded: LoadedModel, request: GenerationRequest) -> Trace:
    """Run to the end and return the Trace."""
    generation = start_generation(loaded, request)
    for _ in generation:
        pass
    return generation.trace
