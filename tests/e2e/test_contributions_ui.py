"""Issue 17 in the browser: a foil picked from the candidates (or typed) that every view
explaining a logit uses, watched tokens' rank trajectories, and the Contributions tab (head
effects → a head's attention row, the contribution graph → the heads of an edge, neurons).

Each test drives the page as a user does on the tiny random model and checks what the page
holds afterwards: the chips, the charts' titles and series (`window.__llmvis.charts()`), and
the numbers the server gives for the same request.
"""

from __future__ import annotations

import math
import re

import pytest
from e2e_helpers import Page, click_candidate
from test_ui import generate, open_fork_position, set_number, shot, wait_charts, wait_model

pytestmark = pytest.mark.e2e

LAYERS, HEADS = 2, 4  # the tiny Llama of tests/tiny_models.py


def charts(p: Page, tab: str) -> dict:
    return p.js(
        "(tab) => Object.fromEntries(Object.entries(window.__llmvis.charts()).filter(([k]) => k.startsWith(tab + '.')))",
        tab,
    )


def title_of(p: Page, chart: str) -> str:
    return p.js("(id) => { const c = window.__llmvis.charts()[id]; return c ? c.title : ''; }", chart)


def wait_title(p: Page, chart: str, test: str, present: bool = True, timeout: float = 60) -> str:
    """Until the chart's title contains `test` (or, with present=False, no longer does)."""
    p.until(
        "([id, s, present]) => { const c = window.__llmvis.charts()[id]; return c && c.title.includes(s) === present; }",
        timeout,
        arg=[chart, test, present],
        what=f"{chart}'s title {'with' if present else 'without'} {test!r} (now {title_of(p, chart)!r})",
    )
    return title_of(p, chart)


def api_view(p: Page, name: str, params: dict) -> dict:
    """The view as the server gives it for the open run (the same request the tab makes)."""
    return p.js(
        """([name, params]) => { const q = new URLSearchParams();
             for (const [k, v] of Object.entries(params)) q.set(k, String(v));
             return fetch(`/api/runs/${window.__llmvis.app.run.id}/views/${name}?${q}`).then((r) => r.json()); }""",
        [name, params],
    )


def pick_foil(p: Page) -> tuple[int, dict, list[dict]]:
    """A finished run's third generated token, selected, with its runner-up candidate as the foil
    (picked from the candidates chart); returns (position, the foil, the candidates)."""
    pos, chosen, top = open_fork_position(p)
    assert p.page.locator("[data-testid=foil-chip]").count() == 0
    pick = next(i for i, c in enumerate(top) if c["id"] != chosen)
    click_candidate(p, pick)
    p.page.click("[data-testid=set-foil]")
    p.page.locator("[data-testid=foil-chip]").wait_for()
    return pos, top[pick], top


def quiet_point(p: Page, chart: str, edge: dict, others: list[dict], column: dict[int, int]) -> tuple[float, float]:
    """A point on `edge` (page pixels) as far as possible from every other edge of its layer, so
    that a click there hits this edge and no other."""

    def px(layer: int, pos: int) -> tuple[float, float]:
        return tuple(p.js("([id, v]) => window.__llmvis.chartPixel(id, v)", [chart, [column[pos], layer]]))

    def seg(e: dict):
        return px(e["layer"], e["source"]), px(e["layer"] + 1, e["target"])

    def dist(pt, a, b) -> float:
        (x, y), (x1, y1), (x2, y2) = pt, a, b
        dx, dy = x2 - x1, y2 - y1
        t = max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / ((dx * dx + dy * dy) or 1)))
        return math.hypot(x - x1 - t * dx, y - y1 - t * dy)

    a, b = seg(edge)
    near = [seg(o) for o in others if o["layer"] == edge["layer"] and o is not edge]
    best, point = -1.0, a
    for i in range(5, 96):
        t = i / 100
        pt = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
        d = min((dist(pt, *s) for s in near), default=1e9)
        if d > best:
            best, point = d, pt
    assert best > 4, f"no point of the edge is clear of the others ({best:.1f} px)"
    return point


