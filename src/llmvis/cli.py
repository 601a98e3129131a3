"""The `llmvis` command: serve | trace | models | export.

Each command imports what it needs inside its function: `llmvis --help` or a mistyped flag then
answers at once instead of after the seconds it takes to import torch and transformers.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmvis.config import Settings

DEMO_PROMPT = "What is the capital of France?"


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="smollm2 (bundled, the default), a model directory, a .gguf file or a cached HF id",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if present)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--device-map", default=None, help="accelerate device map: auto, balanced, or a JSON object")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow model code from the model's folder")


def _add_remote_args(parser: argparse.ArgumentParser) -> None:
    remote = parser.add_argument_group("remote engine (runs on an OpenAI-compatible server)")
    remote.add_argument(
        "--backend",
        choices=["local", "openai"],
        default="local",
        help="openai: generate on a vLLM/SGLang/TGI/llama.cpp server; --model names its model",
    )
    remote.add_argument("--base-url", default=None, help="the engine's OpenAI base URL, e.g. http://10.0.0.5:8000/v1")
    remote.add_argument("--api-key-env", default=None, help="environment variable holding the API key")
    remote.add_argument(
        "--tokenizer", default=None, help="local tokenizer for the engine's model (default: --model as a local spec)"
    )
    remote.add_argument(
        "--extra-body", default=None, help="JSON merged into every request, e.g. '{\"repeat_penalty\": 1}'"
    )
    remote.add_argument("--engine-timeout", type=float, default=120.0, help="seconds without a token before giving up")


def _extra_body(args: argparse.Namespace) -> dict | None:
    if args.backend == "openai" and not args.base_url:
        raise SystemExit("error: --backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    try:
        extra_body = json.loads(args.extra_body) if args.extra_body else None
    except ValueError as exc:
        raise SystemExit(f"error: --extra-body is not JSON: {exc}") from None
    if extra_body is not None and not isinstance(extra_body, dict):
        raise SystemExit("error: --extra-body must be a JSON object")
    return extra_body


def _device_map(value: str | None):
    if value is None or value in ("auto", "balanced", "balanced_low_0", "sequential"):
        return value
    import json

    try:
        return json.loads(value)
    except ValueError:
        raise SystemExit(f"error: --device-map must be auto, balanced or a JSON object, not {value!r}") from None


def _load(args: argparse.Namespace):
    from llmvis.models import ModelLoadError, load_model
    from llmvis.server.run import progress_bar

    try:
        return load_model(
            args.model or "smollm2",
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            device_map=_device_map(args.device_map),
            progress=progress_bar(),
        )
    except ModelLoadError as exc:
        raise SystemExit(f"error: {exc}") from None


def _colour(value: float) -> str:
    """ANSI background from green (value 0) through yellow to red (value 1)."""
    value = min(1.0, max(0.0, value))
    red = int(255 * min(1.0, 2 * value))
    green = int(255 * min(1.0, 2 * (1 - value)))
    return f"\x1b[48;2;{red};{green};60m\x1b[38;2;0;0;0m"


def _generation(args: argparse.Namespace, request):
    """A local Generation, or with --backend openai a RemoteGeneration (same events)."""
    from llmvis.generation import start_generation

    if args.backend == "local":
        return start_generation(_load(args), request)
    from llmvis.models import ModelLoadError
    from llmvis.remote.generate import RemoteGeneration
    from llmvis.remote.model import connect_remote

    try:
        remote = connect_remote(
            args.base_url,
            args.model,
            tokenizer=args.tokenizer,
            api_key_env=args.api_key_env,
            extra_body=_extra_body(args),
            timeout=args.engine_timeout,
            trust_remote_code=args.trust_remote_code,
        )
    except ModelLoadError as exc:
        raise SystemExit(f"error: {exc}") from None
    return RemoteGeneration(remote, request)


def cmd_trace(args: argparse.Namespace) -> int:
    from llmvis.generation import GenerationError, SamplingParams, TokenEvent
    from llmvis.trace import GenerationRequest

    params = SamplingParams(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        top_n=args.top_n,
    )
    request = GenerationRequest(
        mode="chat" if args.chat else "completion", prompt=args.prompt, system=args.system, params=params
    )
    try:
        generation = _generation(args, request)
    except GenerationError as exc:
        raise SystemExit(f"error: {exc}") from None
    colour = sys.stdout.isatty() and not args.no_color
    max_entropy = math.log(generation.trace.model.vocab_size)
    try:
        for event in generation:
            if not isinstance(event, TokenEvent) or event.token.stats is None:
                continue
            stats = event.token.stats
            value = 1 - stats.raw_prob if args.color_by == "probability" else stats.raw_entropy / max_entropy * 2
            text = event.token.text
            sys.stdout.write(f"{_colour(value)}{text}\x1b[0m" if colour else text)
            sys.stdout.flush()
    except GenerationError as exc:  # e.g. a remote engine failing mid-run
        raise SystemExit(f"\nerror: {exc}") from None
    trace = generation.trace
    generated = trace.generated
    mean_p = sum(t.stats.raw_prob for t in generated if t.stats) / max(1, len(generated))
    mean_h = sum(t.stats.raw_entropy for t in generated if t.stats) / max(1, len(generated))
    not_top = sum(1 for t in generated if t.stats and t.stats.rank > 0)
    bound = "≥ " if any(t.stats and t.stats.entropy_upper is not None for t in generated) else ""
    print(
        f"\n\n{len(generated)} tokens · {trace.timings.tokens_per_s:.1f} tok/s · "
        f"finish: {trace.finish_reason} · mean p {mean_p:.3f} · mean entropy {bound}{mean_h:.3f} nats · "
        f"{not_top} not top-1 · seed {trace.params.seed}",
        file=sys.stderr,
    )
    if args.json:
        Path(args.json).write_text(trace.to_json())
        print(f"trace written to {args.json}", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from llmvis.models import list_sources

    for entry in list_sources():
        print(f"{entry.spec:<40} {entry.kind:<9} {entry.path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from llmvis.server.run import serve

    if args.log_views:  # one line per view computed: its time, and its wait for the model
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        views_log = logging.getLogger("llmvis.views")
        views_log.addHandler(handler)
        views_log.setLevel(logging.INFO)
    serve(serve_settings(args))
    return 0


def serve_settings(args: argparse.Namespace) -> Settings:
    """The server's settings from `llmvis serve`'s flags."""
    from llmvis.config import Settings

    extra_body = _extra_body(args)
    settings = Settings(
        model=args.model or ("smollm2" if args.backend == "local" else None),
        host=args.host,
        port=args.port,
        device=args.device,
        dtype=args.dtype,
        device_map=_device_map(args.device_map),
        trust_remote_code=args.trust_remote_code,
        token=args.token,
        open_browser=args.open,
        backend=args.backend,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        tokenizer=args.tokenizer,
        extra_body=extra_body,
        engine_timeout=args.engine_timeout,
        remote_slots=args.remote_slots,
    )
    if args.data_dir:
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    if args.cache_gb is not None:
        settings = settings.model_copy(update={"cache_bytes": int(args.cache_gb * (1 << 30))})
    if args.spill_gb is not None:
        settings = settings.model_copy(update={"spill_bytes": int(args.spill_gb * (1 << 30))})
    return settings


def cmd_export(args: argparse.Namespace) -> int:
    from llmvis.export import export_cli

    return export_cli(args)


def build_parser() -> argparse.ArgumentParser:
    from llmvis import __version__

    parser = argparse.ArgumentParser(prog="llmvis", description="Watch a language model think.")
    parser.add_argument("--version", action="version", version=f"llmvis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the web app (http://127.0.0.1:5050)")
    _add_model_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    _add_remote_args(serve)
    serve.add_argument("--remote-slots", type=int, default=64, help="remote engine: runs streaming at once")
    serve.add_argument("--port", type=int, default=None, help="default 5050 (the next free one if taken)")
    serve.add_argument("--open", action=argparse.BooleanOptionalAction, default=False, help="open a browser")
    serve.add_argument("--no-browser", dest="open", action="store_false", help="do not open a browser")
    serve.add_argument("--data-dir", default=None, help="where runs are saved")
    serve.add_argument("--token", default=None, help="access token (required off loopback; random if omitted)")
    serve.add_argument(
        "--cache-gb",
        type=float,
        default=None,
        help="memory for runs' captures, in GiB (default: a quarter of RAM, at most 4)",
    )
    serve.add_argument(
        "--spill-gb",
        type=float,
        default=None,
        help="disk for what the cache cannot hold (a long run's head-mean attention), in GiB, in a "
        "temporary directory removed on exit (default: 16; 0: recompute instead)",
    )
    serve.add_argument(
        "--log-views", action="store_true", help="print each view's computing time (and its wait for the model)"
    )
    serve.set_defaults(func=cmd_serve)

    trace = sub.add_parser("trace", help="generate in the terminal, tokens coloured by probability")
    _add_model_args(trace)
    _add_remote_args(trace)
    trace.add_argument("prompt", nargs="?", default=DEMO_PROMPT)
    trace.add_argument("--chat", action="store_true", help="use the model's chat template")
    trace.add_argument("--system", default=None, help="system prompt (chat mode)")
    trace.add_argument("--temperature", type=float, default=0.0)
    trace.add_argument("--top-k", type=int, default=None)
    trace.add_argument("--top-p", type=float, default=1.0)
    trace.add_argument("--max-new-tokens", type=int, default=64)
    trace.add_argument("--seed", type=int, default=None)
    trace.add_argument("--top-n", type=int, default=10)
    trace.add_argument("--color-by", choices=["probability", "entropy"], default="probability")
    trace.add_argument("--no-color", action="store_true")
    trace.add_argument("--json", default=None, help="write the trace to this file")
    trace.set_defaults(func=cmd_trace)

    models = sub.add_parser("models", help="list the models that can be loaded")
    models.set_defaults(func=cmd_models)

    export = sub.add_parser("export", help="export a saved run")
    export.add_argument("run_id")
    export.add_argument("--data-dir", default=None)
    export.add_argument("--json", default=None, help="write the JSON bundle here")
    export.add_argument("--csv", default=None, help="write per-token statistics here")
    export.add_argument("--html", default=None, help="write a self-contained HTML report here")
    export.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:  # pydantic/param validation: one line, no traceback
        raise SystemExit(f"error: {str(exc).splitlines()[0]}") from None


if __name__ == "__main__":
    sys.exit(main())
