"""Issue 18 in the browser: the What-if tab ablates a head (clicked in the head-effects map),
runs an activation-patching sweep with a progress bar (and cancels one), and forks the run
under a steering vector.

Each test drives the page as a user does on the tiny random model and checks what the page
holds against what the server gives for the same request (POST whatif / steering, the saved
views of export.json, the forked run's trace).
"""

from __future__ import annotations

import pytest
from e2e_helpers import Page
from test_ui import generate, set_number, shot, wait_charts, wait_model

pytestmark = pytest.mark.e2e

LAYERS, HEADS = 2, 4  # the tiny Llama of tests/tiny_models.py
RUN = "() => window.__llmvis.app.run"


def charts(p: Page, prefix: str) -> dict:
    return p.js(
        "(pre) => Object.fromEntries(Object.entries(window.__llmvis.charts()).filter(([k]) => k.startsWith(pre)))",
        prefix,
    )


def post(p: Page, path: str, body: dict) -> dict:
    """POST a JSON body from the page (same origin, as the app does); returns {status, body}."""
    return p.js(
        """([path, body]) => fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'},
             body: JSON.stringify(body)}).then(async (r) => ({status: r.status, body: await r.json()}))""",
        [path, body],
    )


def get(p: Page, path: str) -> dict:
    return p.js("(path) => fetch(path).then((r) => r.json())", path)


def saved_views(p: Page, run_id: str) -> list[str]:
    return [v["view"] for v in get(p, f"/api/runs/{run_id}/export.json")["views"]]


def open_run(p: Page, run_id: str) -> None:
    p.js("(id) => fetch('/api/runs/' + id).then((r) => r.json()).then((t) => window.__llmvis.openTrace(t))", run_id)
    p.until("(id) => window.__llmvis.app.run && window.__llmvis.app.run.id === id", 10, arg=run_id)


def open_pane(p: Page, pane: str) -> None:
    p.page.click("[data-testid=tab-whatif]")
    p.page.click(f"[data-testid=wi-pane] button[data-value={pane}]")


def after_prob(p: Page) -> float:
    return float(p.page.locator("[data-testid=wi-after-prob]").get_attribute("data-value"))


def two_runs_of_one_length(p: Page, max_tokens: int) -> tuple[str, str]:
    """Two greedy completions of different prompts with as many tokens each: (clean, corrupted)."""
    p.page.click("[data-testid=mode] button[data-value=completion]")
    set_number(p, "temperature-box", "0")
    generate(p, "The capital of France is", max_tokens=max_tokens)
    clean = p.js(RUN)
    for prompt in (
        "The capital of Spain is",
        "The capital of Italy is",
        "The city of France is",
        "A capital of France is",
    ):
        generate(p, prompt, max_tokens=max_tokens)
        other = p.js(RUN)
        if len(other["tokens"]) == len(clean["tokens"]):
            return clean["id"], other["id"]
    raise AssertionError("no prompt gave a run of the clean run's length")


