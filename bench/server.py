"""Server overhead on the bundled model: time to the first `token` event over HTTP and decode
tokens/s over SSE, against in-process generation measured in the same run.

The server runs as `llmvis serve` would (a subprocess calling `serve`), the client reads the
stream with httpx; in-process generation iterates `start_generation` directly. The two are
measured alternately, the same request each time (prompt of 128 tokens, greedy), and the
medians are compared. Target: SSE tokens/s ≥ 0.95 × in-process.

    python bench/server.py [--new-tokens 64] [--rounds 3] [--model smollm2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from llmvis.generation import TokenEvent, start_generation
from llmvis.models import load_model
from llmvis.trace import GenerationRequest, SamplingParams

TEXT = (
    "The history of the city begins with a small settlement on the river, where traders met to "
    "exchange grain, salt and cloth. Over the centuries the town grew into a busy port, and its "
    "markets drew merchants from distant lands. "
)


def prompt_of(tokenizer, n: int) -> str:
    """A text that tokenizes to exactly n tokens (no special tokens are added in completion mode)."""
    ids = tokenizer(TEXT * (n // 20 + 2)).input_ids
    for cut in range(n, n + 8):
        text = tokenizer.decode(ids[:cut])
        if len(tokenizer(text).input_ids) == n:
            return text
    raise RuntimeError(f"could not build a prompt of {n} tokens")


def decode_rate(times: list[float]) -> float:
    """Tokens per second between the first and the last token (prefill excluded)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def in_process(loaded, request: GenerationRequest) -> dict[str, float]:
    t0 = time.perf_counter()
    times = [time.perf_counter() for e in start_generation(loaded, request) if isinstance(e, TokenEvent)]
    return {"ttft_s": times[0] - t0, "tok_s": decode_rate(times), "tokens": len(times)}


def over_http(client: httpx.Client, request: GenerationRequest) -> dict[str, float]:
    t0 = time.perf_counter()
    times: list[float] = []
    server_first = 0.0
    with client.stream("POST", "/api/runs", json=request.model_dump(mode="json")) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line == "event: token":
                times.append(time.perf_counter())
            elif line == "event: error":
                raise RuntimeError("the run failed")
            elif line.startswith("data: ") and '"type":"done"' in line:
                server_first = json.loads(line[6:])["timings"]["first_token_s"]
    ttft = times[0] - t0
    return {
        "ttft_s": ttft,
        "tok_s": decode_rate(times),
        "tokens": len(times),
        "overhead_s": ttft - server_first,
    }  # HTTP + queueing, beyond the server's own first token


def idle(client: httpx.Client) -> None:
    while client.get("/api/health").json()["capturing"]:
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = (
        "from llmvis.config import Settings; from llmvis.server.run import serve; "
        f"serve(Settings(port={port}, data_dir={data_dir!r}, model={args.model!r}, device={args.device!r}))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if "running at" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/api/health").raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--device", default=None)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    loaded = load_model(args.model, device=args.device)
    prompt = prompt_of(loaded.tokenizer, args.prompt_tokens)
    request = GenerationRequest(
        mode="completion", prompt=prompt, params=SamplingParams(temperature=0, max_new_tokens=args.new_tokens)
    )
    with tempfile.TemporaryDirectory() as data_dir:
        proc, url = start_server(args, data_dir)
        try:
            with httpx.Client(base_url=url, timeout=600) as client:
                in_process(loaded, request)  # warm-up both sides
                over_http(client, request)
                local, remote = [], []
                for _ in range(args.rounds):
                    idle(client)  # the server's background capture would compete for the CPU
                    local.append(in_process(loaded, request))
                    remote.append(over_http(client, request))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    figures = {
        "device": str(loaded.device),
        "model": loaded.info.name,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": int(median(remote, "tokens")),
        "rounds": args.rounds,
        "in_process_ttft_s": median(local, "ttft_s"),
        "http_ttft_s": median(remote, "ttft_s"),
        "in_process_tok_s": median(local, "tok_s"),
        "sse_tok_s": median(remote, "tok_s"),
        "http_overhead_s": median(remote, "overhead_s"),
        "rounds_detail": {"in_process": local, "http": remote},
    }
    figures["sse_vs_in_process"] = figures["sse_tok_s"] / figures["in_process_tok_s"]
    # each HTTP round runs right after its in-process round: their ratio is robust to load drifts
    figures["paired_ratio"] = statistics.median(h["tok_s"] / i["tok_s"] for i, h in zip(local, remote, strict=True))
    print(
        f"model {figures['model']} on {figures['device']}, prompt {args.prompt_tokens} tokens, "
        f"{figures['new_tokens']} new tokens, median of {args.rounds} alternating rounds"
    )
    print(
        f"time to first token: in-process {figures['in_process_ttft_s'] * 1000:.0f} ms, "
        f"over HTTP {figures['http_ttft_s'] * 1000:.0f} ms "
        f"(of which {figures['http_overhead_s'] * 1000:.0f} ms beyond the server's own first token)"
    )
    print(
        f"decode tokens/s:     in-process {figures['in_process_tok_s']:.1f}, "
        f"over SSE {figures['sse_tok_s']:.1f}  → {figures['sse_vs_in_process']:.3f}× "
        f"(median of paired rounds {figures['paired_ratio']:.3f}×; target ≥ 0.95×)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
