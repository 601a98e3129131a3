"""Runs and views inside Jupyter: the offline report (the web app's own chips, candidates and
chart builders, scripts inlined) in a sandboxed frame, so a notebook shows what the browser does.

`display(trace)` shows the run; `llmvis.show(trace, loaded, views=[...])` adds views computed
by the same registry the server uses. The frame is `sandbox="allow-scripts"` (no origin: it can
neither read the notebook page nor call its server) and the page carries a CSP with no network
source, so a notebook reopened anywhere stays inert: nothing is fetched, nothing is sent.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmvis.export import ExportedView, RunBundle, bundle, report_csp, report_html
from llmvis.trace import Trace

ViewSpec = str | tuple[str, dict[str, Any]]
Theme = Literal["light", "dark"]


@dataclass
class Shown:
    """A run (and its views) ready to display: `_repr_html_` for notebooks, `save` for a file."""

    run: RunBundle
    theme: Theme = "light"
    height: int = 620

    def page(self) -> str:
        """The whole report page, with its theme and first tab asked for and a no-network CSP."""
        page = report_html(self.run, compact=True)
        first_tab = "saved" if self.run.views else "tokens"
        page = page.replace(
            '<html lang="en" data-theme="dark">',
            f'<html lang="en" data-theme="{self.theme}" data-tab="{first_tab}">',
            1,
        )
        policy = f'<meta http-equiv="Content-Security-Policy" content="{report_csp(page)}">'
        return page.replace("<head>", "<head>" + policy, 1)

    def _repr_html_(self) -> str:
        title = html.escape(self.run.trace.title or self.run.trace.model.name)
        return (
            f'<iframe title="llmvis · {title}" sandbox="allow-scripts" referrerpolicy="no-referrer" '
            f'style="width:100%;height:{self.height}px;border:1px solid #8884;border-radius:6px" '
            f"srcdoc='{_attribute(self.page())}'></iframe>"
        )

    def save(self, path: str | Path) -> Path:
        """The same page as a standalone HTML file (what `llmvis export --html` writes)."""
        out = Path(path)
        out.write_text(self.page(), encoding="utf-8")
        return out


def _attribute(text: str) -> str:
    """`text` as a single-quoted attribute value: only & and ' need escaping there, so the
    run's JSON (all double quotes) keeps its size."""
    return text.replace("&", "&amp;").replace("'", "&#39;")


def _spec(view: ViewSpec) -> tuple[str, dict[str, Any]]:
    if isinstance(view, str):
        return view, {}
    name, params = view
    return name, dict(params)


def compute_views(trace: Trace, loaded: Any, views: Iterable[ViewSpec]) -> list[ExportedView]:
    """Each view computed as the server computes it, kept as the report's saved views."""
    from llmvis.analyses import ViewContext, compute
    from llmvis.analyses.registry import VIEWS
    from llmvis.internals import Internals

    specs = [_spec(v) for v in views]
    needs = any(VIEWS[name].needs_internals for name, _ in specs if name in VIEWS)
    if needs and loaded is None:
        raise ValueError("these views read the model's internals: pass the loaded model (show(trace, loaded, ...))")
    ctx = ViewContext(trace, loaded, Internals(loaded, trace.ids) if needs else None)
    out = []
    for name, params in specs:
        result = compute(name, ctx, params)
        shown = VIEWS[name].params.model_validate(params).model_dump(mode="json", exclude_unset=True)
        out.append(ExportedView(view=name, params=shown, result=result.model_dump(mode="json")))
    return out


def show(
    trace: Trace,
    loaded: Any = None,
    views: Sequence[ViewSpec] = (),
    *,
    theme: Theme = "light",
    height: int = 620,
) -> Shown:
    """The run with `views` (names, or (name, params) pairs as the HTTP API takes them) drawn
    by the web app's charts. Views that read internals need `loaded`, the run's model."""
    return Shown(bundle(trace, compute_views(trace, loaded, views)), theme=theme, height=height)


def trace_html(trace: Trace) -> str:
    """What `display(trace)` shows: the run's chips, colour modes and candidates."""
    return Shown(bundle(trace))._repr_html_()


@dataclass
class Difference:
    position: int
    a: str
    b: str
    d_prob: float  # b − a: probability of the token each run chose
    d_entropy: float  # b − a: raw entropy, nats


@dataclass
class Comparison:
    """Two runs side by side, as the web app's compare view reads them: where they diverge and
    the positions whose statistics differ most."""

    a: Trace
    b: Trace
    divergence: int
    differences: list[Difference]

    def _repr_html_(self) -> str:
        def text(trace: Trace) -> str:
            return html.escape("".join(t.text for t in trace.tokens[self.divergence :]))

        rows = "".join(
            f"<tr><td>{d.position}</td><td>{html.escape(d.a)}</td><td>{html.escape(d.b)}</td>"
            f"<td>{d.d_prob:+.3f}</td><td>{d.d_entropy:+.3f}</td></tr>"
            for d in self.differences
        )
        return (
            f"<div><p>The runs share {self.divergence} tokens, then</p>"
            f"<p><b>A</b>: <code>{text(self.a)}</code></p><p><b>B</b>: <code>{text(self.b)}</code></p>"
            "<table><thead><tr><th>position</th><th>A</th><th>B</th><th>Δ prob</th><th>Δ entropy</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )


ROUNDING = 1e-4  # below this, two forwards of the same tokens differ by kernel rounding, not by change


def compare(a: Trace, b: Trace, limit: int = 10) -> Comparison:
    """Where `b` departs from `a` and the `limit` positions that changed most (|Δentropy| + |Δprob|)."""
    n = min(len(a.tokens), len(b.tokens))
    divergence = next((i for i in range(n) if a.tokens[i].id != b.tokens[i].id), n)
    found = []
    for i in range(n):
        sa, sb = a.tokens[i].stats, b.tokens[i].stats
        if sa is None or sb is None:
            continue
        pa = sa.raw_prob if sa.sampled_prob is None else sa.sampled_prob
        pb = sb.raw_prob if sb.sampled_prob is None else sb.sampled_prob
        diff = Difference(i, a.tokens[i].label, b.tokens[i].label, pb - pa, sb.raw_entropy - sa.raw_entropy)
        if abs(diff.d_prob) + abs(diff.d_entropy) > ROUNDING:
            found.append(diff)
    found.sort(key=lambda d: (-(abs(d.d_prob) + abs(d.d_entropy)), d.position))
    return Comparison(a, b, divergence, found[:limit])
