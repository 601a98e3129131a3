"""Generation speed: plain transformers vs the naive per-step capture vs llmvis.

Prints, for prompt lengths 128/512/1536 and 64 new tokens on the bundled model, the median
tokens/s of (a) `model.generate` greedy, (b) the original prototype's per-step capture (eager
attention, output_attentions + output_hidden_states every step, copied to Python lists),
(c) llmvis generation with all statistics, keeping the run's capture as the server does (so a
view clicked at the end finds it), (d) the same without keeping the capture, (e) keeping the
capture but not making the prompt's Ā beside the decode (generation/attention_ahead.py), so that
c, e and d part what each costs; then c/a, c/b, d/a and e/a. Configurations are interleaved
(each taking every place in turn) so that machine noise hits all of them alike. c counts until the trace is complete,
deferred prompt statistics included; "c stream" counts until the last generated token reached
the caller (what a user watching the stream waits for).

    .venv/bin/python bench/generation.py [--lengths 128 512 1536] [--new 64] [--repeats 4]
    python bench/generation.py --model DIR --no-naive    # any local model (a GPU: cuda, bf16)

`--model`: a model directory instead of the bundled model, e.g. a random one of a given shape
written by bench/random_model.py (speed does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from llmvis.config import default_cache_bytes
from llmvis.generation import SamplingParams, TokenEvent, start_generation
from llmvis.models import load_model
from llmvis.models.convert import converted_dir
from llmvis.models.sources import bundled_gguf
from llmvis.server.background import KeepCapture
from llmvis.server.slot import ModelSlot
from llmvis.trace import GenerationRequest

TEXT = (
    "The history of natural language processing generally started in the 1950s, although work "
    "can be found from earlier periods. In 1950, Alan Turing published an article titled "
    "Computing Machinery and Intelligence which proposed what is now called the Turing test. "
)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def prompt_of(tokenizer, length: int) -> str:
    text = TEXT
    while len(tokenizer(text).input_ids) < length:
        text += TEXT
    ids = tokenizer(text).input_ids[:length]
    return tokenizer.decode(ids)


def plain_generate(model, ids, new):
    model.generate(ids, do_sample=False, max_new_tokens=new, min_new_tokens=new, pad_token_id=0)


def naive_capture(model, ids, new):
    """What the prototype did: everything, every step, as Python lists."""
    kept = []
    cache = DynamicCache(config=model.config)
    cur = ids
    with torch.no_grad():
        for _ in range(new):
            out = model(input_ids=cur, cache=cache, use_cache=True, output_attentions=True, output_hidden_states=True)
            step = {
                "attentions": [a[0, :, -1].tolist() for a in out.attentions],
                "hidden": [h[0, -1].tolist() for h in out.hidden_states],
                "logits": out.logits[0, -1].tolist(),
            }
            if cur.shape[1] > 1:  # the prefill's full matrices, kept as arrays
                step["prefill_attentions"] = [a[0].float().cpu().numpy() for a in out.attentions]
            kept.append(step)
            cur = out.logits[:, -1:].argmax(-1)
    return kept


class KeepCaptureOnly(KeepCapture):
    """The capture kept as the server keeps it, without the prompt's Ā made during the decode."""

    def staircase(self, positions: int) -> None:
        return None


