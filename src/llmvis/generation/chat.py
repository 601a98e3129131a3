"""Turning a request into prompt token ids, with the chat role of every prompt token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmvis.generation.errors import GenerationError
from llmvis.trace import ChatMessage, GenerationRequest, Role


@dataclass
class Prompt:
    ids: list[int]
    roles: list[Role | None]  # one per id; None in completion mode
    messages: list[ChatMessage]
    text: str  # what was tokenised (a remote engine is sent this text)


def conversation(request: GenerationRequest) -> list[ChatMessage]:
    messages = list(request.messages)
    if request.system:
        messages.insert(0, ChatMessage(role="system", content=request.system))
    if request.prompt:
        messages.append(ChatMessage(role="user", content=request.prompt))
    return messages


def build_prompt(tokenizer: Any, request: GenerationRequest) -> Prompt:
    if request.mode == "completion":
        if not request.prompt:
            raise GenerationError("the prompt is empty")
        ids = tokenizer(request.prompt).input_ids
        return Prompt(list(ids), [None] * len(ids), [], request.prompt)
    if not getattr(tokenizer, "chat_template", None):
        raise GenerationError("this model has no chat template; use Completion mode")
    messages = conversation(request)
    if not any(m.content for m in messages):
        raise GenerationError("the conversation is empty: type a message")
    text = _render(tokenizer, messages, add_generation_prompt=True)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded.input_ids)
    roles = _roles(tokenizer, messages, [start for start, _ in encoded.offset_mapping])
    return Prompt(ids, roles, messages, text)


def _render(tokenizer: Any, messages: list[ChatMessage], *, add_generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(
            [m.model_dump() for m in messages],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
    except Exception as exc:  # templates raise on conversations they do not accept
        raise GenerationError(f"the chat template rejected this conversation: {exc}") from exc


def _roles(tokenizer: Any, messages: list[ChatMessage], starts: list[int]) -> list[Role | None]:
    """Role of each token: the message whose rendered prefix first covers the token's start.

    Rendering the conversation one message longer at a time gives each message's end offset;
    the generation prompt at the end belongs to the assistant.
    """
    ends: list[int] = []
    for k in range(1, len(messages) + 1):
        try:
            ends.append(len(_render(tokenizer, messages[:k], add_generation_prompt=False)))
        except GenerationError:
            return [None] * len(starts)
    spans = list(zip(ends, (m.role for m in messages), strict=True))
    injected = _injected_system_end(tokenizer, messages)
    if injected:
        spans.insert(0, (injected, "system"))
    roles: list[Role | None] = []
    for start in starts:
        role: Role = "assistant"
        for end, span_role in spans:
            if start < end:
                role = span_role
                break
        roles.append(role)
    return roles


_SENTINEL = "\u2063"  # a character no template adds by itself


def _injected_system_end(tokenizer: Any, messages: list[ChatMessage]) -> int:
    """Length of a default system turn the template adds on its own (SmolLM2 and Qwen2 do when
    the conversation has none), so that its tokens are tagged "system", not "user"; else 0.

    Rendering [system: sentinel] + first message shows the text that follows a system turn;
    if the plain rendering ends with that same text, what precedes it is the injected turn.
    """
    if not messages or messages[0].role == "system":
        return 0
    system = ChatMessage(role="system", content=_SENTINEL)
    try:
        alone = _render(tokenizer, [system], add_generation_prompt=False)
        both = _render(tokenizer, [system, messages[0]], add_generation_prompt=False)
        plain = _render(tokenizer, messages[:1], add_generation_prompt=False)
    except GenerationError:
        return 0
    if not both.startswith(alone):
        return 0
    rest = both[len(alone) :]
    if rest and plain.endswith(rest) and len(plain) > len(rest):
        return len(plain) - len(rest)
    return 0
