"""What llmvis costs a notebook: the size of each output (a run's frame, a run with views) for a
run of the bundled model, and how long `show` takes, at --tokens prompt tokens + --new generated.

    .venv/bin/python bench/notebook.py [--tokens 512] [--new 32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import llmvis
from interventions import ids_of
from llmvis.trace import GenerationRequest, SamplingParams

VIEWS = [("logit_lens", {}), ("attention", {"layer": 5}), ("residual_stream", {})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--new", type=int, default=32)
    args = ap.parse_args()
    loaded = llmvis.load_model()
    prompt = loaded.tokenizer.decode(ids_of(loaded, args.tokens - 1))
    params = SamplingParams(temperature=0.0, max_new_tokens=args.new)
    trace = llmvis.generate(loaded, GenerationRequest(mode="completion", prompt=prompt, params=params))
    plain = len(trace._repr_html_().encode())
    start = time.perf_counter()
    shown = llmvis.show(trace, loaded, views=VIEWS)
    took = time.perf_counter() - start
    with_views = len(shown._repr_html_().encode())
    empty = len(llmvis.show(trace.model_copy(update={"tokens": trace.tokens[:1], "prompt_len": 1}))._repr_html_())
    print(f"run of {len(trace.tokens)} tokens ({trace.prompt_len} prompt + {len(trace.generated)} generated)")
    print(f"  the page alone (one token):         {empty / 1024:8.0f} kB")
    print(f"  display(trace):                     {plain / 1024:8.0f} kB")
    print(
        f"  show(trace, views=3: {', '.join(v for v, _ in VIEWS)}): {with_views / 1024:8.0f} kB, computed in {took:.2f} s"
    )


if __name__ == "__main__":
    main()