def llmvis_generate(loaded, prompt, new, slot: ModelSlot | None = None, mean_attention: bool = True) -> float:
    """Returns the seconds until the last generated token was yielded. With a slot, the run's
    capture is kept in its cache as the server keeps it (with the prompt's Ā made meanwhile,
    unless not `mean_attention`)."""
    request = GenerationRequest(
        mode="completion", prompt=prompt, params=SamplingParams(temperature=0, max_new_tokens=new)
    )
    keep = None
    if slot is not None:
        slot.cache.clear()
        kind = KeepCapture if mean_attention else KeepCaptureOnly
        keep = kind(slot, loaded, accelerators=True)  # measured on a GPU too
    t0 = time.perf_counter()
    generation = start_generation(loaded, request, keep_capture=keep)
    last = 0.0
    for event in generation:
        if isinstance(event, TokenEvent):
            last = time.perf_counter() - t0
    assert len(generation.trace.generated) == new, (len(generation.trace.generated), generation.trace.finish_reason)
    assert all(t.stats for t in generation.trace.tokens[1:]), "every token has its statistics"
    assert slot is None or len(slot.cache) == 1, "the run's capture was kept"
    return last


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1536])
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--no-naive", action="store_true", help="skip (b), the slow naive loop")
    parser.add_argument("--model", default="smollm2", help="a model directory (default: the bundled model)")
    args = parser.parse_args()

    t = time.perf_counter()
    loaded = load_model(args.model)
    warm_load = time.perf_counter() - t
    loaded = dataclasses.replace(loaded, stop_ids=frozenset())  # always generate `new` tokens
    tok = loaded.tokenizer
    where = f"{loaded.info.device}, {loaded.info.dtype}"
    print(f"warm load of {loaded.info.name} ({where}): {warm_load:.2f} s; torch threads: {torch.get_num_threads()}")
    if not args.no_naive:
        path = converted_dir(bundled_gguf()) if args.model == "smollm2" else args.model
        eager = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=loaded.model.dtype)
        eager = eager.to(loaded.model.device).eval()

    slot = ModelSlot(loaded, default_cache_bytes())  # the server's default budget
    live = loaded.info.internals is not None and loaded.info.internals.live_capture
    configs = {
        "a generate": lambda p, ids: plain_generate(loaded.model, ids, args.new),
        "b naive": lambda p, ids: naive_capture(eager, ids, args.new),
        "c llmvis": lambda p, ids: llmvis_generate(loaded, p, args.new, slot if live else None),
        "d no capture": lambda p, ids: llmvis_generate(loaded, p, args.new),
        "e no Ā": lambda p, ids: llmvis_generate(loaded, p, args.new, slot if live else None, mean_attention=False),
    }
    if not live:
        print("the load-time check did not verify the capture kept while generating: c keeps none (c = d)")
    prompts = {n: prompt_of(tok, n) for n in args.lengths}
    llmvis_generate(loaded, prompts[args.lengths[0]], 4)  # warm-up
    times: dict[tuple[int, str], list[float]] = {}
    if args.no_naive:
        del configs["b naive"]
    for repeat in range(args.repeats):
        # a, c, d and e take turns in each place, so that each follows the naive loop equally often:
        # b keeps both cores busy for long and churns gigabytes, which slows whatever runs next
        turn = ["a generate", "c llmvis", "d no capture", "e no Ā"]
        order = (["b naive"] if not args.no_naive else []) + turn[repeat % 4 :] + turn[: repeat % 4]
        for n in args.lengths:
            ids = torch.tensor([tok(prompts[n]).input_ids], device=loaded.model.device)
            for name in order:
                fn = configs[name]
                sync()
                t = time.perf_counter()
                streamed = fn(prompts[n], ids)
                sync()
                times.setdefault((n, name), []).append(time.perf_counter() - t)
                if isinstance(streamed, float) and name == "c llmvis":
                    times.setdefault((n, "c stream"), []).append(streamed)

    print(f"\n{args.new} new tokens, median of {args.repeats} (tokens/s, prefill included)")
    print(
        f"{'prompt':>7} | {'a generate':>10} | {'b naive':>8} | {'c llmvis':>8} | {'c/a':>5} | {'c/b':>5}"
        f" | {'c stream/a':>10} | {'d/a':>5} | {'e/a':>5}"
    )
    for n in args.lengths:
        rate = {name: args.new / statistics.median(times[(n, name)]) for name in [*configs, "c stream"]}
        a, c, s, d, e = (rate[k] for k in ("a generate", "c llmvis", "c stream", "d no capture", "e no Ā"))
        b = rate.get("b naive", float("nan"))
        print(
            f"{n:>7} | {a:>10.2f} | {b:>8.2f} | {c:>8.2f} | {c / a:>5.2f} | {c / b:>5.2f} | {s / a:>10.2f}"
            f" | {d / a:>5.2f} | {e / a:>5.2f}"
        )


if __name__ == "__main__":
    main()
