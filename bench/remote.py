"""The remote backend's cost: tokens/s through llmvis against the engine alone, in one run.

The engine is llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on the bundled
GGUF; llmvis runs as `llmvis serve --backend openai` in a subprocess. The same request (a
128-token prompt, greedy, 64 new tokens, top-10 logprobs) goes alternately straight to the
engine and through llmvis; medians over the rounds. Target: llmvis ≥ 0.90 × the engine alone.

Then how many users one llmvis process serves: llama-cpp-python runs one request at a time, so
a scripted engine stands in for a batching server (vLLM, SGLang): every stream gets a token
each 1/--rate s however many there are. N simulated users stream at once through llmvis; the
table shows each user's tokens/s against the engine's rate and llmvis's CPU use.

    python bench/remote.py [--rounds 3] [--new-tokens 64] [--clients 1 8 32 64] [--rate 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from llama_engine import NEUTRAL, LlamaServer  # noqa: E402
from llmvis.models.load import load_tokenizer  # noqa: E402
from llmvis.models.sources import bundled_gguf  # noqa: E402
from processes import free_port  # noqa: E402
from server import prompt_of  # noqa: E402  (bench/server.py: a prompt of exactly n tokens)


def engine_alone(base_url: str, body: dict) -> tuple[int, float]:
    """(tokens, seconds) for one streamed completion straight from the engine."""
    tokens = 0
    t0 = time.perf_counter()
    with httpx.stream("POST", f"{base_url}/completions", json={**body, "stream": True}, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                logprobs = chunk["choices"][0].get("logprobs") or {}
                tokens += len(logprobs.get("tokens") or [])
    return tokens, time.perf_counter() - t0


def through_llmvis(url: str, request: dict) -> tuple[int, float]:
    tokens = 0
    t0 = time.perf_counter()
    with httpx.stream("POST", f"{url}/api/runs", json=request, timeout=600) as r:
        if r.status_code >= 400:
            raise RuntimeError(f"llmvis refused the run: HTTP {r.status_code} {r.read()[:200]!r}")
        failed = False
        for line in r.iter_lines():
            if line == "event: token":
                tokens += 1
            elif line == "event: error":
                failed = True
            elif failed and line.startswith("data: "):
                raise RuntimeError(f"the run failed: {line[6:200]}")
    return tokens, time.perf_counter() - t0


def start_llmvis(engine: LlamaServer, data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "llmvis.cli",
        "serve",
        "--backend",
        "openai",
        "--base-url",
        engine.base_url,
        "--tokenizer",
        "smollm2",
        "--extra-body",
        json.dumps(NEUTRAL),
        "--port",
        str(port),
        "--data-dir",
        data_dir,
        "--no-browser",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    url = f"http://127.0.0.1:{port}"
    wait_health(url, proc)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--rate", type=float, default=20.0, help="scripted engine: tokens/s per stream")
    args = parser.parse_args()

    tokenizer, _, _ = load_tokenizer("smollm2")
    prompt = prompt_of(tokenizer, args.prompt_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        engine = LlamaServer(bundled_gguf(), Path(tmp) / "engine.log")
        proc, url = start_llmvis(engine, tmp)
        try:
            body = {
                **NEUTRAL,
                "model": engine.model,
                "prompt": prompt,
                "max_tokens": args.new_tokens,
                "temperature": 0,
                "logprobs": 10,
                "seed": 1,
            }
            request = {
                "mode": "completion",
                "prompt": prompt,
                "params": {"temperature": 0, "max_new_tokens": args.new_tokens, "top_n": 10, "seed": 1},
            }
            run_engine = lambda: engine_alone(engine.base_url, body)  # noqa: E731
            run_llmvis = lambda: through_llmvis(url, request)  # noqa: E731
            run_engine(), run_llmvis()  # warm-up
            direct, proxied = [], []
            server = psutil.Process(proc.pid)
            cpu0, tokens = sum(server.cpu_times()[:2]), 0
            for _ in range(args.rounds):
                n, s = run_engine()
                direct.append(n / s)
                n, s = run_llmvis()
                proxied.append(n / s)
                tokens += n
            cpu_per_token = (sum(server.cpu_times()[:2]) - cpu0) / tokens
            a, c = statistics.median(direct), statistics.median(proxied)
            print(f"{args.new_tokens} new tokens, top-10 logprobs, median of {args.rounds}:")
            print(f"  engine alone {a:.2f} tok/s | through llmvis {c:.2f} tok/s | ratio {c / a:.3f}")
            print(
                f"  llmvis CPU per streamed token: {cpu_per_token * 1e3:.2f} ms "
                f"(one core streams ≈ {1 / cpu_per_token:.0f} tokens/s)"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            engine.stop()
        users(args, tokenizer, tmp)


SCRIPTED = """
import json, sys, time
sys.path.insert(0, {tests!r})
from fake_engine import FakeEngine, chunk
words, rate = json.loads(sys.argv[1]), float(sys.argv[2])
fake = FakeEngine(models=("scripted",))
fake.script = lambda h: fake.stream(
    h, [chunk([(w, -0.5, {{w: -0.5, "x": -1.5}})]) for w in words] + [chunk([], "length")], delay=1 / rate)
