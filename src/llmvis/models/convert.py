"""GGUF → safetensors, once: later loads of the same file take a fraction of a second.

transformers dequantises a GGUF on every load (~20 s for the bundled model on 2 cores).
We do it once and keep the result in the user cache dir, keyed by the file's identity
(size, mtime and a hash of its first and last MiB). The conversion writes into a temporary
folder that is renamed into place at the end, so a killed conversion leaves no broken cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from platformdirs import user_cache_dir

from llmvis.models.errors import ModelLoadError

Progress = Callable[[str, float], None]
_SAMPLE = 1 << 20


def cache_root() -> Path:
    return Path(os.environ.get("LLMVIS_CACHE_DIR") or user_cache_dir("llmvis")) / "models"


def file_identity(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(_SAMPLE))
        if stat.st_size > _SAMPLE:
            fh.seek(max(0, stat.st_size - _SAMPLE))
            digest.update(fh.read(_SAMPLE))
    return digest.hexdigest()[:24]


def converted_dir(gguf: Path) -> Path:
    return cache_root() / f"{gguf.stem}-{file_identity(gguf)}"


def ensure_converted(gguf: Path, progress: Progress | None = None) -> Path:
    """Return a safetensors directory for `gguf`, converting it on first use."""
    report = progress or (lambda stage, fraction: None)
    target = converted_dir(gguf)
    if (target / "config.json").is_file():
        report("cached", 1.0)
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        report("reading tokenizer from GGUF", 0.05)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        report("dequantising weights", 0.25)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The dequantised weights are plain tensors; drop the GGUF marker so they can be saved.
        setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as a module attribute)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        report("writing safetensors", 0.8)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except ModelLoadError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(f"could not convert GGUF {gguf.name}: {_one_line(exc)}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report("converted", 1.0)
    return target


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
