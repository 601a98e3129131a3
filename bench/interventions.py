"""Benchmark: interventions on the bundled model (CPU, fp32), ratios measured in one run.

- ablate and look at T = 512: one intervention (attention of layer 15 zeroed at every
  position) through `what_if`, the run's capture already made (as after any run), against one
  plain teacher-forced forward of the unmodified model;
- activation-patching sweep, residual stream × 30 layers × 32 positions: exact (960 patched
  forwards, batched per layer) and fast (attribution patching: one forward, one backward),
  and how far fast is from exact;
- generation under an intervention (one head zeroed, 128 new tokens, greedy) against the same
  generation without one, best of alternating runs.

    .venv/bin/python bench/interventions.py [--tokens 512] [--sweep-tokens 33] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from views import TEXT, best_of, timed


def ids_of(loaded: Any, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += loaded.tokenizer(TEXT)["input_ids"]
    return ids[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--sweep-tokens", type=int, default=33, help="32 positions before the read one")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new", type=int, default=128, help="tokens generated in the generation comparison")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import torch

    from llmvis.generation.generate import generate
    from llmvis.internals import Internals
    from llmvis.interventions import Intervention, WhatIfRequest, check_plan, what_if
    from llmvis.models import load_model
    from llmvis.sweep import SweepRequest, sweep
    from llmvis.trace import GenerationRequest, SamplingParams

    torch.set_num_threads(args.threads)
    loaded = load_model("smollm2")
    ids = ids_of(loaded, args.tokens)
    x = torch.tensor([ids])
    with torch.no_grad():
        loaded.model(x, use_cache=False)  # warm-up
        forward, _ = best_of(3, lambda: loaded.model(x, use_cache=False))
    internals = Internals(loaded, ids)
    internals.capture()
    spec = Intervention(site="attn_out", layer=15)
    request = WhatIfRequest(interventions=[spec])

    def ablate() -> Any:
        return what_if(internals, request, check_plan(internals, [spec]), loaded.labeler)

    ablate()
    look, result = best_of(3, ablate)
    print(f"\n== ablate and look, T = {args.tokens} (bundled SmolLM2-135M, CPU fp32, {args.threads} threads) ==")
    print(f"  plain teacher-forced forward (s)        {forward:8.3f}")
    print(f"  what_if, one intervention (s)           {look:8.3f}")
    print(f"  ratio                                   {look / forward:8.2f}x   (target <= 1.5x)")
    print(f"  p(token) before / after                 {result.before.prob:.4f} / {result.after.prob:.4f}")

    clean = ids_of(loaded, args.sweep_tokens)
    corrupted = list(clean)
    corrupted[len(clean) // 2] = corrupted[len(clean) // 2] + 1
    a, b = Internals(loaded, clean), Internals(loaded, corrupted)
    a.capture()
    b.capture()
    calls: list[int] = []
    exact_s, exact = timed(
        lambda: sweep(a, b, SweepRequest(sites=["residual"]), loaded.labeler, lambda d, n: calls.append(d))
    )
    fast_s, _ = timed(
        lambda: sweep(a, b, SweepRequest(sites=["residual"], mode="fast"), loaded.labeler, lambda *_: None)
    )
    both = sweep(a, b, SweepRequest(sites=["residual"], mode="both"), loaded.labeler, lambda *_: None).maps[0]
    cells = len(exact.maps[0].rows) * len(exact.maps[0].cols)
    print(f"\n== patching sweep, residual x {len(exact.maps[0].rows)} layers x {len(exact.maps[0].cols)} positions ==")
    print(f"  exact: {exact.forwards} patched forwards, {len(calls)} progress events")
    print(f"  exact (s)                               {exact_s:8.2f}   (target <= 60 s)")
    print(f"  fast, attribution patching (s)          {fast_s:8.2f}   (target <= 3 s)")
    print(f"  fast vs exact over {cells} cells: max |error| {both.max_error}, correlation {both.correlation}")
    print(f"  LD clean / corrupted                    {exact.clean_diff} / {exact.corrupted_diff}")

    params = SamplingParams(temperature=0.0, max_new_tokens=args.new, top_k=None, top_p=1.0)
    prompt = TEXT[:400]
    plain_request = GenerationRequest(mode="completion", prompt=prompt, params=params)
    head = Intervention(site="head", layer=15, head=3)
    steered_request = plain_request.model_copy(update={"interventions": [head]})
    times: dict[str, list[float]] = {"plain": [], "intervened": []}
    for _ in range(args.rounds):  # alternating, so both see the same machine
        times["plain"].append(timed(lambda: generate(loaded, plain_request))[0])
        times["intervened"].append(timed(lambda: generate(loaded, steered_request))[0])
    plain_s, steered_s = min(times["plain"]), min(times["intervened"])
    print(f"\n== generation, {args.new} new tokens, greedy ==")
    print(f"  plain llmvis generation (s)             {plain_s:8.2f}")
    print(f"  under one intervention (s)              {steered_s:8.2f}")
    print(f"  speed ratio                             {plain_s / steered_s:8.2f}x   (target >= 0.9x)")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\nbench wall time {time.perf_counter() - t0:.0f} s")