def test_a_foil_from_the_candidates_explains_every_logit_against_it(page: Page):
    wait_model(page)
    set_number(page, "temperature-box", "0")
    generate(page, "The capital of France is", max_tokens=16)
    pos, foil, _ = pick_foil(page)
    label = foil["label"]
    state = page.js("() => window.__llmvis.app.foil")
    assert state == {"id": foil["id"], "label": label}
    target = page.js(f"() => window.__llmvis.app.run.tokens[{pos}].label")
    chip = page.page.locator("[data-testid=foil-chip]").text_content()
    assert f"'{target}' vs '{label}'" in chip, chip
    shot(page, "foil-picked")

    # Layers: the lens, the rank trajectories and the residual stream are computed against it.
    page.page.click("[data-testid=tab-layers]")
    drawn = wait_charts(page, "layers", ["lens", "ranks", "resid", "sim"])
    for name in ("lens", "ranks", "resid"):
        wait_title(page, f"layers.{name}", f"vs '{label}'")
    lens = api_view(page, "logit_lens", {"position": pos, "foil": foil["id"]})
    assert lens["foil_id"] == foil["id"] and len(lens["layers"]) == LAYERS + 1
    ranks = charts(page, "layers")["layers.ranks"]["series"]
    # the target, the foil and the two runners-up (none watched), each over L+1 hidden states; the gap
    assert [s["length"] for s in ranks] == [LAYERS + 1] * 5, ranks
    assert "vs" not in drawn["layers.sim"]["title"]  # similarity has nothing to do with a logit

    # Watching a candidate: the rank chart follows it instead of the runners-up.
    page.page.click("[data-testid=tab-tokens]")
    top = page.js(f"() => window.__llmvis.app.run.tokens[{pos}].stats.top")
    chosen = page.js(f"() => window.__llmvis.app.run.tokens[{pos}].id")
    watch = next(i for i, c in enumerate(top) if c["id"] not in (chosen, foil["id"]))
    click_candidate(page, watch)
    page.page.click("[data-testid=watch]")
    assert page.page.locator("[data-testid=watch-chip]").count() == 1
    assert top[watch]["label"] in page.page.locator("[data-testid=watch-chip]").text_content()
    page.page.click("[data-testid=tab-layers]")
    page.until(
        "() => { const c = window.__llmvis.charts()['layers.ranks']; return c && c.series.length === 4; }",
        60,
        what="the rank chart with the target, the foil, the watched token and the gap",
    )

    # Attribution: rollout ignores the foil (and says so); a gradient method uses it.
    page.page.click("[data-testid=tab-attribution]")
    wait_charts(page, "attribution", ["bars"])
    note = page.page.locator("[data-testid=note-attribution]")
    note.wait_for()
    assert "ignores the foil" in note.text_content() and label in note.text_content()
    assert "vs" not in title_of(page, "attribution.bars")
    page.page.select_option("[data-testid=attr-method]", "grad_x_input")
    title = wait_title(page, "attribution.bars", f"vs '{label}'")
    assert "logit(target) − logit(foil)" in title
    assert note.is_hidden()

    # The choice follows the selection: the next token is explained against the same foil.
    page.page.click("[data-testid=tab-layers]")
    page.page.keyboard.press("ArrowRight")
    page.until("(p) => window.__llmvis.app.selected === p + 1", 10, arg=pos)
    nxt = page.js(f"() => window.__llmvis.app.run.tokens[{pos + 1}]")
    chip = page.page.locator("[data-testid=foil-chip]").text_content()
    assert f"'{nxt['label']}' vs '{label}'" in chip
    if nxt["id"] != foil["id"]:
        wait_title(page, "layers.lens", f"position {pos + 1}: '{nxt['label']}' vs '{label}'")

    # Cleared: the chips go and the titles no longer name it.
    page.page.click("[data-testid=foil-clear]")
    assert page.page.locator("[data-testid=foil-chip]").count() == 0
    assert page.js("() => window.__llmvis.app.foil") is None
    wait_title(page, "layers.resid", f"vs '{label}'", present=False)
    assert not [e for e in page.errors if "pageerror" in e], page.errors


