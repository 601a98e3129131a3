"""The web UI against `llmvis serve --backend openai`: runs go to llama.cpp's server on the bundled
GGUF, which returns only its top-N candidates, and the views that need weights ask for a local
copy until the page loads one. The token-level features (fork, compare, export, history) work on
those runs as on local ones.

The tests share one server and run in order: the run-level ones first, without local weights;
the last one loads the local copy.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import Page, Server
from test_ui import GENERATED, fork_to_candidate, generate, set_number, shot, wait_charts

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# A view that needs weights answers 409 until a local copy is loaded; Chromium logs each such
# response as "Failed to load resource: ... 409". Those are expected; anything else is not.
EXPECTED_409 = "status of 409"


@pytest.fixture
def rpage(browser, remote_server: Server, llama_engine) -> Iterator[Page]:
    p = Page(browser, remote_server.base)  # (llama_engine: the engine is running for each test)
    yield p
    p.close()


def wait_remote(p: Page) -> None:
    p.page.wait_for_selector("[data-testid=model-remote]", timeout=30_000)


def greedy_run(p: Page, max_tokens: int = 16) -> int:
    """A short greedy run (16 new tokens: the Max tokens slider's minimum); returns the position of
    its first generated token."""
    p.page.click("[data-testid=mode] button[data-value=completion]")
    set_number(p, "temperature-box", "0")
    generate(p, "The capital of France is", max_tokens=max_tokens)
    assert p.js(GENERATED) > 0
    assert p.js("() => window.__llmvis.app.run.model.source") == "remote"
    return p.js("() => window.__llmvis.app.run.promptLen")


def unexpected(errors: list[str]) -> list[str]:
    return [e for e in errors if EXPECTED_409 not in e]


def get_json(server: Server, path: str) -> dict:
    with urllib.request.urlopen(server.base + path, timeout=30) as r:
        return json.load(r)


def assert_remote_stats(stats: dict | None, where: str) -> None:
    """Statistics from the engine's top-N: the entropy bounds and the mass outside the candidates."""
    assert stats is not None, f"{where}: no stats"
    assert stats["missing_mass"] is not None and 0 <= stats["missing_mass"] <= 1, (where, stats)
    assert stats["entropy_upper"] is not None and stats["entropy_upper"] >= stats["raw_entropy"], (where, stats)


def assert_bounds_tooltip(p: Page, position: int, n: int) -> None:
    """Hovering the token shows its entropy as bounds and the mass outside the engine's top-n."""
    p.page.locator(f"[data-testid=conversation] .tok[data-p='{position}']").hover()
    tip = p.page.locator("[data-testid=token-tooltip]")
    tip.wait_for(state="visible")
    text = tip.text_content()
    assert "≥" in text and "nats (≤" in text, text
    assert f"outside top-{n}" in text, text


def test_remote_run_shows_entropy_bounds_and_the_engine(rpage: Page, llama_engine):
    p = rpage
    wait_remote(p)
    # The model panel: runs go to the engine; the load box is for a local copy, none yet.
    host = llama_engine.base_url.split("//")[1].split("/")[0]
    assert host in p.page.locator("[data-testid=model-remote]").text_content()
    name = p.page.locator("[data-testid=model-info] .model-name").text_content()
    assert "/" not in name and name.endswith(".gguf"), name  # llama.cpp names it by its file
    assert p.page.locator("[data-testid=load]").text_content() == "Load copy"
    assert p.page.locator("[data-testid=local-copy-hint]").is_visible()
    assert p.page.locator("[data-testid=model-status]").text_content() == "No local copy loaded"

    first = greedy_run(p)
    stats = p.js(f"() => window.__llmvis.app.run.tokens[{first}].stats")
    assert stats["entropy_upper"] is not None and stats["missing_mass"] is not None

    assert_bounds_tooltip(p, first, len(stats["top"]))
    shot(p, "remote-tooltip")

    # The Tokens tab shows the same numbers for the selected token.
    p.page.locator(f".tok[data-p='{first}']").click()
    p.page.click("[data-testid=tab-tokens]")
    wait_charts(p, "tokens", ["top"])
    facts = p.page.locator("[data-tab=tokens] .facts").text_content()
    assert "≥" in facts and "outside top-" in facts, facts
    p.page.mouse.move(5, 5)
    shot(p, "remote-tokens")
    assert not unexpected(p.errors), p.errors


def test_fork_a_remote_run_and_compare(rpage: Page, remote_server: Server):
    p = rpage
    wait_remote(p)
    greedy_run(p)
    parent_ids = p.js("() => window.__llmvis.app.run.tokens.map((t) => t.id)")
    fork = fork_to_candidate(p)
    pos, run = fork["pos"], fork["run"]

    # The forked run went to the engine too: the kept prefix, then the chosen candidate, then
    # what the engine generated from there, with the engine's top-N statistics.
    assert run["source"] == "remote"
    assert run["ids"][:pos] == parent_ids[:pos]
    assert run["ids"][pos] == fork["candidate"]["id"]
    child = get_json(remote_server, f"/api/runs/{fork['child']}")
    assert child["parent_id"] == fork["parent"] and child["fork_position"] == pos
    assert child["model"]["source"] == "remote"
    assert child["request"]["forced_tokens"] == [*parent_ids[child["prompt_len"] : pos], fork["candidate"]["id"]]
    assert [t["id"] for t in child["tokens"]] == run["ids"]
    # The kept tokens and the candidate went to the engine as prompt text, which it returns no
    # statistics for; the parent saw the same prefix, so they inherit the parent's: the kept ones
    # as they were, the candidate its share of the parent's candidates at the fork position.
    parent = get_json(remote_server, f"/api/runs/{fork['parent']}")
    for t in child["tokens"][child["prompt_len"] : pos]:
        assert t["stats"] == parent["tokens"][t["position"]]["stats"], t["position"]
    chosen = child["tokens"][pos]["stats"]
    assert_remote_stats(chosen, "the forced candidate")
    assert abs(chosen["raw_prob"] - fork["candidate"]["raw_prob"]) <= 1e-9
    assert chosen["rank"] >= 1
    engine_made = child["tokens"][pos + 1 :]
    assert engine_made and len(engine_made) <= child["params"]["max_new_tokens"]
    for t in engine_made:
        assert t["kind"] == "generated"
        assert_remote_stats(t["stats"], f"forked run, position {t['position']}")

    # The compare view: both continuations from the diverging point, the curves, the differences.
    a_first = p.page.locator("[data-testid=compare-a] .tok").first.get_attribute("data-p")
    b_first = p.page.locator("[data-testid=compare-b] .tok").first.get_attribute("data-p")
    assert a_first == b_first == str(pos)
    assert (
        p.page.locator(f"[data-testid=compare-b] .tok[data-p='{pos}']")
        .get_attribute("title")
        .endswith(fork["candidate"]["label"])
    )
    curves = p.js("() => window.__llmvis.charts()['compare.curves']")
    assert curves and curves["visible"] and len(curves["series"]) == 4, curves
    assert all(s["length"] > pos for s in curves["series"]), curves
    assert p.page.locator("[data-testid=compare-diffs] .list-item").count() > 0
    p.page.mouse.move(5, 5)
    p.page.wait_for_timeout(300)
    shot(p, "remote-fork-compare")
    assert not unexpected(p.errors), p.errors

    # Clicking a token of the original column opens the remote run there.
    p.page.locator("[data-testid=compare-a] .tok").nth(1).click()
    assert p.page.locator("[data-testid=compare]").count() == 0
    assert p.js("() => window.__llmvis.app.run.id") == fork["parent"]
    assert p.js("() => window.__llmvis.app.run.model.source") == "remote"
    assert p.js("() => window.__llmvis.app.selected") == pos + 1
    assert not unexpected(p.errors), p.errors


def test_export_a_remote_run(rpage: Page, remote_server: Server, tmp_path: Path):
    p = rpage
    wait_remote(p)
    first = greedy_run(p)
    run_id = p.js("() => window.__llmvis.app.run.id")
    n_tokens = p.js("() => window.__llmvis.app.run.tokens.length")

    # Through the Export menu, as a user downloads them.
    p.page.click("[data-testid=exports] summary")
    files = {}
    for kind in ("json", "csv"):
        link = p.page.locator(f"[data-testid=export-{kind}]")
        assert run_id in link.get_attribute("href")
        with p.page.expect_download() as info:
            link.click()
        path = tmp_path / f"run.{kind}"
        info.value.save_as(path)
        files[kind] = path.read_text("utf-8")

    bundle = json.loads(files["json"])
    assert bundle["format"] == "llmvis-run" and bundle["trace"]["id"] == run_id
    trace = bundle["trace"]
    assert trace["model"]["source"] == "remote" and len(trace["tokens"]) == n_tokens
    generated = trace["tokens"][trace["prompt_len"] :]
    assert generated and trace["prompt_len"] == first
    for t in generated:
        assert_remote_stats(t["stats"], f"export.json, position {t['position']}")
    # The same bundle as the API's.
    assert get_json(remote_server, f"/api/runs/{run_id}/export.json")["trace"] == trace

    rows = list(csv.DictReader(io.StringIO(files["csv"])))
    assert len(rows) == n_tokens
    assert "entropy_upper" in rows[0] and "missing_mass" in rows[0]
    for row, t in zip(rows, trace["tokens"], strict=True):
        assert int(row["position"]) == t["position"] and int(row["id"]) == t["id"] and row["kind"] == t["kind"]
        if t["kind"] == "generated":
            assert float(row["entropy_upper"]) == pytest.approx(t["stats"]["entropy_upper"]), row
            assert float(row["missing_mass"]) == pytest.approx(t["stats"]["missing_mass"]), row
            assert float(row["entropy_upper"]) >= float(row["raw_entropy"]), row
        else:  # engines return no statistics for prompt tokens
            assert row["entropy_upper"] == row["missing_mass"] == "", row
    assert not unexpected(p.errors), p.errors


def test_history_lists_remote_runs_after_a_reload(rpage: Page, remote_server: Server):
    p = rpage
    wait_remote(p)
    greedy_run(p)
    fork = fork_to_candidate(p)
    p.page.keyboard.press("Escape")

    p.page.reload()
    wait_remote(p)
    p.page.click("[data-testid=history-toggle]")
    rows = p.page.locator("[data-testid=history-list] .run-row")
    p.until(
        "(ids) => ids.every((id) => document.querySelector(`[data-testid=history-list] .run-row[data-id='${id}']`))",
        15,
        arg=[fork["parent"], fork["child"]],
        what="both runs in the history",
    )
    listed = [r.get_attribute("data-id") for r in rows.all()]
    assert listed.index(fork["child"]) < listed.index(fork["parent"])  # newest first
    child_row = p.page.locator(f"[data-testid=history-list] .run-row[data-id='{fork['child']}']")
    assert f"@{fork['pos']}" in child_row.text_content()  # marked as a fork

    # Compare the two from the history, as with local runs.
    parent_row = p.page.locator(f"[data-testid=history-list] .run-row[data-id='{fork['parent']}']")
    parent_row.locator("[data-testid=history-pick]").check()
    child_row.locator("[data-testid=history-pick]").check()
    p.page.click("[data-testid=history-compare]")
    p.page.locator("[data-testid=compare]").wait_for(timeout=10_000)
    curves = p.js("() => window.__llmvis.charts()['compare.curves']")
    assert curves and len(curves["series"]) == 4 and all(s["length"] > 0 for s in curves["series"]), curves
    assert p.page.locator("[data-testid=compare-b] .tok").first.get_attribute("data-p") == str(fork["pos"])
    p.page.keyboard.press("Escape")
    assert p.page.locator("[data-testid=compare]").count() == 0

    # Reopen the remote run: its tokens, and the entropy bounds in the tooltip.
    parent = get_json(remote_server, f"/api/runs/{fork['parent']}")
    parent_row.locator("[data-testid=history-open]").click()
    p.until("(id) => window.__llmvis.app.run && window.__llmvis.app.run.id === id", 10, arg=fork["parent"])
    p.page.click("[data-testid=history-toggle]")  # the drawer lies over the conversation
    assert p.js("() => window.__llmvis.app.run.model.source") == "remote"
    assert p.js("() => window.__llmvis.app.run.tokens.map((t) => t.id)") == [t["id"] for t in parent["tokens"]]
    assert p.js(GENERATED) == len(parent["tokens"]) - parent["prompt_len"]
    first = parent["prompt_len"]
    assert_bounds_tooltip(p, first, len(parent["tokens"][first]["stats"]["top"]))
    shot(p, "remote-history-reopened")
    assert not unexpected(p.errors), p.errors


def test_weight_views_ask_for_a_local_copy_then_compute(rpage: Page):
    p = rpage
    wait_remote(p)
    first = greedy_run(p)
    p.page.locator(f".tok[data-p='{first}']").click()

    # Without local weights the Attention tab says why, with a button to the load box.
    p.page.click("[data-testid=tab-attention]")
    status = p.page.locator("[data-testid=status-attention]")
    button = p.page.locator("[data-testid=load-for-attention]")
    button.wait_for(timeout=30_000)
    assert "local copy" in status.text_content() and "engine at" in status.text_content(), status.text_content()
    assert button.text_content() == "Load a local copy"
    shot(p, "remote-needs-copy")
    button.click()
    assert p.js("() => document.activeElement.dataset.testid") == "model-spec"
    # ... suggesting the local spec the server took the engine model's tokenizer from.
    assert p.page.input_value("[data-testid=model-spec]") == "smollm2"

    # Load the bundled model as the local copy: the run model stays the engine's, and the tab computes.
    p.page.fill("[data-testid=model-spec]", "smollm2")
    p.page.click("[data-testid=load]")
    model_status = p.page.locator("[data-testid=model-status]")
    p.until(
        "() => document.querySelector('[data-testid=model-status]').textContent.startsWith('Local copy:')",
        180,
        what="the local copy to load",
    )
    assert "SmolLM2" in model_status.text_content()
    assert p.js("() => window.__llmvis.app.model.source") == "remote"
    assert p.js("() => window.__llmvis.app.localModel.source") != "remote"
    assert p.page.locator("[data-testid=model-remote]").is_visible()
    charts = wait_charts(p, "attention", ["matrix", "row"], timeout=180)
    assert charts["attention.matrix"]["series"][0]["length"] > 0
    assert not button.is_visible()
    assert "err" not in (status.get_attribute("class") or "")
    p.page.wait_for_timeout(300)
    shot(p, "remote-attention")

    # A reload finds the local copy through GET /api/model.
    p.page.reload()
    wait_remote(p)
    p.until(
        "() => document.querySelector('[data-testid=model-status]').textContent.startsWith('Local copy:')",
        30,
        what="the local copy after a reload",
    )
    assert not unexpected(p.errors), p.errors
