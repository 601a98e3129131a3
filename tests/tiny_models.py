"""Tiny random models and a tiny byte-level tokenizer, built from configs in milliseconds.

Used by the unit tests (every architecture family we support, all with GQA) and by the
server/browser tests, which save one to disk and serve it like a real model.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from llmvis.models.loaded import LoadedModel, describe, stop_token_ids

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Once upon a time there was a small model that liked to think out loud.",
    "def add(a, b):\n    return a + b\n",
    "Attention is all you need. Residual streams carry information between layers.",
    "1 2 3 4 5 6 7 8 9 10 hello world, hello again!",
] * 20

ARCHITECTURES = ["llama", "qwen2", "qwen3", "gemma3_text", "mistral", "phi3"]


@lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return tok.to_str()


def make_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def make_config(arch: str, vocab_size: int, layers: int = 2):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    if arch == "mistral":
        common["sliding_window"] = 8
    if arch == "gemma3_text":
        common.update(
            sliding_window=8, query_pre_attn_scalar=16, final_logit_softcapping=30.0, attn_logit_softcapping=None
        )
    if arch == "qwen2":
        common.update(use_sliding_window=False)
    if arch == "phi3":  # fused qkv_proj and gate_up_proj; rotary on half of each head
        common.update(partial_rotary_factor=0.5)
    return AutoConfig.for_model(arch, **common)


def make_model(arch: str = "llama", layers: int = 2, seed: int = 0, attn: str = "sdpa"):
    tok = make_tokenizer()
    torch.manual_seed(seed)
    config = make_config(arch, len(tok), layers)
    config._attn_implementation = attn
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn)
    # Random init is near-uniform; sharpen it so greedy choices and entropies are meaningful.
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)
    model.eval()
    return model, tok


def save_tiny_model(directory: Path, arch: str = "llama", layers: int = 2) -> Path:
    model, tok = make_model(arch, layers)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@cache
def tiny_loaded(arch: str = "llama", layers: int = 2, attn: str = "sdpa") -> LoadedModel:
    """A LoadedModel around a tiny random model (cached: treat it as read-only)."""
    model, tok = make_model(arch, layers, attn=attn)
    info = describe(model, tok, name=f"tiny-{arch}", source="hf_dir", path=f"<tiny-{arch}>")
    return LoadedModel(model, tok, info, stop_token_ids(model, tok))
