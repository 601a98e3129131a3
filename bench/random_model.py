"""Write a random model of a named shape, with the bundled model's tokenizer, to a directory:
what the benches load where the real weights cannot travel (a GPU machine with no network).
Speed does not depend on the weights' values, so generation and view timings stand.

    .venv/bin/python bench/random_model.py --shape bundled --out /tmp/random-135m
    python bench/random_model.py --shape llama-1b --out /tmp/random-1b --tokenizer DIR --dtype bfloat16

--tokenizer: a directory with tokenizer.json (and tokenizer_config.json, chat_template.jinja);
default: the bundled model's, converted from its GGUF on this machine.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

# Llama-shaped: the bundled SmolLM2-135M, and Llama 3.2 1B's and Llama 3.1 8B's shapes
SHAPES: dict[str, dict] = {
    "bundled": dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, tie_word_embeddings=True, rope_theta=100000.0,
    ),
    "llama-1b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, tie_word_embeddings=True, rope_theta=500000.0,
    ),
    "llama-8b": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, tie_word_embeddings=False, rope_theta=500000.0,
    ),
}  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def bundled_tokenizer_dir() -> Path:
    from llmvis.models.convert import ensure_converted
    from llmvis.models.sources import bundled_gguf

    return Path(ensure_converted(bundled_gguf(), lambda *_: None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="bundled")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tokenizer", type=Path, default=None)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    t0 = time.perf_counter()
    source = args.tokenizer or bundled_tokenizer_dir()
    tok = PreTrainedTokenizerFast.from_pretrained(source)
    config = AutoConfig.for_model(
        "llama", vocab_size=len(tok), max_position_embeddings=8192, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, **SHAPES[args.shape],
    )  # fmt: skip
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, args.out / name)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"{args.shape}: {params:.0f}M parameters, {args.dtype}, written to {args.out} in {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
