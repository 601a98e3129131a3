"""Issue 6 in the browser: fork from a candidate, run history, comparison, offline report."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from e2e_helpers import ROOT, Page, Server
from test_ui import (
    fork_to_candidate,
    generate,
    open_fork_position,
    set_number,
    shot,
    wait_charts,
    wait_model,
)

pytestmark = pytest.mark.e2e

REPORT = ROOT / "src" / "llmvis" / "static" / "report.html"
PLACEHOLDER = '<script type="application/json" id="llmvis-data"></script>'


def fill_report(bundle_json: str) -> str:
    """What the server / CLI does with static/report.html: put the run bundle in its slot."""
    html = REPORT.read_text("utf-8")
    assert html.count(PLACEHOLDER) == 1
    data = bundle_json.replace("<", "\\u003c")
    return html.replace(PLACEHOLDER, f'<script type="application/json" id="llmvis-data">{data}</script>')


def test_fork_from_a_candidate_shows_both_continuations(page: Page):
    wait_model(page)
    set_number(page, "temperature-box", "0")
    generate(page, "The capital of France is", max_tokens=24)
    fork = fork_to_candidate(page, timeout_ms=60_000)
    parent_id, pos = fork["parent"], fork["pos"]
    assert fork["run"]["ids"][pos] == fork["candidate"]["id"]
    # Side by side from the diverging point: each column starts with that run's token there.
    a_first = page.page.locator("[data-testid=compare-a] .tok").first.get_attribute("data-p")
    b_first = page.page.locator("[data-testid=compare-b] .tok").first.get_attribute("data-p")
    assert a_first == b_first == str(pos)
    curves = page.js("() => window.__llmvis.charts()['compare.curves']")
    assert curves and all(s["length"] > pos for s in curves["series"]), curves
    assert page.page.locator("[data-testid=compare-diffs] .list-item").count() > 0
    page.page.wait_for_timeout(300)
    shot(page, "fork-compare")
    # Clicking a token of the original column opens that run there (to fork again from it).
    page.page.locator("[data-testid=compare-a] .tok").nth(1).click()
    assert page.page.locator("[data-testid=compare]").count() == 0
    assert page.js("() => window.__llmvis.app.run.id") == parent_id
    assert page.js("() => window.__llmvis.app.selected") == pos + 1


def test_fork_with_typed_text_and_new_params(page: Page, tiny_server: Server):
    wait_model(page)
    set_number(page, "temperature-box", "0")
    generate(page, "The capital of France is", max_tokens=24)
    parent = page.js("() => ({id: window.__llmvis.app.run.id, params: window.__llmvis.app.run.params})")
    pos, _, _ = open_fork_position(page)
    # Typed text: the box shows each of its tokens (label and id) before the user confirms.
    text = " Paris, France"
    with urllib.request.urlopen(f"{tiny_server.base}/api/tokenize?{urllib.parse.urlencode({'text': text})}") as r:
        typed = [t["id"] for t in json.load(r)["tokens"]]
    assert len(typed) > 1
    page.page.fill("[data-testid=fork-text]", text)
    pieces = page.page.locator("[data-testid=fork-typed-tokens] .fork-piece")
    page.until(
        f"() => document.querySelectorAll('[data-testid=fork-typed-tokens] .fork-piece').length === {len(typed)}"
    )
    assert [int(s.rsplit(" ", 1)[1]) for s in pieces.all_text_contents()] == typed
    fork_btn = page.page.locator("[data-testid=fork-typed]")
    assert fork_btn.is_enabled() and str(len(typed)) in fork_btn.text_content()
    # New params: change the left panel, then pick "the left panel's params" in the fork box.
    summary = page.page.locator("[data-testid=fork-params-summary]")
    assert f"Temperature {parent['params']['temperature']}" in summary.text_content()  # same params by default
    set_number(page, "temperature-box", "1.3")
    set_number(page, "max-tokens-box", "16")
    set_number(page, "seed-box", "7")
    page.page.select_option("[data-testid=fork-params]", "left")
    assert "Temperature 1.3" in summary.text_content()
    shot(page, "fork-typed")
    fork_btn.click()

    page.page.locator("[data-testid=compare]").wait_for(timeout=60_000)
    run = page.js(
        "() => ({id: window.__llmvis.app.run.id, parent: window.__llmvis.app.run.parentId, status: window.__llmvis.app.run.status})"
    )
    assert run["parent"] == parent["id"] and run["status"] == "done"
    ids = page.js("() => window.__llmvis.app.run.tokens.map((t) => t.id)")
    assert ids[pos : pos + len(typed)] == typed
    with urllib.request.urlopen(f"{tiny_server.base}/api/runs/{run['id']}") as r:
        child = json.load(r)
    assert [t["id"] for t in child["tokens"][pos : pos + len(typed)]] == typed
    assert child["fork_position"] == pos and child["parent_id"] == parent["id"]
    assert child["params"]["temperature"] == 1.3 and child["params"]["seed"] == 7
    assert child["params"]["max_new_tokens"] == 16
    assert len(child["tokens"]) <= pos + len(typed) + 16
    assert not page.errors, page.errors


def test_history_search_rename_delete_undo_compare(page: Page):
    wait_model(page)
    generate(page, "alpha beta gamma", max_tokens=16)
    generate(page, "delta epsilon", max_tokens=16)
    newest = page.js("() => window.__llmvis.app.run.id")
    page.page.click("[data-testid=history-toggle]")
    rows = page.page.locator("[data-testid=history-list] .run-row")
    rows.first.wait_for()
    assert rows.count() >= 2
    # Newest first (the list reloads when a run ends; the store may save it a moment later).
    for _ in range(30):
        if rows.first.get_attribute("data-id") == newest:
            break
        page.page.click("[data-testid=history-toggle]")
        page.page.click("[data-testid=history-toggle]")
        page.page.wait_for_timeout(200)
    assert rows.first.get_attribute("data-id") == newest

    page.page.fill("[data-testid=history-search]", "alpha beta")
    page.until(
        "() => { const r = document.querySelectorAll('[data-testid=history-list] .run-row');"
        " return r.length >= 1 && Array.from(r).every(e => e.textContent.includes('alpha')); }",
        10,
        what="search results",
    )
    page.page.fill("[data-testid=history-search]", "")
    page.until("() => document.querySelectorAll('[data-testid=history-list] .run-row').length >= 2", 10)

    # Rename the newest run.
    rows.first.locator("[data-testid=history-rename]").click()
    box = page.page.locator("[data-testid=history-rename-input]")
    box.fill("my renamed run")
    box.press("Enter")
    page.until(
        "() => document.querySelector('[data-testid=history-list] .run-row [data-testid=history-title]')"
        " .textContent === 'my renamed run'",
        10,
        what="the new title",
    )

    # Delete it, then undo.
    count = rows.count()
    rows.first.locator("[data-testid=history-delete]").click()
    page.until(f"() => document.querySelectorAll('[data-testid=history-list] .run-row').length === {count - 1}", 10)
    page.page.click("[data-testid=history-undo]")
    page.until(f"() => document.querySelectorAll('[data-testid=history-list] .run-row').length === {count}", 10)
    assert rows.first.get_attribute("data-id") == newest

    # Open the older run.
    older = rows.nth(1).get_attribute("data-id")
    rows.nth(1).locator("[data-testid=history-open]").click()
    page.until("(id) => window.__llmvis.app.run && window.__llmvis.app.run.id === id", 10, arg=older)
    shot(page, "history")

    # Compare the two.
    rows.nth(0).locator("[data-testid=history-pick]").check()
    rows.nth(1).locator("[data-testid=history-pick]").check()
    page.page.click("[data-testid=history-compare]")
    page.page.locator("[data-testid=compare]").wait_for(timeout=10_000)
    curves = page.js("() => window.__llmvis.charts()['compare.curves']")
    assert curves and len(curves["series"]) == 4 and all(s["length"] > 0 for s in curves["series"])
    page.page.keyboard.press("Escape")
    assert page.page.locator("[data-testid=compare]").count() == 0


def test_export_links_and_offline_report(page: Page, browser, tiny_server: Server, tmp_path: Path):
    wait_model(page)
    generate(page, "The capital of Italy is", max_tokens=20)
    run_id = page.js("() => window.__llmvis.app.run.id")
    n_tokens = page.js("() => window.__llmvis.app.run.tokens.length")
    # Open a view so that the bundle carries it.
    page.page.locator(".tok.generated").nth(2).click()
    page.page.click("[data-testid=tab-layers]")
    wait_charts(page, "layers", ["lens", "resid", "sim"])
    for kind in ("json", "csv", "html"):
        href = page.page.locator(f"[data-testid=export-{kind}]").get_attribute("href")  # in the Export menu
        assert run_id in href
    with urllib.request.urlopen(f"{tiny_server.base}/api/runs/{run_id}/export.json") as r:
        bundle = r.read().decode()
    assert json.loads(bundle)["views"], "the opened views are in the bundle"
    report = tmp_path / "report.html"
    report.write_text(fill_report(bundle), "utf-8")

    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    requests: list[str] = []
    ctx.route(
        "**/*",
        lambda route: (
            requests.append(route.request.url),
            route.abort() if not route.request.url.startswith("file:") else route.continue_(),
        ),
    )
    p = ctx.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    try:
        p.goto(report.as_uri())
        p.wait_for_selector("[data-testid=conversation] .tok")
        assert p.locator("[data-testid=conversation] .tok").count() == n_tokens
        assert [u for u in requests if not u.startswith("file:")] == []  # no network at all
        # Click a generated token: its top-N chart draws.
        p.locator(".tok.generated").nth(3).click()
        p.click("[data-testid=tab-tokens]")
        for _ in range(50):
            charts = p.evaluate("() => window.__llmvis.charts()")
            if charts.get("tokens.top", {}).get("visible"):
                break
            p.wait_for_timeout(100)
        sel = p.evaluate("() => window.__llmvis.app.selected")
        top = p.evaluate(f"() => window.__llmvis.app.run.tokens[{sel}].stats.top.length")
        assert charts["tokens.top"]["series"][0]["length"] == top
        # The saved views draw without a server.
        p.click("[data-testid=tab-saved]")
        for _ in range(50):
            saved = {
                k: v
                for k, v in p.evaluate("() => window.__llmvis.charts()").items()
                if k.startswith("saved.") and v["visible"]
            }
            if saved:
                break
            p.wait_for_timeout(100)
        assert saved and all(s["length"] > 0 for v in saved.values() for s in v["series"]), saved
        # Colour modes work offline.
        before = p.evaluate(
            "() => Array.from(document.querySelectorAll('.tok.generated')).map(e => e.style.background)"
        )
        p.click("[data-testid=color-mode] button[data-value=entropy]")
        after = p.evaluate("() => Array.from(document.querySelectorAll('.tok.generated')).map(e => e.style.background)")
        assert before != after and all(after)
        p.screenshot(path=str(ROOT / "test-artifacts" / "e2e" / "report-offline.png"))
        assert not errors, errors
    finally:
        ctx.close()
    assert n_tokens == len(json.loads(bundle)["trace"]["tokens"])
