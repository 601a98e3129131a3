"""The streaming generation loop: one forward per token, statistics captured on the device.

The loop is deliberately plain — prefill, then one decode step per token with the model's own
KV cache — so that greedy output equals `model.generate(do_sample=False)` and the recorded
probabilities equal the softmax of the scores transformers itself computes. The sampler is
transformers' own warpers (temperature, top-k, top-p) followed by torch.multinomial with a
seeded generator, so the same seed and params give the same tokens.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import torch
from transformers import DynamicCache

from llmvis.generation.chat import build_prompt
from llmvis.generation.detok import IncrementalDetokenizer, Labeler
from llmvis.generation.errors import GenerationError
from llmvis.generation.events import (
    DoneEvent,
    GenerationEvent,
    PromptStatsEvent,
    StartEvent,
    TokenEvent,
)
from llmvis.generation.head import DeferredHead
from llmvis.generation.overlap import PromptStatsJob, can_overlap, prompt_row_pieces
from llmvis.generation.sampling import SamplingParams, build_processors
from llmvis.generation.stats import (
    gc_paused,
    known_rows,
    row_to_stats,
    row_width,
    rows_to_stats,
    step_row,
)
from llmvis.models.info import ModelInfo
from llmvis.models.loaded import LoadedModel
from llmvis.trace import FinishReason, GenerationRequest, Role, Timings, Token, TokenStats, Trace

PREFILL_CHUNK = 512  # prompt positions per forward when their full logits are held at once
DEFERRED_CHUNK = 4096  # per forward when only hidden states are kept: bounds activation memory


class Generation:
    """An iterator of events for one run; `trace` holds everything produced so far."""

    def __init__(self, loaded: LoadedModel, request: GenerationRequest, cancel: threading.Event | None = None) -> None:
        self.loaded = loaded
        self.cancel = cancel or threading.Event()
        prompt = build_prompt(loaded.tokenizer, request)
        self.prompt_ids = prompt.ids
        self.roles = prompt.roles
        self.forced = list(request.forced_tokens)
        self.reply_role: Role | None = "assistant" if request.mode == "chat" else None
        self.params = checked_params(request, len(self.prompt_ids), loaded.info)
        self.labeler = Labeler(loaded.tokenizer)
        self.trace = Trace(
            request=request,
            params=self.params,
            model=loaded.info,
            prompt_len=len(self.prompt_ids),
            title=title_of(request),
        )
        self._events = self._run()

    def __iter__(self) -> Iterator[GenerationEvent]:
        return self

    def __next__(self) -> GenerationEvent:
        return next(self._events)

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> Iterator[GenerationEvent]:
        params, model, device = self.params, self.loaded.model, self.loaded.device
        top_n = params.top_n
        t0 = time.perf_counter()
        known = self.prompt_ids + self.forced
        detok = IncrementalDetokenizer(self.loaded.tokenizer)
        cache = DynamicCache(config=model.config)
        cache_kw = self.loaded.cache_kwargs(cache)
        head = DeferredHead(model) if self.loaded.deferred_head else None
        rows, last_logits = self._prefill(known, cache, top_n, head)
        known_stats: list[TokenStats | None] = [None, *rows_to_stats(rows, top_n, self.labeler, sampled=False)]
        for pos, token_id in enumerate(known):
            is_prompt = pos < len(self.prompt_ids)
            stats = None if head else known_stats[pos]
            self.trace.tokens.append(
                self._token(
                    pos,
                    token_id,
                    detok.push(token_id),
                    "prompt" if is_prompt else "generated",
                    self.roles[pos] if is_prompt else self.reply_role,
                    stats,
                )
            )
        prefill_s = time.perf_counter() - t0
        yield StartEvent(
            run_id=self.trace.id,
            prompt_tokens=list(self.trace.tokens),
            params=params,
            model=self.loaded.info,
        )
        finish: FinishReason = "length"
        first_token_s = 0.0
        processors = build_processors(params)
        # Under a device map the logits may live on another device than the embeddings:
        # statistics and sampling stay where the logits are; only the next id moves.
        head_device = last_logits.device
        generator = torch.Generator(device=head_device).manual_seed(int(params.seed or 0))
        flush_every = 1 if head_device.type == "cpu" else 8
        buffer = torch.full((params.max_new_tokens, row_width(top_n)), float("nan"), device=head_device)
        input_ids = torch.tensor([known], device=head_device)
        stop_ids = self.loaded.stop_ids
        pending: list[tuple[int, int]] = []  # (step, token id) whose rows are not fetched yet
        tail = ""  # the end of the generated text, long enough to hold any stop string
        tail_len = 2 * max((len(x) for x in params.stop), default=0) + 64
        job: PromptStatsJob | None = None
        try:
            # the prompt's statistics are computed beside the decode steps where that is free
            if head is not None and can_overlap(self.loaded):
                job = PromptStatsJob(head, torch.tensor(known), top_n)
            for step in range(params.max_new_tokens):
                if self.cancel.is_set():
                    finish = "cancelled"
                    break
                with torch.inference_mode():
                    raw = last_logits.float()
                    processed = processors(input_ids, raw[None])[0] if processors else raw  # type: ignore[arg-type]
                    if params.greedy:
                        chosen = raw.argmax()
                    else:
                        probs = torch.softmax(processed, -1)
                        chosen = torch.multinomial(probs, 1, generator=generator)[0]
                    step_row(raw, processed, chosen, top_n, buffer[step])
                    token_id = int(chosen)  # the one host sync a step needs
                    pending.append((step, token_id))
                    done = token_id in stop_ids or step == params.max_new_tokens - 1
                    if not done:
                        next_ids = chosen.view(1, 1)
                        input_ids = torch.cat([input_ids, next_ids], dim=1)
                        out = model(input_ids=next_ids.to(device), **cache_kw)
                        last_logits = out.logits[0, -1]
                if job is not None and job.ready and not done:
                    yield self._prompt_stats(job.rows())
                    job = head = None
                if len(pending) >= flush_every or done or self.cancel.is_set():
                    fetched = buffer[pending[0][0] : pending[-1][0] + 1].tolist()
                    for (_, tid), row in zip(pending, fetched, strict=True):
                        piece = detok.push(tid)
                        tail = (tail + piece)[-tail_len:]
                        stats = row_to_stats(row, top_n, self.labeler)
                        token = self._token(len(self.trace.tokens), tid, piece, "generated", self.reply_role, stats)
                        self.trace.tokens.append(token)
                        if not first_token_s:
                            first_token_s = time.perf_counter() - t0
                        yield TokenEvent(token=token)
                    pending.clear()
                if token_id in stop_ids:
                    finish = "eos"
                    break
                if params.stop and any(s in tail for s in params.stop):
                    finish = "stop"
                    break
        except BaseException as exc:
            if job is not None:
                job.close()
            self._finish(
                "error" if not isinstance(exc, GeneratorExit) else "cancelled",
                t0,
                prefill_s,
                first_token_s,
                error=str(exc) or type(exc).__name__,
            )
            raise
        if job is not None:
            yield self._prompt_stats(job.rows())
        elif head is not None:
            yield self._prompt_stats(list(prompt_row_pieces(head, torch.tensor(known), top_n, PREFILL_CHUNK)))
        self._finish(finish, t0, prefill_s, first_token_s)
        yield DoneEvent(
            run_id=self.trace.id,
            finish_reason=finish,
            timings=self.trace.timings,
            text=self.trace.text,
        )

    def _prefill(
        self, known: list[int], cache: DynamicCache, top_n: int, head: DeferredHead | None
    ) -> tuple[list[list[float]], torch.Tensor]:
        """Run the prompt through the model in chunks; returns the logits after the last position
        and, unless a deferred head keeps the hidden states for later, the rows of every known
        token given its prefix."""
        model, device = self.loaded.model, self.loaded.device
        ids = torch.tensor(known, device=device)
        rows: list[list[float]] = []
        last = None
        with torch.inference_mode():
            step = PREFILL_CHUNK if head is None else DEFERRED_CHUNK
            for start in range(0, len(known), step):
                chunk = ids[start : start + step]
                if head is not None:
                    with head.capture():
                        out = model(input_ids=chunk[None], logits_to_keep=1, **self.loaded.cache_kwargs(cache))
                    last = out.logits[0, -1].float()
                    continue
                out = model(input_ids=chunk[None], **self.loaded.cache_kwargs(cache))
                logits = out.logits[0].float()
                rows.extend(known_rows(logits, ids, start, top_n).tolist())
                last = logits[-1]
                del out, logits
        assert last is not None
        return rows, last

    def _prompt_stats(self, pieces: list[torch.Tensor]) -> PromptStatsEvent:
        """The deferred prompt statistics, from the rows of every prompt position but the first."""
        with gc_paused():
            rows = [row for piece in pieces for row in piece.tolist()]
            stats: list[TokenStats | None] = [None, *rows_to_stats(rows, self.params.top_n, self.labeler, False)]
            for pos in range(1, len(stats)):
                # a new Token (fields already validated): the start event handed out the original
                token = self.trace.tokens[pos]
                self.trace.tokens[pos] = Token.model_construct(**{**vars(token), "stats": stats[pos]})
            return PromptStatsEvent(run_id=self.trace.id, stats=stats)

    def _token(self, pos, token_id, piece, kind, role, stats) -> Token:
        return Token(
            position=pos,
            id=token_id,
            text=piece,
            label=self.labeler(token_id),
            kind=kind,
            role=role,
            special=token_id in self.labeler.special_ids,
            stats=stats,
        )

    def _finish(self, finish, t0, prefill_s, first_token_s, error: str | None = None) -> None:
        total = time.perf_counter() - t0
        n = len(self.trace.tokens) - self.trace.prompt_len - len(self.forced)
        self.trace.finish_reason = finish
        self.trace.error = error
        self.trace.timings = Timings(
            prefill_s=prefill_s,
            first_token_s=first_token_s,
            decode_s=max(0.0, total - prefill_s),
            total_s=total,
            tokens_per_s=n / total if total > 0 else 0.0,
        )


def checked_params(request: GenerationRequest, prompt_len: int, info: ModelInfo) -> SamplingParams:
    """The request's params with the seed resolved (a drawn one is recorded, so every run can be
    replayed), after checking that forced ids and the length fit the model."""
    forced = request.forced_tokens
    if any(not 0 <= t < info.vocab_size for t in forced):
        raise GenerationError(f"forced token ids must be in [0, {info.vocab_size})")
    start_len, wanted = prompt_len + len(forced), request.params.max_new_tokens
    if start_len + wanted > info.context_length:
        raise GenerationError(
            f"prompt ({start_len} tokens) + max_new_tokens ({wanted}) = {start_len + wanted} "
            f"exceeds the model's context length ({info.context_length})"
        )
    seed = request.params.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    return request.params.model_copy(update={"seed": seed})


def title_of(request: GenerationRequest) -> str:
    text = request.prompt or next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    text = " ".join(text.split())
    return text[:80] + ("…" if len(text) > 80 else "")


def start_generation(
    loaded: LoadedModel, request: GenerationRequest, cancel: threading.Event | None = None
) -> Generation:
    """Validate the request (raising GenerationError) and return its event iterator."""
    return Generation(loaded, request, cancel)


def generate(loaded: LoadedModel, request: GenerationRequest) -> Trace:
    """Run to the end and return the Trace."""
    generation = start_generation(loaded, request)
    for _ in generation:
        pass
    return generation.trace
