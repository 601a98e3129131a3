"""A fork of a run as a generation request: the parent's tokens up to `position` kept, the
chosen tokens forced there, the rest generated (optionally under interventions). Shared by the
HTTP route and the Python API so both fork the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmvis.generation.errors import GenerationError
from llmvis.plan import Intervention
from llmvis.trace import GenerationRequest, SamplingParams, Trace


class ForkError(GenerationError):
    """A fork the parent cannot have; `field` names the request field at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def fork_request(
    parent: Trace,
    position: int,
    forced: Sequence[int],
    params: SamplingParams | None = None,
    interventions: Sequence[Intervention] = (),
    field: str = "token_id",
) -> GenerationRequest:
    """The parent's request with its generated tokens before `position` and then `forced` forced."""
    start, end = parent.prompt_len, len(parent.tokens)
    if not start <= position <= end:
        raise ForkError(
            f"position {position} is not a generated position of this run: forks start at {start}..{end}", "position"
        )
    for token_id in forced:
        if not 0 <= token_id < parent.model.vocab_size:
            raise ForkError(f"{field} {token_id} is beyond the vocabulary (0..{parent.model.vocab_size - 1})", field)
    kept = parent.ids[start:position]
    update = {
        "forced_tokens": [*kept, *forced],
        "params": params or parent.params,
        "interventions": list(interventions),
    }
    return parent.request.model_copy(update=update)


def fork(
    loaded: Any,
    parent: Trace,
    position: int,
    token_id: int | None = None,
    *,
    token_ids: Sequence[int] | None = None,
    params: SamplingParams | None = None,
    interventions: Sequence[Intervention] = (),
) -> Trace:
    """A new run: `parent` up to `position`, then `token_id` (or `token_ids`) forced, then generated."""
    if token_id is not None and token_ids is not None:
        raise ForkError("give one of token_id and token_ids", "token_ids")
    forced = list(token_ids) if token_ids is not None else ([] if token_id is None else [token_id])
    if not forced and not interventions:
        raise ForkError("give a token to force (or interventions to generate under)", "token_id")
    field = "token_id" if token_ids is None else "token_ids"
    request = fork_request(parent, position, forced, params, interventions, field)
    from llmvis.generation.generate import generate

    trace = generate(loaded, request)
    return trace.model_copy(update={"parent_id": parent.id, "fork_position": position})
