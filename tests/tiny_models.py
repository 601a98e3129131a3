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

from llmvis.models.loaded import LoadedModel, config_value, describe, stop_token_ids

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

# every family the internals support (docs/ARCHITECTURE.md has the coverage table)
ATTENTION_ONLY = [
    "llama", "qwen2", "qwen3", "gemma3_text", "mistral", "phi3",
    "gemma", "gemma2", "olmo", "olmo2", "cohere", "granite", "smollm3", "starcoder2", "stablelm",
    "gpt2", "gpt_neox", "gptj", "opt", "phi", "gpt_neo", "bloom", "falcon", "falcon_7b",
    "mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "llama4_text", "gemma4_text", "falcon_h1",
]  # fmt: skip
# hybrids: some layers mix tokens without softmax attention (linear attention, Mamba); their
# attention views cover the attention layers and name the others
HYBRIDS = ["qwen3_next", "qwen3_5_text", "jamba"]
ARCHITECTURES = ATTENTION_ONLY + HYBRIDS
# token mixers with a recurrent state: runs are captured after generation, not while it runs
RECURRENT = ["falcon_h1", *HYBRIDS]

# what each family's tiny config sets beyond the common shape (its quirk, where it has one)
_EXTRA: dict[str, dict] = {
    "mistral": {"sliding_window": 8},
    "gemma3_text": {
        "sliding_window": 8, "query_pre_attn_scalar": 16, "final_logit_softcapping": 30.0,
        "attn_logit_softcapping": None,
    },
    "gemma2": {
        "sliding_window": 8, "query_pre_attn_scalar": 16, "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
    },
    "qwen2": {"use_sliding_window": False},
    "phi3": {"partial_rotary_factor": 0.5},  # fused qkv_proj and gate_up_proj; rotary on half of each head
    "cohere": {"logit_scale": 0.5, "use_qk_norm": True},
    "granite": {"residual_multiplier": 0.5, "logits_scaling": 2.0, "embedding_multiplier": 2.0},
    "stablelm": {"partial_rotary_factor": 0.25, "use_parallel_residual": True, "qk_layernorm": True},
    "gpt2": {"n_inner": 128},
    "gpt_neox": {"use_parallel_residual": True, "rotary_pct": 0.5},
    "gptj": {"rotary_dim": 8, "n_inner": 128},
    "opt": {"ffn_dim": 128, "word_embed_proj_dim": 64},
    "phi": {"partial_rotary_factor": 0.5},
    "gpt_neo": {"window_size": 8},  # global and local layers alternate; no 1/sqrt(d) scaling
    "bloom": {},  # ALiBi
    "falcon": {"new_decoder_architecture": True, "num_kv_heads": 2},  # Falcon-40B's layout: GQA, two norms
    "falcon_7b": {"new_decoder_architecture": False, "multi_query": True, "parallel_attn": True},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {
        "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 64,
    },
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32},
    "llama4_text": {  # chunked attention, NoPE layers, experts on every other layer
        "intermediate_size_mlp": 128, "num_local_experts": 2, "interleave_moe_layer_step": 2,
        "attention_chunk_size": 8, "no_rope_layers": [1, 0],
    },
    "qwen3_next": {  # gated delta-net layers, then full attention; experts
        "layer_types": ["linear_attention", "full_attention"], "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32, "linear_num_value_heads": 4,
        "linear_num_key_heads": 2, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
    },
    "qwen3_5_text": {
        "layer_types": ["linear_attention", "full_attention"], "linear_num_value_heads": 4,
        "linear_num_key_heads": 2, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
    },
    "jamba": {  # Mamba, then attention; experts on every other layer
        "attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "num_experts": 2,
        "mamba_d_state": 8, "mamba_expand": 2, "use_mamba_kernels": False,
    },
    "falcon_h1": {  # Mamba-2 beside attention in every layer, muP multipliers
        "mamba_d_ssm": 64, "mamba_n_heads": 8, "mamba_d_head": 8, "mamba_d_state": 8, "mamba_chunk_size": 8,
        "attention_out_multiplier": 0.5, "ssm_out_multiplier": 0.7, "mlp_multipliers": [1.5, 0.5],
        "lm_head_multiplier": 0.9, "key_multiplier": 1.2,
    },
    "gemma4_text": {"sliding_window": 8},  # per-layer inputs and a layer scale: a third part per layer
    "gpt_oss": {  # attention sinks, alternating sliding and full layers
        "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"],
    },
}  # fmt: skip


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


_MODEL_TYPE = {"falcon_7b": "falcon"}  # a second layout of one model type


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
    defaults = AutoConfig.for_model(_MODEL_TYPE.get(arch, arch))
    for name in ("num_key_value_heads", "head_dim"):  # only where the family sets them (no GQA in GPT-2)
        if config_value(defaults, name) is None or isinstance(getattr(type(defaults), name, None), property):
            common.pop(name)
    extra = dict(_EXTRA.get(arch, {}))
    if arch == "gpt_neo":
        extra["attention_types"] = [[["global", "local"], max(1, layers // 2)]]
    if "layer_types" in extra:  # one per layer, alternating as given
        extra["layer_types"] = [extra["layer_types"][i % len(extra["layer_types"])] for i in range(layers)]
    return AutoConfig.for_model(_MODEL_TYPE.get(arch, arch), **common, **extra)


def make_model(arch: str = "llama", layers: int = 2, seed: int = 0, attn: str = "sdpa"):
    tok = make_tokenizer()
    torch.manual_seed(seed)
    config = make_config(arch, len(tok), layers)
    try:
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn)
    except ValueError:  # a family without an SDPA path (Gemma 2): eager, as from_pretrained picks
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    # Random init is near-uniform; sharpen it so greedy choices and entropies are meaningful.
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)
        for name, buffer in model.named_buffers():  # Gemma 4's layer scale: not the identity
            if name.endswith("layer_scalar"):
                buffer.fill_(0.8)
        if arch == "gemma4_text":
            # Gemma 4 scores unit-RMS q·k over 256-wide heads unscaled: with random weights the
            # scores' spread is ~16 and most weights underflow, so a rounding difference between
            # two CPUs' kernels moves a weight by more than the tests' 1e-5. A q-norm weight of
            # 0.25 gives a trained model's spread (~4) and is not the identity either.
            for name, param in model.named_parameters():
                if name.endswith("self_attn.q_norm.weight"):
                    param.fill_(0.25)
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