def test_ablating_a_clicked_head_shows_what_the_server_computes(page: Page):
    wait_model(page)
    set_number(page, "temperature-box", "0")
    generate(page, "The capital of France is", max_tokens=16)
    run = page.js(RUN)
    n = len(run["tokens"])
    pos = run["promptLen"] + 2
    page.page.locator(f".tok[data-p='{pos}']").click()
    open_pane(page, "ablate")
    drawn = wait_charts(page, "whatif", ["heads"])
    assert drawn["whatif.heads"]["series"][0]["length"] == LAYERS * HEADS
    assert page.page.locator("[data-testid=wi-apply]").is_disabled()  # nothing to apply yet

    # Click head 2 of layer 1 in the map: a head-zero intervention, shown as a chip.
    layer, head = 1, 2
    page.page.locator("[data-chart='whatif.heads']").scroll_into_view_if_needed()
    x, y = page.js("(v) => window.__llmvis.chartPixel('whatif.heads', v)", [head, layer])
    page.page.mouse.click(x, y)
    chip = page.page.locator("[data-testid=wi-chip]")
    chip.wait_for()
    assert chip.count() == 1 and chip.text_content().startswith(f"zero L{layer} H{head}")

    # Apply: the numbers the server gives for the same request, and the curve over the run.
    page.page.click("[data-testid=wi-apply]")
    page.page.locator("[data-testid=wi-after-prob]").wait_for()
    body = {"interventions": [{"site": "head", "layer": layer, "head": head, "op": "zero"}], "position": pos}
    server = post(page, f"/api/runs/{run['id']}/whatif", {**body, "top_n": 10})
    assert server["status"] == 200, server
    assert after_prob(page) == server["body"]["after"]["prob"]
    assert float(page.page.locator("[data-testid=wi-before-prob]").get_attribute("data-value")) == pytest.approx(
        server["body"]["before"]["prob"]
    )
    assert page.page.locator("[data-testid=wi-after-rank]").text_content() == f"#{server['body']['after']['rank'] + 1}"
    drawn = wait_charts(page, "whatif", ["heads", "top", "curve"])
    assert [s["length"] for s in drawn["whatif.curve"]["series"]] == [n - 1, n - 1]  # Δprob and KL at 1..T−1
    assert drawn["whatif.top"]["series"][0]["length"] >= 10
    assert "whatif" in saved_views(page, run["id"])  # saved with the run, for the export and the report
    page.page.locator("[data-testid=wi-outcome]").scroll_into_view_if_needed()
    page.page.wait_for_timeout(300)
    shot(page, "whatif-ablate")

    # Click a point of the curve: its token is selected and the before/after follows it.
    target = pos + 3
    page.page.locator("[data-chart='whatif.curve']").scroll_into_view_if_needed()
    x, y = page.js("(i) => window.__llmvis.chartPixel('whatif.curve', [i, 0])", target - 1)
    page.page.mouse.click(x, y)
    page.until("(p) => window.__llmvis.app.selected === p", 10, arg=target, what="the clicked position selected")
    there = post(page, f"/api/runs/{run['id']}/whatif", {**body, "position": target, "top_n": 10})["body"]
    page.until(
        "(v) => Number(document.querySelector('[data-testid=wi-after-prob]').dataset.value) === v",
        30,
        arg=there["after"]["prob"],
        what="the after-probability at the clicked position",
    )

    # Light theme: the same charts redrawn.
    page.page.click("[data-testid=theme]")
    wait_charts(page, "whatif", ["heads", "top", "curve"])
    page.page.wait_for_timeout(300)
    shot(page, "whatif-ablate-light")
    page.page.click("[data-testid=theme]")

    # A 422 (a knockout of keys beyond the run) is said in the tab; the chip can be removed.
    page.page.select_option("[data-testid=wi-site]", "attention_edges")
    page.page.fill("[data-testid=wi-keys]", f"0-{n + 5}")
    page.page.click("[data-testid=wi-add]")
    assert page.page.locator("[data-testid=wi-chip]").count() == 2
    page.page.click("[data-testid=wi-apply]")
    msg = page.page.locator("[data-testid=wi-ablate-msg]")
    page.until("() => !document.querySelector('[data-testid=wi-ablate-msg]').hidden", 30, what="the error message")
    assert "keys must be within the run" in msg.text_content(), msg.text_content()
    page.page.locator("[data-testid=wi-chip-remove]").nth(1).click()
    assert page.page.locator("[data-testid=wi-chip]").count() == 1
    assert not [e for e in page.errors if "pageerror" in e], page.errors