print(fake.base_url, flush=True)
time.sleep(1e9)
"""


def users(args, tokenizer, tmp: str) -> None:
    """Simulated users through llmvis and straight to a scripted engine (its own process) that
    never makes them wait; the clients run in this process for both, so they cost both alike."""
    words = [w for w in (tokenizer.decode([i]) for i in range(1000, 4000)) if len(w) > 1 and w.strip()][
        : args.new_tokens
    ]
    fake = subprocess.Popen(
        [sys.executable, "-c", SCRIPTED.format(tests=str(ROOT / "tests")), json.dumps(words), str(args.rate)],
        stdout=subprocess.PIPE,
        text=True,
    )
    base_url = fake.stdout.readline().strip() if fake.stdout else ""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "llmvis.cli",
        "serve",
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--model",
        "scripted",
        "--tokenizer",
        "smollm2",
        "--port",
        str(port),
        "--data-dir",
        tmp + "/users",
        "--no-browser",
        "--remote-slots",
        str(max(args.clients)),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    request = {
        "mode": "completion",
        "prompt": "Hello",
        "params": {"temperature": 0, "max_new_tokens": len(words), "top_n": 2},
    }
    body = {"model": "scripted", "prompt": "Hello", "max_tokens": len(words), "logprobs": 2}
    try:
        wait_health(url, proc)
        server = psutil.Process(proc.pid)
        print(
            f"\nsimulated users (scripted engine: {args.rate:g} tok/s per stream, {len(words)} tokens per run);"
            " per-user tok/s, median and slowest"
        )
        for n in args.clients:
            direct = many(lambda: engine_alone(base_url, body), n)
            cpu0, t0 = sum(server.cpu_times()[:2]), time.perf_counter()
            proxied = many(lambda: through_llmvis(url, request), n)
            cpu = (sum(server.cpu_times()[:2]) - cpu0) / (time.perf_counter() - t0)
            print(
                f"  {n:>3} users | engine alone {statistics.median(direct):5.2f}, {direct[0]:5.2f} | through llmvis"
                f" {statistics.median(proxied):5.2f}, {proxied[0]:5.2f} | ratio of medians"
                f" {statistics.median(proxied) / statistics.median(direct):.3f} | llmvis CPU {cpu:.0%} of a core"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        fake.kill()


def many(run, n: int) -> list[float]:
    """Per-run tokens/s of n simultaneous runs, slowest first."""
    with ThreadPoolExecutor(n) as pool:
        return sorted(t / s for t, s in pool.map(lambda _: run(), range(n)))


def wait_health(url: str, proc: subprocess.Popen) -> None:
    for _ in range(600):
        try:
            httpx.get(f"{url}/api/health").raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("llmvis did not start")


if __name__ == "__main__":
    main()
