"""Offline exports of a run: a JSON bundle (the trace plus the views the user opened), a CSV of
per-token statistics, and the self-contained HTML report (the web build's report.html with the
bundle put into its data slot).

The bundle is versioned like the trace so a file sent to a colleague can be read back, and
`read_bundle` / `read_csv` exist so the round trip is tested, not assumed.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy
from pydantic import BaseModel, Field

from llmvis.config import Settings
from llmvis.store import Store
from llmvis.trace import Trace

REPORT_TEMPLATE = Path(__file__).resolve().parent / "static" / "report.html"
DATA_SLOT = '<script type="application/json" id="llmvis-data"></script>'
BUNDLE_FORMAT = "llmvis-run"
BUNDLE_VERSION = 1

CSV_COLUMNS = [
    "position",
    "id",
    "kind",
    "role",
    "text",
    "label",
    "raw_prob",
    "sampled_prob",
    "rank",
    "raw_entropy",
    "sampled_entropy",
    "logit_gap",
    "gap_to_top1",
    "top1_id",
    "top1_label",
    "top1_raw_prob",
    "entropy_upper",
    "missing_mass",
]


class ExportedView(BaseModel):
    view: str
    params: dict[str, Any]
    result: dict[str, Any]


class RunBundle(BaseModel):
    format: Literal["llmvis-run"] = "llmvis-run"
    version: int = BUNDLE_VERSION
    exported: float = Field(default_factory=time.time)
    trace: Trace
    views: list[ExportedView] = Field(default_factory=list)


def bundle(trace: Trace, views: list[ExportedView] | None = None) -> RunBundle:
    return RunBundle(trace=trace, views=list(views or []))


def run_bundle(store: Store, run_id: str) -> RunBundle | None:
    """The bundle of a saved run (None if there is no such run); used by the API and the CLI."""
    trace = store.get(run_id)
    if trace is None:
        return None
    views = [ExportedView(view=v.view, params=v.params, result=v.result) for v in store.opened_views(run_id)]
    return bundle(trace, views)


def read_bundle(data: str | bytes) -> RunBundle:
    raw = json.loads(data)
    if raw.get("format") != BUNDLE_FORMAT:
        raise ValueError("not an llmvis run bundle (missing format: llmvis-run)")
    if raw.get("version") != BUNDLE_VERSION:
        raise ValueError(f"bundle version {raw.get('version')} is not supported (expected {BUNDLE_VERSION})")
    return RunBundle.model_validate(raw)


def _cell(value: Any) -> Any:
    return "" if value is None else value


def stats_csv(trace: Trace) -> str:
    """One row per position; statistics empty where the trace has none (position 0)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for token in trace.tokens:
        s = token.stats
        top = s.top[0] if s is not None and s.top else None
        writer.writerow(
            [
                _cell(v)
                for v in (
                    token.position,
                    token.id,
                    token.kind,
                    token.role,
                    token.text,
                    token.label,
                    s and s.raw_prob,
                    s and s.sampled_prob,
                    s and s.rank,
                    s and s.raw_entropy,
                    s and s.sampled_entropy,
                    s and s.logit_gap,
                    s and s.gap_to_top1,
                    top and top.id,
                    top and top.label,
                    top and top.raw_prob,
                    s and s.entropy_upper,
                    s and s.missing_mass,  # remote engines: only the top-N is known
                )
            ]
        )
    return out.getvalue()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


class ReportUnavailable(RuntimeError):
    """The web build (static/report.html) is missing."""


def _float32(value: Any) -> Any:
    """Floats written with the shortest decimals that read back as the same float32: the model
    computed them in float32 (or less), so nothing is lost, and a run's JSON shrinks by ~15%."""
    if isinstance(value, float):
        return float(str(numpy.float32(value))) if math.isfinite(value) else None  # as pydantic writes NaN
    if isinstance(value, list):
        return [_float32(v) for v in value]
    if isinstance(value, dict):
        return {k: _float32(v) for k, v in value.items()}
    return value


def report_html(run: RunBundle, template: Path | None = None, compact: bool = False) -> str:
    """The report page with `run` in its data slot; opens offline, needs no server.
    `compact`: numbers to float32 precision, for pages kept many times over (notebooks)."""
    template = template or REPORT_TEMPLATE
    try:
        page = template.read_text(encoding="utf-8")
    except OSError as exc:  # missing, or being rebuilt right now
        raise ReportUnavailable("the HTML report is not built: run `make web` (or `make run`) first") from exc
    if DATA_SLOT not in page:
        raise ReportUnavailable(f"{template} has no data slot; rebuild the web app")
    # Inside <script>, "<" could open "</script>" or "<!--": JSON allows writing it as \u003c.
    data = (
        json.dumps(_float32(run.model_dump(mode="json")), separators=(",", ":"), ensure_ascii=False)
        if compact
        else run.model_dump_json()
    )
    data = data.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    slot = DATA_SLOT.replace("></script>", f">{data}</script>")
    before, _, after = page.rpartition(DATA_SLOT)  # the last one: the page's own, after its scripts
    return before + slot + after


_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>(.*?)</script>", re.S)


def report_csp(page: str) -> str:
    """A CSP for serving the report from our origin: only its own inline scripts (by hash), no network."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(page)
    )
    scripts = hashes or "'none'"
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )


def export_cli(args: argparse.Namespace) -> int:
    """`llmvis export RUN_ID [--data-dir D] [--json P] [--csv P] [--html P]` (no flag: JSON to stdout)."""
    settings = Settings(data_dir=Path(args.data_dir)) if args.data_dir else Settings()
    store = Store(settings.db_path)
    try:
        run = run_bundle(store, args.run_id)
    finally:
        store.close()
    if run is None:
        print(f"llmvis: no run {args.run_id!r} in {settings.db_path}", file=sys.stderr)
        return 1
    if not (args.json or args.csv or args.html):
        print(run.model_dump_json(indent=2))
        return 0
    outputs: list[tuple[str, Any]] = [
        (args.json, lambda: run.model_dump_json(indent=2)),
        (args.csv, lambda: stats_csv(run.trace)),
        (args.html, lambda: report_html(run)),
    ]
    for path, make in outputs:
        if not path:
            continue
        try:
            text = make()
        except ReportUnavailable as exc:
            print(f"llmvis: {exc}", file=sys.stderr)
            return 1
        Path(path).write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0
