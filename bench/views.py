"""Benchmark: what a view costs with llmvis's lazy internals vs keeping everything (eager).

On the bundled model (CPU, fp32), for each run length T (default 512 and 1536), in one run:
- llmvis: the first click (teacher-forced SDPA capture of the residual stream), one layer's
  attention cold (recomputed) and warm (cached), every registered view first and warm, the
  JSON size of each view, and the peak RSS growth over the loaded model;
- eager: one full forward with `output_attentions=True, output_hidden_states=True` (what a
  visualizer that keeps everything pays), its time and peak RSS growth.
Each side runs in its own subprocess so that peak memory is measured in isolation.

    .venv/bin/python bench/views.py [--tokens 512 1536] [--threads 2] [--shapes bundled gpt2 neox]
    .venv/bin/python bench/views.py --large 4096 8192 32768     # on a CUDA machine

`--shapes gpt2 neox`: the same on random GPT-2- and GPT-NeoX-shaped models of the bundled
model's size (30 layers, d = 576, 9 heads, the bundled tokenizer): fused Conv1D q/k/v with
learned positions, and fused per-head q/k/v with partial rotary and parallel blocks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

TEXT = (
    "The river bends twice before it reaches the old mill, where the water slows and turns green. "
    "In 1887 the mill burned down, and the village rebuilt it with stone from the quarry on the hill. "
    "def area(radius):\n    return 3.14159 * radius ** 2\n"
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. "
    "She asked whether the train to Lyon would leave on time; nobody knew. "
    "Prime numbers: 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47. "
    "The committee postponed its decision until the spring, citing the missing budget report. "
)

MID_LAYER = 15
FOIL = 1000  # a contrast token for the views that explain a logit


class PeakRSS:
    """Peak resident memory growth during a `with` block (sampled every 2 ms)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.start = self.peak = 0

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(n: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest of n runs: the machine is shared, the minimum is the least disturbed figure."""
    runs = [timed(fn) for _ in range(n)]
    return min(r[0] for r in runs), runs[-1][1]


def token_ids(loaded: Any, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += loaded.tokenizer(TEXT)["input_ids"]
    return ids[:n]


def make_trace(loaded: Any, ids: list[int]) -> Any:
    """A Trace without per-token statistics (the views benchmarked here do not read them)."""
    from llmvis.tokens import Labeler
    from llmvis.trace import GenerationRequest, SamplingParams, Token, Trace

    label = Labeler(loaded.tokenizer)
    half = len(ids) // 2
    tokens = [
        Token(
            position=i,
            id=t,
            text=loaded.tokenizer.decode([t]),
            label=label(t),
            kind="prompt" if i < half else "generated",
        )
        for i, t in enumerate(ids)
    ]
    params = SamplingParams(temperature=0.0, max_new_tokens=max(1, len(ids) - half))
    return Trace(
        request=GenerationRequest(mode="completion", prompt="", params=params),
        params=params,
        model=loaded.info,
        tokens=tokens,
        prompt_len=half,
    )


def view_cases(t: int) -> list[tuple[str, dict[str, Any]]]:
    from llmvis.analyses import VIEWS

    mine: list[tuple[str, dict[str, Any]]] = [
        ("attention", {"layer": MID_LAYER}),
        ("attention", {"position": t - 1}),
        ("multi_head", {"layer": MID_LAYER}),
        ("head_entropy", {}),
        ("head_entropy", {"position": t - 1}),
        ("head_health", {}),
        ("head_health", {"probe": True}),
        ("layer_similarity", {}),
        ("residual_stream", {}),
        ("residual_stream", {"foil": FOIL}),
        ("logit_lens", {}),
        ("logit_lens", {"foil": FOIL, "watch": [FOIL + 1, FOIL + 2]}),
        ("head_contributions", {}),
        ("head_contributions", {"foil": FOIL}),
        ("neuron_contributions", {}),
        ("neuron_contributions", {"foil": FOIL}),
        ("contribution_graph", {}),
        ("contribution_graph", {"threshold": 0.01, "top_k": 10}),
    ]
    others = [(name, {}) for name in sorted(VIEWS) if name not in {n for n, _ in mine}]
    return mine + others


BUNDLED_SIZE = dict(n_layers=30, hidden=576, heads=9, intermediate=1536, positions=8192)


def load_shape(shape: str, attn: str = "sdpa") -> Any:
    """The bundled model, or a random model of its size in another family's layout."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from llmvis.models import load_model
    from llmvis.models.loaded import LoadedModel, describe, stop_token_ids

    bundled = load_model("smollm2")
    if shape == "bundled":
        if attn == "eager":
            bundled.model.set_attn_implementation("eager")
        return bundled
    s, tok = BUNDLED_SIZE, bundled.tokenizer
    if shape == "gpt2":
        config = AutoConfig.for_model(
            "gpt2", vocab_size=len(tok), n_layer=s["n_layers"], n_embd=s["hidden"], n_head=s["heads"],
            n_inner=s["intermediate"], n_positions=s["positions"],
        )  # fmt: skip
    else:
        config = AutoConfig.for_model(
            "gpt_neox", vocab_size=len(tok), num_hidden_layers=s["n_layers"], hidden_size=s["hidden"],
            num_attention_heads=s["heads"], intermediate_size=s["intermediate"],
            max_position_embeddings=s["positions"], rotary_pct=0.25, use_parallel_residual=True,
        )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn).eval()
    info = describe(model, tok, name=f"random-{shape}", source="hf_dir", path=f"<random-{shape}>")
    return LoadedModel(model, tok, info, stop_token_ids(model, tok))