def test_a_sweep_streams_progress_draws_its_maps_and_a_cancelled_one_saves_nothing(page: Page):
    wait_model(page)
    clean, corrupted = two_runs_of_one_length(page, 16)
    open_run(page, clean)
    n = len(page.js(RUN)["tokens"])
    open_pane(page, "sweep")
    # only runs of the same length (and model) are offered, the open run excluded
    page.until(
        "(id) => [...document.querySelectorAll('[data-testid=wi-corrupted] option')].some((o) => o.value === id)",
        10,
        arg=corrupted,
        what="the corrupted run in the list",
    )
    offered = page.js("() => [...document.querySelectorAll('[data-testid=wi-corrupted] option')].map((o) => o.value)")
    assert clean not in offered
    page.page.select_option("[data-testid=wi-corrupted]", corrupted)
    # record whether the progress bar was ever shown (the tiny model's sweep is quick)
    page.js("""() => { window.__bar = []; const el = document.querySelector('[data-testid=wi-sweep-progress]');
        new MutationObserver(() => window.__bar.push([el.hidden, el.textContent])).observe(el,
          {attributes: true, childList: true, subtree: true, characterData: true}); }""")
    page.page.click("[data-testid=wi-sweep-start]")
    drawn = wait_charts(page, "whatif", ["sweep-residual", "sweep-attn_out", "sweep-mlp_out", "sweep-heads"], 120)
    seen = page.js("() => window.__bar")
    assert any(not hidden and "/" in text for hidden, text in seen), seen  # "done / total" with the bar up
    assert page.page.locator("[data-testid=wi-sweep-progress]").is_hidden()
    assert not page.page.locator("[data-testid=wi-sweep-start]").is_disabled()
    # the saved result: the maps the charts draw, every layer
    saved = [v for v in get(page, f"/api/runs/{clean}/export.json")["views"] if v["view"] == "sweep"]
    assert len(saved) == 1
    maps = {m["site"]: m for m in saved[0]["result"]["maps"]}
    read = saved[0]["result"]["position"]
    assert read == n - 1
    for site in ("residual", "attn_out", "mlp_out"):
        assert maps[site]["rows"] == list(range(LAYERS))
        assert drawn[f"whatif.sweep-{site}"]["series"][0]["length"] == LAYERS * read  # positions 0..read−1
    assert maps["heads"]["rows"] == list(range(LAYERS))
    assert drawn["whatif.sweep-heads"]["series"][0]["length"] == LAYERS * HEADS
    summary = page.page.locator("[data-testid=wi-sweep-summary]").text_content()
    assert f"at {read}" in summary and saved[0]["result"]["target_label"] in summary
    page.page.locator("[data-chart='whatif.sweep-residual']").scroll_into_view_if_needed()
    page.page.wait_for_timeout(300)
    shot(page, "whatif-sweep")
    page.page.click("[data-testid=theme]")
    wait_charts(page, "whatif", ["sweep-residual", "sweep-heads"])
    page.page.wait_for_timeout(300)
    shot(page, "whatif-sweep-light")
    page.page.click("[data-testid=theme]")

    # "both": fast mode says how far it is from exact.
    page.page.click("[data-testid=wi-sweep-mode] button[data-value=both]")
    page.page.click("[data-testid=wi-sweep-start]")
    page.page.locator("[data-testid=wi-sweep-error]").first.wait_for(timeout=120_000)
    assert "fast vs exact: max |error|" in page.page.locator("[data-testid=wi-sweep-error]").first.text_content()
    page.page.click("[data-testid=wi-sweep-show] button[data-value=fast]")
    page.until(
        "() => (window.__llmvis.charts()['whatif.sweep-residual'] || {title: ''}).title.includes('fast')",
        10,
        what="the fast estimate drawn",
    )
    assert saved_views(page, clean).count("sweep") == 2

    # Cancel a long sweep: the page goes back to idle and the server saves nothing.
    set_number(page, "temperature-box", "0")
    long_clean, long_corrupted = two_runs_of_one_length(page, 400)
    open_run(page, long_clean)
    open_pane(page, "sweep")
    page.page.click("[data-testid=wi-sweep-mode] button[data-value=exact]")
    page.until(
        "(id) => [...document.querySelectorAll('[data-testid=wi-corrupted] option')].some((o) => o.value === id)",
        10,
        arg=long_corrupted,
    )
    page.page.select_option("[data-testid=wi-corrupted]", long_corrupted)
    page.page.click("[data-testid=wi-sweep-start]")
    page.until(
        "() => /^[1-9]\\d* \\/ /.test(document.querySelector('[data-testid=wi-sweep-count]')?.textContent || '')",
        60,
        what="the first batches done",
    )
    page.page.click("[data-testid=wi-sweep-cancel]")
    page.until("() => document.querySelector('[data-testid=wi-sweep-progress]').hidden", 5, what="idle again")
    assert "nothing was saved" in page.page.locator("[data-testid=wi-sweep-msg]").text_content()
    assert not page.page.locator("[data-testid=wi-sweep-start]").is_disabled()
    assert not charts(page, "whatif.sweep-")  # no result drawn
    # the sweep holds the model until it stops: a what-if answered means it stopped (or finished)
    assert post(page, f"/api/runs/{long_clean}/whatif", {"interventions": [], "top_n": 1})["status"] == 200
    assert "sweep" not in saved_views(page, long_clean)

    # An SSE `error` (two identical runs: nothing to restore) is said in the tab.
    generate(page, "The capital of France is", max_tokens=16)
    twin = page.js(RUN)["id"]
    open_run(page, clean)
    open_pane(page, "sweep")
    page.until(
        "(id) => [...document.querySelectorAll('[data-testid=wi-corrupted] option')].some((o) => o.value === id)",
        10,
        arg=twin,
    )
    page.page.select_option("[data-testid=wi-corrupted]", twin)
    page.page.click("[data-testid=wi-sweep-start]")
    page.until("() => !document.querySelector('[data-testid=wi-sweep-msg]').hidden", 60, what="the sweep's error")
    assert "nothing to restore" in page.page.locator("[data-testid=wi-sweep-msg]").text_content()
    assert not [e for e in page.errors if "pageerror" in e], page.errors


