"""The web UI in a real browser against a real `llmvis serve` (tiny random model).

Each test drives the page the way a user does and checks what the page holds afterwards:
chips in the conversation, ECharts instances' series data (`window.__llmvis.charts()`),
computed styles, localStorage. Screenshots of every tab go to test-artifacts/e2e/ and
docs/screenshots/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from e2e_helpers import ARTIFACTS, SCREENSHOTS, Page, Server, click_candidate, tiny_model_server

pytestmark = pytest.mark.e2e

TABS = {
    "tokens": ["top"],
    "attention": ["matrix", "row"],
    "heads": ["grid", "entropy", "health"],
    "layers": ["lens", "ranks", "resid", "sim"],
    "contributions": ["heads", "graph", "neurons"],
    "activations": ["hist", "stats"],
    "embedding": ["scatter"],
    "uncertainty": ["curve"],
    "attribution": ["bars"],
    "whatif": ["heads"],
}

RUN_STATUS = "() => window.__llmvis.app.run && window.__llmvis.app.run.status"
CHIPS = "() => document.querySelectorAll('[data-testid=conversation] .tok').length"
GENERATED = "() => document.querySelectorAll('[data-testid=conversation] .tok.generated').length"


def shot(p: Page, name: str, docs: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    p.page.screenshot(path=str(path))
    if docs:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        small_png(path, SCREENSHOTS / f"{name}.png")


def small_png(src, dst) -> None:
    """The docs copy: 256-colour PNG (a third of the size, no visible loss on a flat UI)."""
    try:
        from PIL import Image
    except ImportError:
        shutil.copyfile(src, dst)
        return
    with Image.open(src) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            dst, optimize=True
        )


def wait_model(p: Page) -> None:
    p.page.wait_for_selector("[data-testid=model-info] .model-name", timeout=30_000)


@contextmanager
def tiny_model_page(browser, tmp_path, arch: str) -> Iterator[Page]:
    """A page on a `llmvis serve` of its own, on a tiny random model of `arch`, once it is loaded;
    the page must not have raised an uncaught error by the end."""
    server = tiny_model_server(tmp_path, arch)
    p = Page(browser, server.base)
    try:
        wait_model(p)
        yield p
        assert not [e for e in p.errors if "pageerror" in e], p.errors
    finally:
        p.close()
        server.stop()


def set_number(p: Page, testid: str, value: str) -> None:
    box = p.page.locator(f"[data-testid={testid}]")
    box.fill(value)
    box.dispatch_event("change")


def generate(p: Page, prompt: str, max_tokens: int = 48, watch: bool = False, seed: int = 11) -> list[int]:
    """Type the prompt, press Enter, wait for the run to finish. Returns generated-chip counts
    seen while it was streaming (when `watch`). A fixed seed keeps every run reproducible."""
    set_number(p, "max-tokens-box", str(max_tokens))
    set_number(p, "seed-box", str(seed))
    before = p.js("() => window.__llmvis.app.run && window.__llmvis.app.run.id")
    if watch:  # sample the chip count at every DOM update (the tiny model is too fast to poll)
        p.js("""() => { window.__samples = []; const body = document.querySelector('[data-testid=conversation]');
            new MutationObserver(() => { const r = window.__llmvis.app.run;
              window.__samples.push([body.querySelectorAll('.tok.generated').length, r ? r.status : null]); })
            .observe(body, {childList: true, subtree: true}); }""")
    p.page.fill("[data-testid=prompt]", prompt)
    p.page.press("[data-testid=prompt]", "Enter")
    seen: list[int] = []
    p.until(
        "(before) => window.__llmvis.app.run && window.__llmvis.app.run.id !== before",
        30,
        arg=before,
        what="a new run to start",
    )
    while p.js(RUN_STATUS) == "streaming":
        p.page.wait_for_timeout(40)
    assert p.js(RUN_STATUS) in ("done", "cancelled"), p.js(RUN_STATUS)
    if watch:
        seen = [n for n, status in p.js("() => window.__samples") if status == "streaming"]
    return seen


def tab_charts(p: Page, tab: str) -> dict:
    return p.js(
        """(tab) => Object.fromEntries(Object.entries(window.__llmvis.charts())
             .filter(([k, v]) => k.startsWith(tab + '.') && v.visible))""",
        tab,
    )


def wait_charts(p: Page, tab: str, names: list[str], timeout: float = 60) -> dict:
    """Until every chart of the tab is drawn with non-empty series; returns them."""

    def ready():
        charts = tab_charts(p, tab)
        ok = all(
            f"{tab}.{n}" in charts
            and charts[f"{tab}.{n}"]["series"]
            and all(s["length"] > 0 for s in charts[f"{tab}.{n}"]["series"])
            for n in names
        )
        return charts if ok else None

    import time

    deadline = time.monotonic() + timeout
    while True:
        charts = ready()
        if charts:
            return charts
        status = p.page.locator(f"[data-testid=status-{tab}]").text_content()
        if status and "Could not" in status:
            raise AssertionError(f"{tab}: {status}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{tab}: charts {names} not drawn; have {tab_charts(p, tab)}")
        p.page.wait_for_timeout(150)


def draw_every_tab(p: Page, timeout: float, shoot=None) -> dict[str, str]:
    """Open each tab in turn until its charts are drawn (then `shoot(tab)`); the tabs that did not."""
    failed = {}
    for tab, names in TABS.items():
        p.page.click(f"[data-testid=tab-{tab}]")
        try:
            wait_charts(p, tab, names, timeout=timeout)
        except AssertionError as e:  # check every tab, then report all that failed
            failed[tab] = str(e)
            continue
        if shoot is not None:
            p.page.wait_for_timeout(400)  # let the canvas paint before the screenshot
            shoot(tab)
    return failed


def open_fork_position(p: Page) -> tuple[int, int, list[dict]]:
    """Select the open run's third generated token and show its candidates in the Tokens tab;
    returns (position, the token's id, its candidates)."""
    pos = p.js("() => window.__llmvis.app.run.promptLen + 2")
    p.page.locator(f".tok[data-p='{pos}']").click()
    p.page.click("[data-testid=tab-tokens]")
    wait_charts(p, "tokens", ["top"])
    chosen = p.js(f"() => window.__llmvis.app.run.tokens[{pos}].id")
    top = p.js(f"() => window.__llmvis.app.run.tokens[{pos}].stats.top")
    return pos, chosen, top


def fork_to_candidate(p: Page, timeout_ms: float = 120_000) -> dict:
    """Fork the open (finished) run at its third generated token to another of its candidates;
    waits for the forked run to finish and the compare view to open."""
    parent = p.js("() => window.__llmvis.app.run.id")
    pos, chosen, top = open_fork_position(p)
    pick = next(i for i, c in enumerate(top) if c["id"] != chosen)
    click_candidate(p, pick)
    fork_btn = p.page.locator("[data-testid=fork]")
    fork_btn.wait_for()
    assert top[pick]["label"] in fork_btn.text_content()
    fork_btn.click()
    p.page.locator("[data-testid=compare]").wait_for(timeout=timeout_ms)
    run = p.js(
        "() => { const r = window.__llmvis.app.run; return {id: r.id, parent: r.parentId, status: r.status,"
        " source: r.model.source, ids: r.tokens.map((t) => t.id)}; }"
    )
    assert run["id"] != parent and run["parent"] == parent and run["status"] == "done", run
    return {"parent": parent, "child": run["id"], "pos": pos, "candidate": top[pick], "run": run}


def test_page_opens_with_the_model(page: Page):
    wait_model(page)
    assert page.page.title() == "llmvis"
    assert "tiny-llama" in page.page.locator("[data-testid=model-info]").text_content()
    # the load-time self-check of the internals (the server loaded the model from its folder)
    assert page.page.locator("[data-testid=model-internals]").text_content() == "internals verified (Llama-shaped)"
    assert page.page.locator("[data-testid=tabs] button:visible").count() == len(TABS)
    assert page.page.locator("[data-testid=tab-experts]").is_hidden()  # a dense model has no experts
    assert page.page.locator("[data-testid=generate]").is_enabled()
    assert not page.errors, page.errors


def test_generate_streams_and_every_tab_draws(page: Page):
    wait_model(page)
    # 400 greedy tokens (no early EOS on the tiny model) take long enough to span many frames.
    set_number(page, "temperature-box", "0")
    seen = generate(page, "The capital of France is", max_tokens=400, watch=True)
    final = page.js(GENERATED)
    assert final > 0
    # Tokens appeared while the run was still streaming, not all at the end.
    assert any(0 < n < final for n in seen), (seen[:20], final)
    stats = page.page.locator("[data-testid=run-stats]").text_content()
    assert f"{final} tokens" in stats
    shot(page, "conversation")

    page.page.locator("[data-testid=conversation] .tok.generated").nth(3).click()
    selected = page.js("() => window.__llmvis.app.selected")
    assert selected is not None
    assert page.page.locator("[data-testid=conversation] .tok.sel").count() == 1

    failed = {}
    for tab, names in TABS.items():
        page.page.click(f"[data-testid=tab-{tab}]")
        try:
            wait_charts(page, tab, names)
        except AssertionError as e:  # check every tab, then report all that failed
            failed[tab] = str(e)
            continue
        page.page.wait_for_timeout(300)  # let the canvas paint before the screenshot
        shot(page, f"tab-{tab}")
    assert not failed, failed

    # The top-N chart holds the selected token's candidates: as many bars as recorded.
    page.page.click("[data-testid=tab-tokens]")
    top = page.js("() => window.__llmvis.app.run.tokens[window.__llmvis.app.selected].stats.top.length")
    charts = wait_charts(page, "tokens", ["top"])
    assert charts["tokens.top"]["series"][0]["length"] == top
    assert not [e for e in page.errors if "pageerror" in e or "Content Security Policy" in e], page.errors


def test_attention_zoom_fetches_the_window_at_full_resolution(page: Page):
    wait_model(page)
    set_number(page, "temperature-box", "0")  # greedy: the random model repeats itself, no early EOS
    generate(page, "1 2 3 4 5 6 7 8 9 10", max_tokens=400)
    n = page.js("() => window.__llmvis.app.run.tokens.length")
    assert n > 256  # more positions than the heatmap's 256 bins: the server pools them
    page.page.click("[data-testid=tab-attention]")
    charts = wait_charts(page, "attention", ["matrix"])
    pooled = charts["attention.matrix"]["series"][0]["length"]
    assert pooled <= 256 * 257 // 2
    assert "window" not in charts["attention.matrix"]["title"]
    box = page.page.locator("[data-chart='attention.matrix']").bounding_box()
    page.page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    for _ in range(8):
        page.page.mouse.wheel(0, -300)
        page.page.wait_for_timeout(50)
    title = page.until(
        "() => { const c = window.__llmvis.charts()['attention.matrix']; return c && c.title.includes('window') && c.title; }",
        30,
        what="the zoomed window to be fetched",
    )
    start, end = (int(x) for x in title.split("window")[1].strip().split("–"))
    assert 0 <= start < end < n and end - start + 1 < n
    zoomed = page.js("() => window.__llmvis.charts()['attention.matrix'].series[0].length")
    w = end - start + 1
    if w <= 256:  # small enough for full resolution: every causal cell of the window is there
        assert zoomed >= w * (w + 1) // 2 * 0.9
    shot(page, "attention-zoomed")
    page.page.click("[data-testid=attn-reset]")
    page.until("() => !window.__llmvis.charts()['attention.matrix'].title.includes('window')", 30)


def test_arrow_keys_move_the_selection(page: Page):
    wait_model(page)
    generate(page, "hello world", max_tokens=16)
    page.page.locator("[data-testid=conversation] .tok").nth(2).click()
    assert page.js("() => window.__llmvis.app.selected") == 2
    page.page.keyboard.press("ArrowRight")
    page.page.keyboard.press("ArrowRight")
    assert page.js("() => window.__llmvis.app.selected") == 4
    page.page.keyboard.press("ArrowLeft")
    assert page.js("() => window.__llmvis.app.selected") == 3
    assert page.page.locator(".tok.sel").get_attribute("data-p") == "3"


def test_a_slow_view_says_what_the_server_is_doing(page: Page):
    """While a view takes more than a second, the tab's status line shows the server's progress
    for it (GET /api/runs/{id}/progress); once the view comes, the line clears and it draws. The
    view is held back and the progress answered here, so the wait is as long as the test needs."""
    wait_model(page)
    generate(page, "hello world", max_tokens=16)
    page.page.locator("[data-testid=conversation] .tok").nth(5).click()
    held, polls = [], []
    page.page.route("**/views/attribution?*", lambda route: held.append(route))
    busy = {"views": [{"view": "attribution", "step": "rollout", "done": 12, "total": 30, "seconds": 7.6}]}
    page.page.route("**/progress", lambda route: polls.append(1) or route.fulfill(json=busy))
    page.page.click("[data-testid=tab-attribution]")
    status = page.page.locator("[data-testid=status-attribution]")
    page.until(
        "() => (document.querySelector('[data-testid=status-attribution]').textContent || '')"
        ".includes('attention rollout, 12 of 30 layers (8 s)')",
        10,
        what="the server's progress in the status line",
    )
    assert held and polls
    shot(page, "progress-while-waiting")
    for route in held:
        route.continue_()
    wait_charts(page, "attribution", TABS["attribution"])
    page.until("() => !document.querySelector('[data-testid=status-attribution]').textContent", 10)
    asked = len(polls)
    page.page.wait_for_timeout(1500)
    assert len(polls) == asked  # nothing pending: no more polls
    assert status.text_content() == "" and not page.errors


def test_colour_modes_change_chip_colours(page: Page):
    wait_model(page)
    generate(page, "Once upon a time", max_tokens=40)
    colours = """() => Array.from(document.querySelectorAll('.tok.generated')).map(e => e.style.background)"""
    by_mode = {}
    for mode in ["default", "entropy", "probability", "gap"]:
        page.page.click(f"[data-testid=color-mode] button[data-value={mode}]")
        by_mode[mode] = page.js(colours)
        legend = page.page.locator("[data-testid=legend]").text_content()
        assert legend, mode
    # Continuous modes colour every generated token (they all have statistics) ...
    for mode in ["entropy", "probability", "gap"]:
        assert all(c for c in by_mode[mode]), (mode, by_mode[mode][:5])
    # ... and each mode gives a different picture.
    assert by_mode["entropy"] != by_mode["probability"] != by_mode["gap"]
    assert by_mode["default"] != by_mode["entropy"]
    # Default: yellow exactly where the sampled token was not the model's top-1.
    off_top1 = page.js(
        "() => window.__llmvis.app.run.tokens.filter(t => t.kind === 'generated').map(t => t.stats.rank > 0)"
    )
    assert [bool(c) for c in by_mode["default"]] == off_top1
    page.page.click("[data-testid=color-mode] button[data-value=entropy]")
    shot(page, "colour-entropy")


def test_tooltip_shows_token_numbers(page: Page):
    wait_model(page)
    generate(page, "1 2 3", max_tokens=16)
    page.page.locator(".tok.generated").first.hover()
    tip = page.page.locator("[data-testid=token-tooltip]")
    tip.wait_for(state="visible")
    text = tip.text_content()
    assert "raw prob" in text and "entropy" in text and "rank" in text


def test_splitter_drag_changes_and_remembers_the_width(page: Page):
    wait_model(page)
    right = page.page.locator("[data-testid=right-panel]")
    before = right.bounding_box()["width"]
    bar = page.page.locator("[data-testid=splitter]").bounding_box()
    x, y = bar["x"] + bar["width"] / 2, bar["y"] + 200
    page.page.mouse.move(x, y)
    page.page.mouse.down()
    page.page.mouse.move(x - 50, y, steps=4)
    page.page.mouse.move(x - 100, y, steps=4)
    page.page.mouse.up()
    after = right.bounding_box()["width"]
    assert after == pytest.approx(before + 100, abs=8)
    page.page.reload()
    wait_model(page)
    assert right.bounding_box()["width"] == pytest.approx(after, abs=2)


def test_embedding_2d_3d_toggle(page: Page):
    wait_model(page)
    generate(page, "The capital of Italy is", max_tokens=24)
    page.page.click("[data-testid=tab-embedding]")
    charts = wait_charts(page, "embedding", ["scatter"])
    assert {s["type"] for s in charts["embedding.scatter"]["series"]} == {"scatter"}
    page.page.click("[data-testid=emb-dims] button[data-value='3']")
    page.until(
        "() => (window.__llmvis.charts()['embedding.scatter'] || {series: []}).series.some(s => s.type === 'scatter3D' && s.length > 0)",
        60,
        what="a 3D scatter",
    )
    page.page.wait_for_timeout(500)
    shot(page, "tab-embedding-3d")
    page.page.click("[data-testid=emb-dims] button[data-value='2']")
    page.until(
        "() => (window.__llmvis.charts()['embedding.scatter'] || {series: []}).series.every(s => s.type === 'scatter')",
        30,
        what="back to 2D",
    )
    # UMAP: the tab says it takes seconds (its compilation started when the tab first asked), then draws
    page.js(
        """() => { const n = document.querySelector('[data-testid=note-embedding]');
             window.__umapNote = false;
             new MutationObserver(() => { if (!n.hidden && /UMAP/.test(n.textContent)) window.__umapNote = true; })
               .observe(n, {attributes: true, childList: true, characterData: true, subtree: true}); }"""
    )
    page.page.select_option("[data-testid=emb-method]", "umap")
    page.until(
        "() => /UMAP/.test((window.__llmvis.charts()['embedding.scatter'] || {title: ''}).title || '')",
        120,
        what="a UMAP scatter",
    )
    assert page.js("() => window.__umapNote"), "the note that UMAP takes seconds was never shown"
    page.until("() => document.querySelector('[data-testid=note-embedding]').hidden", 10, what="the note gone")
    assert not [e for e in page.errors if "pageerror" in e], page.errors


def test_enter_sends_and_shift_enter_adds_a_line(page: Page):
    wait_model(page)
    box = page.page.locator("[data-testid=prompt]")
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second")
    assert box.input_value() == "first line\nsecond"
    assert page.js(RUN_STATUS) is None
    set_number(page, "max-tokens-box", "16")
    box.press("Enter")
    page.until(RUN_STATUS, 20, what="Enter to start a run")
    page.until("() => window.__llmvis.app.run.status !== 'streaming'", 60)
    # The prompt went into the conversation as a user turn; the box is empty for the next one.
    assert "second" in page.page.locator(".turn-user").first.text_content()
    assert box.input_value() == ""


def test_completion_mode_continues_the_prompt(page: Page):
    wait_model(page)
    page.page.click("[data-testid=mode] button[data-value=completion]")
    assert page.page.locator("[data-testid=system]").is_hidden()
    generate(page, "Once upon a time", max_tokens=16)
    assert page.js("() => window.__llmvis.app.run.request.mode") == "completion"
    prompt = page.page.locator(".turn-prompt").text_content()
    assert "Once upon a time" in prompt and "im_start" not in prompt  # no chat template
    assert page.js(GENERATED) > 0
    page.page.click("[data-testid=mode] button[data-value=chat]")  # mode is remembered: restore it


def test_stop_cancels_the_run(page: Page):
    wait_model(page)
    set_number(page, "max-tokens-box", "400")  # the tiny model has 512 positions
    # Greedy: this prompt never reaches EOS on the tiny model, so only Stop can end the run
    # early (a sampled run sometimes ends by itself after a few tokens).
    set_number(page, "temperature-box", "0")
    page.page.fill("[data-testid=prompt]", "Count: 1 2 3")
    # The tiny model is fast: press Stop from inside the page as soon as tokens show.
    page.js("""() => { const body = document.querySelector('[data-testid=conversation]');
        const obs = new MutationObserver(() => {
          if (body.querySelectorAll('.tok.generated').length > 0) {
            obs.disconnect(); document.querySelector('[data-testid=stop]').click(); } });
        obs.observe(body, {childList: true, subtree: true}); }""")
    page.page.click("[data-testid=generate]")
    page.until("() => window.__llmvis.app.run && window.__llmvis.app.run.status === 'cancelled'", 20, what="cancelled")
    n = page.js(GENERATED)
    assert 0 < n < 400
    # The server stopped generating too (the aborted request cancelled the run).
    page.until("() => fetch('/api/health').then(r => r.json()).then(h => !h.running)", 10, what="the server to stop")
    assert page.page.locator("[data-testid=generate]").is_enabled()


def test_language_switch_changes_labels(page: Page):
    wait_model(page)
    tab = page.page.locator("[data-testid=tab-attention]")
    assert tab.text_content() == "Attention"
    page.page.click("[data-testid=lang]")
    assert tab.text_content() == "注意力"
    assert page.page.locator("[data-testid=generate]").text_content() == "生成"
    page.page.reload()  # remembered
    assert page.page.locator("[data-testid=tab-attention]").text_content() == "注意力"
    page.page.click("[data-testid=lang]")
    assert page.page.locator("[data-testid=tab-attention]").text_content() == "Attention"


def test_default_language_follows_the_browser(browser, tiny_server: Server):
    p = Page(browser, tiny_server.base, locale="zh-CN")
    try:
        assert p.page.locator("[data-testid=tab-tokens]").text_content() == "候选"
    finally:
        p.close()


def test_long_run_stays_responsive(page: Page):
    """1,600 tokens: the conversation renders and re-colours without freezing the page."""
    wait_model(page)
    generate(page, "x", max_tokens=16)
    took = page.js(
        """() => {
            const run = window.__llmvis.app.run;
            const base = run.tokens[run.tokens.length - 1];
            const tokens = Array.from({length: 1600}, (_, i) => ({...base, position: i, kind: i < 100 ? 'prompt' : 'generated',
                 text: i % 40 === 39 ? '\\n' : ' w' + (i % 97),
                 stats: {...base.stats, rank: i % 5 === 0 ? 1 : 0, raw_entropy: (i % 50) / 10}}));
            const trace = {id: run.id, created: 0, title: '', request: run.request, params: run.params, model: run.model,
                           tokens, prompt_len: 100, finish_reason: 'length'};
            const t0 = performance.now();
            window.__llmvis.openTrace(trace);
            return new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - t0))));
        }"""
    )
    assert page.js(CHIPS) == 1600
    t_colour = page.js(
        """() => { const t0 = performance.now();
                   document.querySelector('[data-testid=color-mode] button[data-value=entropy]').click();
                   document.body.offsetHeight; return performance.now() - t0; }"""
    )
    t_sel = page.js(
        """() => { const t0 = performance.now(); for (let i = 0; i < 50; i++) window.__llmvis.select(1000 + i);
                   document.body.offsetHeight; return performance.now() - t0; }"""
    )
    # timings are printed, not asserted: they belong to the machine (bench/ holds the targets)
    print(f"1,600 tokens: render {took:.0f} ms, re-colour {t_colour:.0f} ms, 50 selections {t_sel:.0f} ms")
    assert page.page.locator(".tok.sel").get_attribute("data-p") == "1049"


def test_a_view_the_model_cannot_give_says_why_in_its_tab(browser, tmp_path):
    """Mamba generates, but has no attention or layers the internals read: the model panel and the
    tab say so (422 with the reason), and nothing breaks."""
    with tiny_model_page(browser, tmp_path, "mamba") as p:
        assert "not available here" in p.page.locator("[data-testid=model-internals]").text_content()
        generate(p, "Hello", max_tokens=4)
        p.page.locator(".tok.generated").first.click()
        p.page.click("[data-testid=tab-attention]")
        placeholder = p.page.locator("[data-tab=attention] .placeholder")
        placeholder.wait_for(timeout=30_000)
        assert "cannot give the Attention heatmap view" in placeholder.text_content()
        shot(p, "view-unavailable")


def test_a_mixture_of_experts_model_shows_its_routing_in_the_experts_tab(browser, tmp_path):
    """Qwen2-MoE (experts on every layer, a shared expert): the Experts tab appears and draws the
    router's probabilities, the experts' load, the selected token's routing and expert parts."""
    with tiny_model_page(browser, tmp_path, "qwen2_moe") as p:
        set_number(p, "temperature-box", "0")
        generate(p, "The capital of France is", max_tokens=12)
        p.page.locator(".tok.generated").nth(2).click()
        p.page.click("[data-testid=tab-experts]")
        charts = wait_charts(p, "experts", ["grid", "load", "token", "parts"])
        tokens = p.js("() => window.__llmvis.app.run.tokens.length")
        assert charts["experts.grid"]["series"][0]["length"] == tokens * 4  # every token × 4 experts
        assert p.page.locator("[data-testid=experts-layer] option").count() == 2  # both layers are MoE
        p.page.wait_for_timeout(300)
        shot(p, "experts", docs=True)


def test_a_hybrid_models_heads_tab_draws_its_attention_layers(browser, tmp_path):
    """Jamba (Mamba, then attention): the Heads tab opens on the attention layer, its entropy and
    health maps leave the Mamba layer out, and the attention row names it."""
    with tiny_model_page(browser, tmp_path, "jamba") as p:
        set_number(p, "temperature-box", "0")
        generate(p, "Once upon a time", max_tokens=10)
        p.page.locator(".tok.generated").nth(3).click()
        p.page.click("[data-testid=tab-heads]")
        wait_charts(p, "heads", ["grid", "entropy", "health"])
        assert p.page.locator("[data-testid=heads-layer] option").all_text_contents() == ["1"]
        p.page.click("[data-testid=tab-attention]")
        charts = wait_charts(p, "attention", ["matrix", "row"])
        selected = p.js("() => window.__llmvis.app.selected")
        assert charts["attention.row"]["series"][0]["length"] == 4 * (selected + 1)  # layer 1's 4 heads only
        shot(p, "hybrid-attention")


def test_bad_model_path_shows_its_error(page: Page):
    # Last in the module: a failed load may leave the server without a model.
    wait_model(page)
    page.page.fill("[data-testid=model-spec]", "/no/such/model/dir")
    page.page.click("[data-testid=load]")
    err = page.page.locator("[data-testid=errors] .error")
    err.first.wait_for(timeout=30_000)
    text = err.first.text_content()
    assert "Could not load the model" in text
    assert "/no/such/model/dir" in text or "not" in text.lower()
    status = page.page.locator("[data-testid=model-status]")
    assert "err" in status.get_attribute("class")
    shot(page, "error-bad-model")


@pytest.mark.integration
def test_bundled_model_every_view(browser, bundled_server: Server):
    """The real model end to end; its screenshots are the user guide's (docs/screenshots/)."""
    p = Page(browser, bundled_server.base)
    try:
        wait_model(p)
        assert "SmolLM2" in p.page.locator("[data-testid=model-info]").text_content()
        set_number(p, "temperature-box", "0.7")
        set_number(p, "seed-box", "7")
        generate(p, "Explain in two sentences why the sky is blue.", max_tokens=64)
        assert p.js(GENERATED) > 5
        # Pick the generated token with the highest entropy: the interesting one.
        pos = p.js(
            """() => { const r = window.__llmvis.app.run; let best = r.promptLen, e = -1;
                       for (let i = r.promptLen; i < r.tokens.length; i++) {
                         const s = r.tokens[i].stats; if (s && s.raw_entropy > e && !r.tokens[i].special) { e = s.raw_entropy; best = i; } }
                       return best; }"""
        )
        p.page.locator(f".tok[data-p='{pos}']").click()
        shot(p, "overview", docs=True)
        failed = draw_every_tab(p, timeout=180, shoot=lambda tab: shot(p, f"tab-{tab}", docs=True))
        p.page.click("[data-testid=color-mode] button[data-value=entropy]")
        p.page.click("[data-testid=tab-uncertainty]")
        p.page.wait_for_timeout(300)
        shot(p, "colour-entropy", docs=True)
        p.page.click("[data-testid=theme]")
        p.page.click("[data-testid=tab-tokens]")
        p.page.wait_for_timeout(400)
        shot(p, "light-theme", docs=True)
        p.page.click("[data-testid=theme]")
        # Fork at the selected token with the runner-up candidate; both continuations side by side.
        p.page.click("[data-testid=color-mode] button[data-value=default]")
        p.page.locator(f".tok[data-p='{pos}']").click()
        p.page.click("[data-testid=tab-tokens]")
        wait_charts(p, "tokens", ["top"])
        chosen = p.js(f"() => window.__llmvis.app.run.tokens[{pos}].id")
        top = p.js(f"() => window.__llmvis.app.run.tokens[{pos}].stats.top")
        click_candidate(p, next(i for i, c in enumerate(top) if c["id"] != chosen))
        p.page.click("[data-testid=fork]")
        p.page.locator("[data-testid=compare]").wait_for(timeout=120_000)
        p.page.wait_for_timeout(400)
        shot(p, "fork-compare", docs=True)
        p.page.keyboard.press("Escape")
        p.page.click("[data-testid=history-toggle]")
        p.page.locator("[data-testid=history-list] .run-row").nth(1).wait_for()
        shot(p, "history", docs=True)
        assert not failed, failed
        assert not [e for e in p.errors if "pageerror" in e or "Content Security Policy" in e], p.errors
    finally:
        p.close()


LONG_TEXT = (
    "The river bends twice before it reaches the old mill, where the water slows and turns green. "
    "In 1887 the mill burned down, and the village rebuilt it with stone from the quarry on the hill. "
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. "
    "She asked whether the train to Lyon would leave on time; nobody knew. "
    "Prime numbers: 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47. "
)


def test_a_long_run_draws_every_tab(browser, bundled_server: Server):
    """A run of 1,536+ prompt tokens and 128 new ones on the real model: every tab draws (how fast
    is bench/browser.py's business, not a test's), and the selected token's views follow the
    arrow keys."""
    p = Page(browser, bundled_server.base)
    try:
        wait_model(p)
        p.page.click("[data-testid=mode] button[data-value=completion]")
        set_number(p, "temperature-box", "0")
        generate(p, LONG_TEXT * 22, max_tokens=128)
        assert p.js("() => window.__llmvis.app.run.promptLen") >= 1536
        assert p.js(GENERATED) > 0
        p.page.locator("[data-testid=conversation] .tok.generated").first.click()
        failed = draw_every_tab(p, timeout=180)
        assert not failed, failed
        p.page.click("[data-testid=tab-attention]")
        before = p.js("() => window.__llmvis.app.selected")
        p.page.keyboard.press("ArrowRight")
        p.until("(b) => window.__llmvis.app.selected === b + 1", 10, arg=before, what="the selection to move right")
        wait_charts(p, "attention", TABS["attention"], timeout=180)
        assert not [e for e in p.errors if "pageerror" in e], p.errors
    finally:
        p.close()


# A CJK glyph has an advance of one em; a missing one is the fallback font's narrower .notdef box.
GLYPH_ADVANCES = """(chars) => { const g = document.createElement('canvas').getContext('2d');
    g.font = '40px ' + getComputedStyle(document.querySelector('[data-testid=conversation] .tok')).fontFamily;
    return chars.map((c) => g.measureText(c).width / 40); }"""


def test_a_chinese_prompt_is_drawn_in_a_cjk_font(browser, bundled_server: Server):
    """The 中文 UI and a Chinese prompt: real glyphs, not empty boxes (.ci/run installs a CJK font)."""
    p = Page(browser, bundled_server.base, locale="zh-CN")
    try:
        wait_model(p)
        p.page.click("[data-testid=mode] button[data-value=completion]")
        generate(p, "北京是中国的首都。上海是", max_tokens=12)
        assert "北京" in "".join(p.js("() => window.__llmvis.app.run.tokens.map((t) => t.text)"))
        advances = p.js(GLYPH_ADVANCES, ["北", "京", "首", "都"])
        assert all(abs(a - 1.0) < 0.02 for a in advances), f"CJK glyphs missing (advances {advances} em)"
        p.page.locator(".tok[data-p='2']").click()
        p.page.wait_for_timeout(300)
        shot(p, "chinese-prompt", docs=True)
    finally:
        p.close()


def test_lost_server_is_shown_and_the_input_kept(browser, tmp_path):
    """A server that goes away: a banner says so, and what the user typed stays in the box."""
    server = tiny_model_server(tmp_path, "llama")
    p = Page(browser, server.base)
    try:
        wait_model(p)
        p.page.fill("[data-testid=prompt]", "a prompt I do not want to lose")
        server.stop()
        p.page.locator("[data-testid=lost-server]").wait_for(timeout=20_000)
        assert "Lost the connection" in p.page.locator("[data-testid=lost-server]").text_content()
        p.page.press("[data-testid=prompt]", "Enter")
        err = p.page.locator("[data-testid=errors] .error")
        err.first.wait_for(timeout=10_000)
        assert "Generation failed" in err.first.text_content()
        assert p.page.locator("[data-testid=prompt]").input_value() == "a prompt I do not want to lose"
    finally:
        p.close()
        server.stop()