def child_llmvis(t: int, shape: str = "bundled") -> dict[str, Any]:
    import torch

    from llmvis.analyses import ViewContext, compute
    from llmvis.arch import NotAvailable
    from llmvis.internals import Internals

    loaded = load_shape(shape)
    ids = token_ids(loaded, t)
    trace = make_trace(loaded, ids)
    x = torch.tensor([ids])
    with torch.no_grad():
        decoder = loaded.arch.decoder
        decoder(input_ids=x, use_cache=False)  # warm-up (allocator, kernels)
        plain, _ = best_of(2, lambda: decoder(input_ids=x, use_cache=False))
    out: dict[str, Any] = {"plain_forward_s": plain}
    internals = Internals(loaded, ids)
    ctx = ViewContext(trace, loaded, internals)
    with PeakRSS() as mem:
        out["capture_s"], cap = timed(internals.capture)
        out["capture_mb"] = cap.nbytes / 1e6
        # cold: first computation of a layer (best of three different layers); warm: cached
        out["attn_cold_s"] = min(timed(lambda i=i: internals.attention(i))[0] for i in (MID_LAYER - 1, 1, 29))
        out["attn_cold_s"] = min(out["attn_cold_s"], timed(lambda: internals.attention(MID_LAYER))[0])
        out["attn_warm_s"], _ = best_of(3, lambda: internals.attention(MID_LAYER))
        out["row_cold_s"], _ = timed(lambda: internals.attention_row(t - 1))
        out["row_s"], _ = best_of(3, lambda: internals.attention_row(t - 2))
        views = []
        for name, params in view_cases(t):
            try:
                first, _ = timed(lambda n=name, p=params: compute(n, ctx, p))
                warm, result = best_of(2, lambda n=name, p=params: compute(n, ctx, p))
                views.append(
                    {
                        "view": name,
                        "params": params,
                        "first_s": first,
                        "warm_s": warm,
                        "json_kb": len(result.model_dump_json()) / 1e3,
                    }
                )
            except NotAvailable as exc:  # a view this model cannot give (the experts of a dense model)
                views.append({"view": name, "params": params, "unavailable": str(exc)})
            except Exception as exc:  # report, keep benchmarking the rest
                views.append({"view": name, "params": params, "error": f"{type(exc).__name__}: {exc}"})
        out["views"] = views
    out["peak_growth_mb"] = mem.growth_mb
    out["cache"] = internals.cache.stats()
    return out


def child_eager(t: int, shape: str = "bundled") -> dict[str, Any]:
    import torch

    loaded = load_shape(shape, attn="eager")
    x = torch.tensor([token_ids(loaded, t)])
    with PeakRSS() as mem, torch.no_grad():
        seconds, res = timed(lambda: loaded.model(x, output_attentions=True, output_hidden_states=True))
        kept = sum(a.numel() * a.element_size() for a in res.attentions)
        kept += sum(h.numel() * h.element_size() for h in res.hidden_states)
    return {"eager_s": seconds, "peak_growth_mb": mem.growth_mb, "kept_mb": kept / 1e6}


