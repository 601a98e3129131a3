"""load_model: resolve a spec, load config, weights and tokenizer, describe the result.

Every failure becomes a ModelLoadError with a one-line reason; the caller's previous model
is untouched because nothing global is changed until the new one is fully loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from llmvis.models.convert import _one_line, ensure_converted
from llmvis.models.errors import ModelLoadError
from llmvis.models.loaded import LoadedModel, describe, stop_token_ids
from llmvis.models.sources import resolve

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def pick_device(device: str | None) -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but CUDA is not available here")
    return device


def pick_dtype(dtype: str | None, device: str) -> torch.dtype:
    if dtype in (None, "", "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16")
    return DTYPES[dtype]


def _needs_remote_code(directory: Path) -> bool:
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(config.get("auto_map"))


def load_model(
    spec: str = "smollm2",
    *,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | dict[str, Any] | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> LoadedModel:
    """Load a causal LM for visualisation. Never downloads anything."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    report = progress or (lambda stage, fraction: None)
    source = resolve(spec)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    directory = source.path
    if source.kind in ("bundled", "gguf"):
        directory = ensure_converted(source.path, lambda stage, f: report(stage, 0.8 * f))
    report("reading config", 0.82)
    if _needs_remote_code(directory) and not trust_remote_code:
        raise ModelLoadError(
            f"{source.name} needs custom code from its repository; pass --trust-remote-code if you trust it"
        )
    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:
        message = _one_line(exc)
        if "trust_remote_code" in message:
            raise ModelLoadError(
                f"{source.name} needs custom code from its repository; pass --trust-remote-code if you trust it"
            ) from exc
        raise ModelLoadError(f"could not read the config of {source.name}: {message}") from exc
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and not trust_remote_code:
        raise ModelLoadError(
            f"{source.name} ({config.model_type}) is not a causal language model that transformers can load"
        )
    report("loading weights", 0.85)
    try:
        kwargs: dict[str, Any] = dict(dtype=torch_dtype, local_files_only=True, trust_remote_code=trust_remote_code)
        if device_map is not None:
            kwargs["device_map"] = device_map
        model = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
        if device_map is None:
            model.to(device)  # type: ignore[arg-type]
        model.eval()
        report("loading tokenizer", 0.95)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=trust_remote_code)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"could not load {source.name}: {_one_line(exc)}") from exc
    info = describe(model, tokenizer, name=source.name, source=source.kind, path=str(source.path))
    loaded = LoadedModel(model, tokenizer, info, stop_token_ids(model, tokenizer))
    report("checking internals", 0.97)
    checked(loaded)
    report("ready", 1.0)
    return loaded


def checked(loaded: LoadedModel) -> LoadedModel:
    """The model with its internals self-checked (ModelInfo.internals: what its views can show)."""
    # The check runs the internals, which sit above this package: imported here, not at the top.
    from llmvis.selfcheck import check_internals

    loaded.info = loaded.info.model_copy(update={"internals": check_internals(loaded)})
    return loaded


def load_tokenizer(spec: str, *, trust_remote_code: bool = False) -> tuple[Any, Any | None, str]:
    """The tokenizer (and the config, when there is one) of a local model spec, without weights:
    what a remote engine's runs need to name their tokens. Returns (tokenizer, config, name)."""
    from transformers import AutoConfig, AutoTokenizer

    source = resolve(spec)
    directory = ensure_converted(source.path) if source.kind in ("bundled", "gguf") else source.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(f"could not load the tokenizer of {source.name}: {_one_line(exc)}") from exc
    config = None
    if (Path(directory) / "config.json").is_file():
        try:
            config = AutoConfig.from_pretrained(directory, local_files_only=True, trust_remote_code=trust_remote_code)
        except Exception:  # the tokenizer is what matters; the config only fills in ModelInfo
            config = None
    return tokenizer, config, source.name