def test_a_typed_foil_must_be_one_token(page: Page):
    wait_model(page)
    set_number(page, "temperature-box", "0")
    generate(page, "Once upon a time", max_tokens=12)
    _, chosen, _ = open_fork_position(page)
    box = page.page.locator("[data-testid=foil-text]")
    go = page.page.locator("[data-testid=foil-typed]")
    # several tokens: said, and refused
    long_text = " antidisestablishmentarianism"
    n = len(
        page.js("(t) => fetch('/api/tokenize?text=' + encodeURIComponent(t)).then((r) => r.json())", long_text)[
            "tokens"
        ]
    )
    assert n > 1
    box.fill(long_text)
    page.page.locator("[data-testid=foil-too-many]").wait_for()
    assert f"{n} tokens" in page.page.locator("[data-testid=foil-too-many]").text_content()
    assert go.is_disabled()
    # one token (not the chosen one): it becomes the foil
    one = next(
        (t, r["tokens"][0])
        for t in ("e", "a", "t", "o", "x")
        for r in [page.js("(t) => fetch('/api/tokenize?text=' + encodeURIComponent(t)).then((r) => r.json())", t)]
        if len(r["tokens"]) == 1 and r["tokens"][0]["id"] != chosen
    )
    box.fill(one[0])
    page.until("() => !document.querySelector('[data-testid=foil-typed]').disabled", 10, what="the typed token")
    go.click()
    page.page.locator("[data-testid=foil-chip]").wait_for()
    assert page.js("() => window.__llmvis.app.foil") == {"id": one[1]["id"], "label": one[1]["label"]}
    page.page.click("[data-testid=tab-contributions]")
    wait_charts(page, "contributions", ["heads", "neurons"])
    wait_title(page, "contributions.heads", f"vs '{one[1]['label']}'")
    page.page.click("[data-testid=foil-clear]")


