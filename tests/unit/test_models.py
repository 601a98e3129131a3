"""Loading real files from disk: HF directories and the errors a user can run into."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig

from llmvis.models import ModelLoadError, list_sources, load_model
from llmvis.models.convert import ensure_converted
from tiny_models import save_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", "llama")


def test_loads_a_local_hf_directory_and_describes_it(tiny_dir):
    loaded = load_model(str(tiny_dir))
    info = loaded.info
    assert info.source == "hf_dir"
    assert (info.layers, info.heads, info.kv_heads, info.hidden_size) == (2, 4, 2, 64)
    assert info.vocab_size == len(loaded.tokenizer)
    assert info.dtype == "float32" and info.device == "cpu"
    assert info.has_chat_template
    assert info.parameters == sum(p.numel() for p in loaded.model.parameters())
    assert not loaded.model.training
    assert 2 in loaded.stop_ids


def test_dtype_override(tiny_dir):
    loaded = load_model(str(tiny_dir), dtype="bfloat16")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.info.dtype == "bfloat16"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "no such model path"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "without config.json"),
        (lambda p: (p / "x.gguf").write_bytes(b"not a gguf at all" * 100) and p / "x.gguf", "could not convert GGUF"),
        (lambda p: p / "missing.gguf", "no such GGUF"),
        (lambda p: "nobody/not-cached-model", "not in the local Hugging Face cache"),
    ],
)
def test_bad_sources_give_one_line_errors(tmp_path, monkeypatch, make, message):
    monkeypatch.setenv("LLMVIS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(str(make(tmp_path)))
    assert "\n" not in str(info.value)


def test_not_a_causal_lm_is_refused(tmp_path):
    folder = tmp_path / "distilbert"
    folder.mkdir()
    AutoConfig.for_model("distilbert", vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64).save_pretrained(
        folder
    )
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        load_model(str(folder))


def test_remote_code_needs_the_flag(tmp_path, tiny_dir):
    folder = tmp_path / "remote"
    folder.mkdir()
    config = json.loads((tiny_dir / "config.json").read_text())
    config.update(model_type="my_custom_arch", auto_map={"AutoModelForCausalLM": "modeling_x.MyModel"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        load_model(str(folder))


def test_a_killed_conversion_leaves_no_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMVIS_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelLoadError):
        ensure_converted(bad)
    leftovers = list((tmp_path / "cache" / "models").glob("*"))
    assert leftovers == []


def test_list_sources_includes_the_bundled_model():
    specs = [s.spec for s in list_sources()]
    assert "smollm2" in specs
