"""LoadedModel: a causal LM, its tokenizer and its ModelInfo, ready for generation and views."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from llmvis.arch import Architecture, architecture_of, text_config
from llmvis.models.info import ModelInfo
from llmvis.tokens import Labeler


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel (a *ForCausalLM), in eval mode
    tokenizer: Any  # transformers PreTrainedTokenizer(Fast)
    info: ModelInfo
    stop_ids: frozenset[int] = field(default_factory=frozenset)
    # whether prompt logits may be computed after generation: probed once by generation/head.py
    deferred_head: bool | None = field(default=None, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the input embeddings (first shard under a device map)."""
        return self.model.get_input_embeddings().weight.device

    @property
    def config(self) -> Any:
        return self.model.config

    @cached_property
    def arch(self) -> Architecture:
        """Where this model's parts are and how its blocks are wired (the architecture seam)."""
        return architecture_of(self.model)

    @cached_property
    def labeler(self) -> Labeler:
        """Readable token labels, cached for the model's lifetime (and gone with it)."""
        return Labeler(self.tokenizer)

    def cache_kwargs(self, cache: Any) -> dict[str, Any]:
        """The KV cache as a forward() keyword: transformers renamed past_key_values to cache."""
        return {cache_keyword(self.model): cache, "use_cache": True}


def cache_keyword(model: Any) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def config_value(cfg: Any, name: str) -> Any:
    """A config attribute, or None: missing, or per layer (Gemma 4's head_dim raises on a global read)."""
    try:
        return getattr(cfg, name, None)
    except Exception:
        return None


def describe(model: Any, tokenizer: Any, *, name: str, source: str, path: str) -> ModelInfo:
    cfg = text_config(model.config)
    heads = int(cfg.num_attention_heads)
    hidden = int(cfg.hidden_size)
    head_dim = int(config_value(cfg, "head_dim") or hidden // heads)
    param = next(model.parameters())
    context = getattr(cfg, "max_position_embeddings", None) or getattr(tokenizer, "model_max_length", None) or 2048
    return ModelInfo(
        name=name,
        source=source,  # type: ignore[arg-type]
        path=path,
        architecture=(model.config.architectures or [type(model).__name__])[0],
        model_type=str(cfg.model_type),
        layers=int(cfg.num_hidden_layers),
        heads=heads,
        kv_heads=int(config_value(cfg, "num_key_value_heads") or heads),
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=intermediate
        if isinstance(intermediate := config_value(cfg, "intermediate_size"), int)
        else None,
        vocab_size=int(model.get_output_embeddings().weight.shape[0]),
        context_length=int(min(context, 1_000_000)),
        dtype=str(param.dtype).removeprefix("torch."),
        device=_devices(model, param),
        parameters=sum(p.numel() for p in model.parameters()),
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        tokenizer_hash=tokenizer_hash(tokenizer),
    )


def tokenizer_hash(tokenizer: Any) -> str:
    """A short fingerprint of the vocabulary (token strings and ids)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    digest = hashlib.sha1("\n".join(f"{i}\t{t}" for t, i in vocab).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def _devices(model: Any, param: torch.Tensor) -> str:
    """The device, or under a device map every device the layers sit on ("cuda:0+cpu")."""
    mapping = getattr(model, "hf_device_map", None)
    if not mapping:
        return str(param.device)
    seen: list[str] = []
    for value in mapping.values():
        name = f"cuda:{value}" if isinstance(value, int) else str(value)
        if name not in seen:
            seen.append(name)
    return "+".join(seen)


def stop_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """EOS ids from the generation config, the model config and the tokenizer."""
    return eos_ids(tokenizer, getattr(model, "generation_config", None), model.config)


def eos_ids(tokenizer: Any, *configs: Any) -> frozenset[int]:
    """EOS ids named by the configs (None skipped) and the tokenizer, and the usual end-of-turn tokens."""
    ids: set[int] = set()
    for source in (*configs, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    for special in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(special) if special in tokenizer.get_vocab() else None
        if isinstance(token_id, int) and token_id != getattr(tokenizer, "unk_token_id", None):
            ids.add(token_id)
    return frozenset(ids)
