"""RemoteModel: a model served by an OpenAI-compatible engine, named with a local tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit

from llmvis.arch import text_config
from llmvis.models.errors import ModelLoadError
from llmvis.models.info import ModelInfo
from llmvis.models.load import load_tokenizer
from llmvis.models.loaded import eos_ids, tokenizer_hash
from llmvis.remote.client import EngineClient, EngineError
from llmvis.remote.tokens import TokenMap

DEFAULT_CONTEXT = 4096  # when neither the config nor the tokenizer says


@dataclass
class RemoteModel:
    client: EngineClient
    engine_model: str  # the name the engine serves it under
    tokenizer: Any
    info: ModelInfo
    stop_ids: frozenset[int]
    token_map: TokenMap
    extra_body: dict[str, Any] = field(default_factory=dict)  # engine-specific request fields
    tokenizer_spec: str = ""  # the local spec the tokenizer came from: what a local copy loads
    max_logprobs: int | None = None  # the engine's limit on top logprobs, once it refused more

    def close(self) -> None:
        self.client.close()


def connect_remote(
    base_url: str,
    model: str | None = None,
    *,
    tokenizer: str | None = None,
    api_key_env: str | None = None,
    extra_body: dict[str, Any] | None = None,
    timeout: float = 120.0,
    trust_remote_code: bool = False,
) -> RemoteModel:
    """Check that the engine answers and serves `model`, and load its tokenizer locally.

    Raises ModelLoadError with a one-line reason (engine unreachable, model not served,
    tokenizer not found)."""
    try:
        client = EngineClient(base_url, api_key_env=api_key_env, timeout=timeout)
        served = client.models()
    except EngineError as exc:
        raise ModelLoadError(f"remote engine at {base_url}: {exc}") from exc
    if model is None:
        if len(served) != 1:
            client.close()
            raise ModelLoadError(f"the engine serves {len(served)} models ({', '.join(served)}): pass --model NAME")
        model = served[0]
    elif served and model not in served:
        client.close()
        raise ModelLoadError(f"the engine does not serve {model!r}; it serves: {', '.join(served)}")
    spec = tokenizer or model
    try:
        tok, config, _ = load_tokenizer(spec, trust_remote_code=trust_remote_code)
    except ModelLoadError as exc:
        client.close()
        raise ModelLoadError(
            f"the remote backend names tokens with the model's tokenizer, found locally: {exc}. "
            "Pass --tokenizer with a model directory, a .gguf or a model id in the local HF cache"
        ) from exc
    info = _describe(tok, config, display_name(model), client.base_url)
    return RemoteModel(client, model, tok, info, eos_ids(tok, config), TokenMap(tok), dict(extra_body or {}), spec)


def display_name(served: str) -> str:
    """llama.cpp serves a model under its file path: show the file name; hub ids stay whole."""
    return PurePath(served).name if served.startswith(("/", "~", ".")) else served


def _describe(tokenizer: Any, config: Any | None, name: str, base_url: str) -> ModelInfo:
    cfg = text_config(config) if config is not None else None

    def read(attr: str, default: int = 0) -> int:
        value = getattr(cfg, attr, None) if cfg is not None else None
        return int(value) if isinstance(value, int) else default

    heads = read("num_attention_heads")
    hidden = read("hidden_size")
    context = read("max_position_embeddings") or int(min(getattr(tokenizer, "model_max_length", 0) or 0, 1_000_000))
    return ModelInfo(
        name=name,
        source="remote",
        path=base_url,
        architecture=((getattr(config, "architectures", None) or ["remote"])[0]) if config is not None else "remote",
        model_type=str(getattr(cfg, "model_type", "remote")),
        layers=read("num_hidden_layers"),
        heads=heads,
        kv_heads=read("num_key_value_heads", heads),
        head_dim=read("head_dim", hidden // heads if heads else 0),
        hidden_size=hidden,
        intermediate_size=read("intermediate_size") or None,
        vocab_size=len(tokenizer),
        context_length=context or DEFAULT_CONTEXT,
        dtype="remote",
        device=urlsplit(base_url).netloc,
        parameters=0,
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        tokenizer_hash=tokenizer_hash(tokenizer),
    )
