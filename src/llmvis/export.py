"""Offline exports of a run: a JSON bundle (the trace plus the views the user opened) and a CSV
of per-token statistics. (The self-contained HTML report is built by the web app.)

The bundle is versioned like the trace so a file sent to a colleague can be read back, and
`read_bundle` / `read_csv` exist so the round trip is tested, not assumed.
"""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from llmvis.trace import Trace

BUNDLE_FORMAT = "llmvis-run"
BUNDLE_VERSION = 1

CSV_COLUMNS = [
    "position", "id", "kind", "role", "text", "label", "raw_prob", "sampled_prob", "rank",
    "raw_entropy", "sampled_entropy", "logit_gap", "gap_to_top1", "top1_id", "top1_label",
    "top1_raw_prob",
]


class ExportedView(BaseModel):
    view: str
    params: dict[str, Any]
    result: dict[str, Any]


class RunBundle(BaseModel):
    format: Literal["llmvis-run"] = BUNDLE_FORMAT
    version: int = BUNDLE_VERSION
    exported: float = Field(default_factory=time.time)
    trace: Trace
    views: list[ExportedView] = Field(default_factory=list)


def bundle(trace: Trace, views: list[ExportedView] | None = None) -> RunBundle:
    return RunBundle(trace=trace, views=list(views or []))


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
        writer.writerow([_cell(v) for v in (
            token.position, token.id, token.kind, token.role, token.text, token.label,
            s and s.raw_prob, s and s.sampled_prob, s and s.rank, s and s.raw_entropy,
            s and s.sampled_entropy, s and s.logit_gap, s and s.gap_to_top1,
            top and top.id, top and top.label, top and top.raw_prob,
        )])
    return out.getvalue()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))