def test_contributions_tab_heads_graph_and_neurons_answer_clicks(page: Page):
    wait_model(page)
    set_number(page, "temperature-box", "0")
    generate(page, "The capital of France is", max_tokens=16)
    pos, foil, _ = pick_foil(page)
    label = foil["label"]
    page.page.click("[data-testid=tab-contributions]")
    wait_charts(page, "contributions", ["heads", "headrow", "graph", "neurons"])
    # The tiny model's attention is spread thin: a low threshold keeps attention edges.
    graph = api_view(page, "contribution_graph", {"position": pos, "threshold": 0.01, "top_k": 6})
    page.page.select_option("[data-testid=flow-threshold]", "0.01")
    page.until(
        "(n) => { const c = window.__llmvis.charts()['contributions.graph']; return c && c.series[0].length === n; }",
        30,
        arg=len(graph["nodes"]),
        what="the graph at threshold 0.01",
    )
    wait_charts(page, "contributions", ["heads", "headrow", "graph", "edgeheads", "neurons"])
    for name in ("heads", "neurons"):
        wait_title(page, f"contributions.{name}", f"vs '{label}'")
    drawn = charts(page, "contributions")
    # every layer × head, the numbers the server gives for the foil
    heads = api_view(page, "head_contributions", {"position": pos, "foil": foil["id"]})
    assert heads["target"]["foil_id"] == foil["id"]
    assert drawn["contributions.heads"]["series"][0]["length"] == LAYERS * HEADS
    assert drawn["contributions.headrow"]["title"].endswith("largest |effect|")
    shot(page, "contributions-foil")

    # Click a head other than the default: its attention row from the source position is drawn.
    effects = heads["effects"]
    default = max(((abs(v), lyr, h) for lyr, row in enumerate(effects) for h, v in enumerate(row)))[1:]
    layer, head = next((lyr, h) for lyr in range(LAYERS) for h in range(HEADS) if (lyr, h) != default)
    page.page.locator("[data-chart='contributions.heads']").scroll_into_view_if_needed()
    x, y = page.js("(v) => window.__llmvis.chartPixel('contributions.heads', v)", [head, layer])
    page.page.mouse.click(x, y)
    title = wait_title(page, "contributions.headrow", f"Attention of L{layer} H{head} from {pos - 1} ")
    assert "largest" not in title
    row = charts(page, "contributions")["contributions.headrow"]["series"][0]
    assert row["length"] == pos  # keys 0..pos-1 of the source position, unpooled on a short run

    # The graph: the server's nodes, on a compact axis; click an attention edge → its heads.
    assert drawn["contributions.graph"]["series"][0]["length"] == len(graph["nodes"])
    assert "vs" not in drawn["contributions.graph"]["title"]  # the graph does not use the foil
    positions = sorted({n["position"] for n in graph["nodes"]})
    column = {pos_: i for i, pos_ in enumerate(positions)}
    default_title = title_of(page, "contributions.edgeheads")
    assert "strongest" in default_title
    shown = [int(v) for v in re.match(r"Heads carrying (\d+) .*→ (\d+) .*, layer (\d+)", default_title).groups()]
    candidates = [
        e
        for e in graph["edges"]
        if e["kind"] == "attention" and e["source"] != e["target"] and [e["source"], e["target"], e["layer"]] != shown
    ]
    assert candidates, graph["edges"]
    edge = max(candidates, key=lambda e: e["weight"])
    page.page.locator("[data-chart='contributions.graph']").scroll_into_view_if_needed()
    x, y = quiet_point(page, "contributions.graph", edge, graph["edges"], column)
    page.page.mouse.move(x, y)
    page.page.mouse.click(x, y)
    page.until(
        "() => { const c = window.__llmvis.charts()['contributions.edgeheads']; return c && !c.title.includes('strongest'); }",
        10,
        what="the clicked edge's heads",
    )
    title = title_of(page, "contributions.edgeheads")
    got = [int(v) for v in re.match(r"Heads carrying (\d+) .*→ (\d+) .*, layer (\d+)", title).groups()]
    assert got == [edge["source"], edge["target"], edge["layer"]], (title, edge)
    assert charts(page, "contributions")["contributions.edgeheads"]["series"][0]["length"] == HEADS
    shot(page, "contributions-edge-heads")

    # A higher threshold asks for the graph again: the server's (smaller) graph is drawn.
    sparse = api_view(page, "contribution_graph", {"position": pos, "threshold": 0.3, "top_k": 6})
    assert len(sparse["nodes"]) < len(graph["nodes"])
    page.page.select_option("[data-testid=flow-threshold]", "0.3")
    page.until(
        "(n) => { const c = window.__llmvis.charts()['contributions.graph']; return c && c.series[0].length === n; }",
        30,
        arg=len(sparse["nodes"]),
        what="the graph at threshold 0.3",
    )

    # Neurons: the merged ranking of every layer's top neurons, against the foil.
    neurons = api_view(page, "neuron_contributions", {"position": pos, "foil": foil["id"], "top_k": 10})
    listed = sum(len(layer["top"]) + len(layer["experts"]) for layer in neurons["layers"])
    assert drawn["contributions.neurons"]["series"][0]["length"] == min(24, listed)

    # Cleared: heads and neurons explain the token's own logit again.
    page.page.click("[data-testid=foil-clear]")
    assert page.page.locator("[data-testid=foil-chip]").count() == 0
    wait_title(page, "contributions.heads", f"vs '{label}'", present=False)
    assert "→ '" in title_of(page, "contributions.heads")
    assert not [e for e in page.errors if "pageerror" in e], page.errors