def test_a_fork_under_a_steering_vector_is_saved_with_it(page: Page):
    wait_model(page)
    set_number(page, "temperature-box", "0")
    generate(page, "Once upon a time", max_tokens=12)
    parent = page.js(RUN)
    open_pane(page, "steer")
    page.page.fill("[data-testid=wi-steer-pos]", "I love this, it is wonderful and happy")
    page.page.fill("[data-testid=wi-steer-neg]", "I hate this, it is awful and sad")
    page.page.select_option("[data-testid=wi-steer-layer]", "1")
    set_number(page, "wi-steer-coef", "8")
    page.page.click("[data-testid=wi-steer-go]")
    page.page.locator("[data-testid=wi-steer-norm]").wait_for()
    body = {
        "layer": 1,
        "positive": "I love this, it is wonderful and happy",
        "negative": "I hate this, it is awful and sad",
    }
    vec = post(page, "/api/steering", body)
    assert vec["status"] == 200, vec
    width = len(vec["body"]["vector"])
    assert page.page.input_value("[data-testid=wi-steer-pos]") == body["positive"]  # still shown after the answer
    assert page.page.locator("[data-testid=wi-steer-width]").text_content() == str(width)
    assert page.page.locator("[data-testid=wi-steer-pos-n]").text_content() == str(vec["body"]["positive_tokens"])
    norm = float(page.page.locator("[data-testid=wi-steer-norm]").text_content())
    assert norm == pytest.approx(vec["body"]["norm"], rel=1e-3)
    page.page.click("[data-testid=wi-steer-add]")
    chip = page.page.locator("[data-testid=wi-chip]")
    chip.wait_for()
    assert chip.text_content().startswith("add 8·v L1 resid")

    # Continue from the start of the reply under it: a new run, streamed, then compared.
    page.page.select_option("[data-testid=wi-fork-from]", "reply")
    page.page.click("[data-testid=wi-continue]")
    page.page.locator("[data-testid=compare]").wait_for(timeout=120_000)
    child = page.js(RUN)
    assert child["id"] != parent["id"] and child["parentId"] == parent["id"] and child["status"] == "done"
    assert child["forkPosition"] == parent["promptLen"]
    trace = get(page, f"/api/runs/{child['id']}")
    plan = trace["request"]["interventions"]
    assert len(plan) == 1
    assert {k: plan[0][k] for k in ("site", "layer", "op", "factor")} == {
        "site": "residual",
        "layer": 1,
        "op": "add",
        "factor": 8.0,
    }
    assert plan[0]["vector"] == pytest.approx(vec["body"]["vector"])
    assert trace["parent_id"] == parent["id"]
    listed = [r["id"] for r in get(page, "/api/runs?limit=50")["runs"]]
    assert child["id"] in listed  # in the history
    shot(page, "whatif-steer-fork")

    # A side can be a saved run instead of a text: the parent run (all its tokens) as the negative.
    page.page.keyboard.press("Escape")  # close the compare view
    page.page.locator("[data-testid=compare]").wait_for(state="hidden")
    open_pane(page, "steer")
    page.page.select_option("[data-testid=wi-steer-neg-source]", parent["id"])
    assert page.page.locator("[data-testid=wi-steer-neg]").is_hidden()
    page.page.click("[data-testid=wi-steer-go]")
    expected = post(page, "/api/steering", {**body, "negative": None, "negative_run": parent["id"]})
    assert expected["status"] == 200, expected
    page.until(
        "(n) => document.querySelector('[data-testid=wi-steer-neg-n]')?.textContent === String(n)",
        30,
        arg=expected["body"]["negative_tokens"],
    )
    assert expected["body"]["negative_tokens"] == len(parent["tokens"])
    norm = float(page.page.locator("[data-testid=wi-steer-norm]").text_content())
    assert norm == pytest.approx(expected["body"]["norm"], rel=1e-3)
    shot(page, "whatif-steer-from-run")
    assert not [e for e in page.errors if "pageerror" in e], page.errors