QWEN3_4B = dict(
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
)
SMALL = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=1000,
)


def large_child(lengths: list[int], small: bool) -> list[dict[str, Any]]:
    """A random Qwen3-4B-shaped model (bf16 on CUDA): capture, layer attention, query row, the
    summaries ahead.

    `small` swaps in a tiny shape so the code path can be smoke-tested on a CPU.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from llmvis.analyses.attention import head_reducer, pooled_attention
    from llmvis.analyses.warm import EARLY_WARMERS, LATE_WARMERS, WARMERS
    from llmvis.internals import Internals
    from llmvis.models.loaded import LoadedModel, describe

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    shape = SMALL if small else QWEN3_4B
    config = AutoConfig.for_model("qwen3", max_position_embeddings=40960, tie_word_embeddings=True, **shape)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa").eval()

    class _Tok:  # the internals need no tokenizer; describe() reads two attributes and the vocabulary
        chat_template = None
        model_max_length = 40960

        def get_vocab(self) -> dict[str, int]:
            return {}

    loaded = LoadedModel(
        model, _Tok(), describe(model, _Tok(), name="qwen3-4b-random", source="hf_dir", path="<random>")
    )

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def mem() -> int:
        return torch.cuda.memory_allocated() if cuda else 0

    results = []
    for t in lengths:
        ids = torch.randint(0, shape["vocab_size"], (t,), generator=torch.Generator().manual_seed(0)).tolist()
        internals = Internals(loaded, ids)
        row: dict[str, Any] = {"tokens": t}

        def capture(i: Internals = internals) -> Any:
            out = i.capture()
            sync()
            return out

        def layer_view(i: Internals = internals, n: int = t) -> None:
            pooled_attention(i, i.n_layers // 2, 0, n, 256, head_reducer("mean"))
            sync()

        def query_row(i: Internals = internals, n: int = t) -> None:
            i.attention_row(n - 1)
            sync()

        try:
            sync()
            row["capture_s"], cap = timed(capture)
            row["capture_gib"] = cap.nbytes / 2**30
            for label in ("attn_cold", "attn_warm"):
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                base = mem()
                row[f"{label}_s"], _ = timed(layer_view)
                row[f"{label}_extra_gib"] = (torch.cuda.max_memory_allocated() - base) / 2**30 if cuda else 0.0
            row["row_s"], _ = timed(query_row)
            for view, warm in EARLY_WARMERS + WARMERS + LATE_WARMERS:
                row[f"warm_{view}_s"], _ = timed(lambda w=warm, i=internals: (w(i, lambda: None), sync()))
            row["warm_s"] = sum(row[f"warm_{view}_s"] for view, _ in EARLY_WARMERS + WARMERS + LATE_WARMERS)
        except torch.OutOfMemoryError as exc:
            row["error"] = f"out of memory: {str(exc)[:120]}"
        internals.cache.clear()
        del internals
        if cuda:
            torch.cuda.empty_cache()
        results.append(row)
    return results


def report_large(rows: list[dict[str, Any]], device: str) -> None:
    print(f"\n== random Qwen3-4B-shaped model on {device} ==")
    print(
        f"{'T':>6} {'capture s':>10} {'capture GiB':>12} {'attn cold s':>12} {'attn warm s':>12} "
        f"{'extra GiB':>10} {'row s':>8} {'ahead s':>8}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['tokens']:>6} ERROR {r['error']}")
            continue
        print(
            f"{r['tokens']:>6} {r['capture_s']:10.3f} {r['capture_gib']:12.2f} {r['attn_cold_s']:12.4f} "
            f"{r['attn_warm_s']:12.4f} {r['attn_warm_extra_gib']:10.2f} {r['row_s']:8.3f} {r['warm_s']:8.3f}"
        )
    print("ahead: the summaries computed after a run (analyses/warm.py), with the cache's default budget:")
    for r in rows:
        if "error" not in r:
            parts = ", ".join(f"{k[5:-2]} {v:.2f} s" for k, v in r.items() if k.startswith("warm_") and k != "warm_s")
            print(f"  T = {r['tokens']}: {parts}")


def run_child(mode: str, t: int, threads: int, shape: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--tokens", str(t), "--threads", str(threads)]
    cmd += ["--shapes", shape]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{mode} T={t} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def report(t: int, shape: str, ours: dict[str, Any], eager: dict[str, Any]) -> None:
    model = "bundled SmolLM2-135M" if shape == "bundled" else f"random {shape}-shaped, the bundled size"
    print(f"\n== T = {t} tokens ({model}, CPU fp32) ==")
    print(f"{'what':44} {'llmvis':>12} {'eager-all':>12} {'ratio':>8}")
    rows = [
        ("first click: capture vs eager forward (s)", ours["capture_s"], eager["eager_s"]),
        ("peak RSS growth (MB)", ours["peak_growth_mb"], eager["peak_growth_mb"]),
        ("data kept (MB)", ours["capture_mb"], eager["kept_mb"]),
    ]
    for label, a, b in rows:
        print(f"{label:44} {a:12.3f} {b:12.3f} {b / a if a else float('inf'):7.1f}x")
    print(
        f"{'plain SDPA forward, no hooks (s)':44} {ours['plain_forward_s']:12.3f}"
        f"   capture / plain = {ours['capture_s'] / ours['plain_forward_s']:.2f}x"
    )
    print(
        f"{'layer attention cold / warm (ms)':44} {ours['attn_cold_s'] * 1e3:12.1f} {ours['attn_warm_s'] * 1e3:12.2f}"
    )
    print(
        f"{'query row, all layers x heads cold / warm (ms)':44} {ours['row_cold_s'] * 1e3:12.1f} "
        f"{ours['row_s'] * 1e3:12.1f}"
    )
    print(f"\n{'view':34} {'first ms':>10} {'warm ms':>10} {'JSON kB':>9}   (warm = best of 2)")
    for v in ours["views"]:
        name = v["view"] + (" " + json.dumps(v["params"], separators=(",", ":")) if v["params"] else "")
        if "error" in v:
            print(f"{name:34} ERROR {v['error'][:80]}")
            continue
        if "unavailable" in v:
            print(f"{name:34} n/a: {v['unavailable'][:80]}")
            continue
        print(f"{name:34} {v['first_s'] * 1e3:10.1f} {v['warm_s'] * 1e3:10.1f} {v['json_kb']:9.1f}")
    print(f"cache: {ours['cache']}")
    warm_view = next(v for v in ours["views"] if v["view"] == "attention" and "layer" in v["params"])
    checks = [
        ("layer attention cold <= 0.5 s", ours["attn_cold_s"] <= 0.5),
        ("layer attention view warm <= 50 ms", warm_view.get("warm_s", 1.0) <= 0.05),
        ("every view JSON <= 1 MB", all(v.get("json_kb", 0) <= 1000 for v in ours["views"])),
        ("capture within the 1 GiB cache", ours["capture_mb"] <= 1073.7),
    ]
    print("issue targets: " + "; ".join(f"{name}: {'ok' if good else 'MISSED'}" for name, good in checks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[512, 1536])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", nargs="+", choices=["bundled", "gpt2", "neox"], default=["bundled"])
    ap.add_argument(
        "--large",
        type=int,
        nargs="*",
        default=None,
        help="only the random Qwen3-4B-shaped model at these lengths (CUDA; e.g. 4096 8192 32768)",
    )
    ap.add_argument("--large-small-shape", action="store_true", help="smoke-test --large with a tiny shape")
    ap.add_argument("--child", choices=["llmvis", "eager"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.large is not None:
        lengths = args.large or [4096, 8192, 32768]
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        report_large(large_child(lengths, args.large_small_shape), device)
        return
    if args.child:
        fn = child_llmvis if args.child == "llmvis" else child_eager
        print(json.dumps(fn(args.tokens[0], args.shapes[0])))
        return
    t0 = time.perf_counter()
    for shape in args.shapes:
        for t in args.tokens:
            ours = run_child("llmvis", t, args.threads, shape)
            eager = run_child("eager", t, args.threads, shape)
            report(t, shape, ours, eager)
    print(f"\nbench wall time {time.perf_counter() - t0:.0f} s, torch threads {args.threads}")


if __name__ == "__main__":
    main()
