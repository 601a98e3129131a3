"""The web app as a user meets it on long runs: a real `llmvis serve`, headless Chromium, real input.

For each prompt length T (default 512 1536 4096; 8192 allowed) on the bundled model, CPU:
- plain: in-process `model.generate(ids, max_new_tokens=1)` greedy on the same prompt, the time
  to its first token (median of 2 after a warm-up), measured before the server starts so that
  nothing competes for the cores; the model is freed after;
- the run: a fresh page in Completion mode, temperature 0 (greedy), max new tokens = --new (the
  app has no ignore-EOS option: a greedy continuation of the repeated English prompt usually
  runs the full length; the table says how many tokens came and why the run ended). Timed from
  the Enter that starts it: the first streamed generated chip, Done (the run's status left
  `streaming` and the Generate button is enabled again), and the longest gap between two
  animation frames in between (a requestAnimationFrame loop in the page);
- the tabs, the moment the run is done: a click on the middle generated chip, then each
  visible tab in order (experts is hidden on this dense model), click to chart: until every
  chart of the tab (the names tests/e2e/test_ui.py's TABS lists, else all the tab's charts) has
  been drawn since the click, with non-empty series, on a visible element. The tab open while
  streaming (the first) is timed from the chip click instead: the click is what draws it. Then
  re-open: another (already drawn) tab, then the tab again, until its charts are on screen
  (tabs keep their charts: a re-open shows them without a redraw unless the tab's inputs
  changed; the table marks a re-open that redrew). Then the arrow keys: with the tab open on the
  middle chip, ArrowRight three times, each timed until the tab's charts are redrawn for the new
  token; median and max. A tab that draws nothing within 3 s of the key with no request in
  flight says "no redraw" (or "partial" when only some of its charts redrew). A second table
  splits the first open and the arrow key: the page's part, from its last answer from the
  server (the progress polls aside) to the chart on screen.

How "drawn" is seen: web/src/views/chartHost.ts stamps a page-wide draw counter on a chart's
element (`data-drawn`) each time its option is set. A waiter in the page, run every animation
frame, compares the counters with their maximum when the click or key reached the page (a
capture listener on `window` records that moment); once every chart of the tab is fresh and
visible, the time is the start of the next frame (the frame showing it, with the resizes a
shown tab does, has been made), and then the series are checked through
`window.__llmvis.charts()` as the browser tests do (not timed; empty series: it waits on). A
tab whose status line shows an error (`[data-testid=status-<tab>]`, class `err`) gives
"error: ..." instead of a time; every wait has a timeout and gives "timeout"; a first open that
draws nothing and waits on nothing for 10 s gives "n/a: <what the tab says>". Busy = a `fetch`
of the page in flight or the tab's status showing "computing". Done is seen the same way, every
frame: the run's status (`window.__llmvis.app.run.status`) and the Generate button.

First opens are in the order a user clicks them: a later tab can reuse what an earlier one
made the server compute (the capture of the run's internals, for one). Timings are printed,
never asserted. The server's peak RSS (VmHWM) is printed after each T.

--repeat N does all of it N times, each round with a fresh server (a repeat on the same server
would find the same run's summaries kept), and ends with the range of every figure over the
rounds: on a shared 2-core machine one round cannot tell a 20% change from the noise.

    .venv/bin/python bench/browser.py [--lengths 512 1536 4096] [--new 128] [--tabs tokens attention ...]
        [--repeat N] [--keep-server-log PATH] [--tab-timeout 120] [--run-timeout S]

The server runs with --log-views: --keep-server-log keeps what each view and summary cost.

--new is at most 512 (the app's max-tokens box). The web app must be built (`cd web && npm run
build`) with the draw counter; the bench stops with that hint if it is not.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "bench", ROOT / "tests", ROOT / "tests" / "e2e"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}
STATIC = ROOT / "src" / "llmvis" / "static"
ARROWS = 3
ARROW_IDLE_S = 3.0  # a key that starts nothing for this long did not redraw the tab
OPEN_IDLE_S = 10.0  # an open that draws nothing and waits on nothing for this long: not available

# In the page: the moment of the user's click/key, a tab's chart waiter, and the run watcher.
BENCH_JS = """() => {
  if (window.__bench) return;
  const B = (window.__bench = { trigger: null, armed: false, base: 0, inflight: 0 });
  const now = () => performance.now();
  const mark = (e) => { if (B.armed && B.trigger === null) { B.trigger = now(); B.armed = false; } };
  window.addEventListener('click', mark, true);
  window.addEventListener('keydown', mark, true);
  const origFetch = window.fetch.bind(window);
  // the end of the last answer the page waited on (not the progress polls): what follows it
  // until the chart is on screen is the page's own time
  B.lastAnswer = null;
  window.fetch = (...args) => {
    B.inflight++;
    const poll = String(args[0]).includes('/progress');
    return origFetch(...args).finally(() => { B.inflight--; if (!poll) B.lastAnswer = now(); });
  };
  const drawn = (e) => Number((e && e.dataset.drawn) || 0);
  B.maxDrawn = () => Math.max(0, ...[...document.querySelectorAll('[data-chart]')].map(drawn));
  B.arm = () => { B.trigger = null; B.armed = true; B.armedAt = now(); B.base = B.maxDrawn(); };
  B.counterBuilt = () => [...document.querySelectorAll('[data-chart]')].every((e) => e.dataset.drawn);

  // Until every chart `names` of `tab` (all its charts when none named) is on screen with data,
  // drawn after the trigger when `redraw`. Resolves {t} (ms from the trigger) or {error},
  // {timeout}, {idle} (nothing busy and nothing drawn for idleMs: {drawn: names redrawn}).
  B.waitTab = ({ tab, names, redraw, timeoutMs, idleMs }) => new Promise((resolve) => {
    let frames = 0, lastChange = null, lastMax = B.base, firstFrame = null;
    const step = () => {
      const t = now();
      if (B.trigger === null) {
        if (t - B.armedAt > 10000) return resolve({ timeout: true, why: 'the click/key never reached the page' });
        return requestAnimationFrame(step);
      }
      frames++;
      const since = t - B.trigger;
      if (firstFrame === null) firstFrame = since;
      if (lastChange === null) lastChange = B.trigger;
      const panel = document.querySelector(`.tab-panel[data-tab="${tab}"]`);
      const status = document.querySelector(`[data-testid="status-${tab}"]`);
      const text = status && !status.hidden ? (status.textContent || '').trim() : '';
      // after two frames: the refresh the trigger caused has cleared an older error by then
      if (frames > 2 && text && status.classList.contains('err')) return resolve({ error: text, t: since });
      const els = !panel ? [] : names.length
        ? names.map((n) => panel.querySelector(`[data-chart="${tab}.${n}"]`))
        : [...panel.querySelectorAll('[data-chart]')];
      const present = els.filter(Boolean);
      const fresh = present.filter((e) => drawn(e) > B.base);
      const max = Math.max(B.base, ...present.map(drawn));
      if (max > lastMax || B.inflight > 0 || (text && !status.classList.contains('err'))) {
        lastMax = Math.max(lastMax, max);
        lastChange = t;
      }
      const ready = panel && !panel.hidden && els.length > 0 && present.length === els.length
        && (!redraw || fresh.length === els.length) && els.every((e) => e.offsetParent !== null);
      // The time: the start of the next frame, once the frame that shows it (resizes included)
      // is made; the series are checked after it, so that reading them is not timed.
      if (ready) return requestAnimationFrame(() => {
        const end = now() - B.trigger;
        const sum = window.__llmvis.charts();
        const full = els.every((e) => {
          const s = sum[e.dataset.chart];
          return s && s.visible && s.series.length > 0 && s.series.every((x) => x.length > 0);
        });
        const answered = B.lastAnswer !== null && B.lastAnswer > B.trigger ? B.lastAnswer - B.trigger : null;
        if (full) resolve({ t: end, ready: since, first: firstFrame, redrawn: fresh.length > 0,
                            page: answered === null ? null : end - answered });
        else requestAnimationFrame(step);
      });
      if (since > timeoutMs) return resolve({ timeout: true, t: since });
      if (idleMs && t - lastChange > idleMs) {
        const ph = panel && panel.querySelector('.placeholder');
        return resolve({ idle: true, t: since, drawn: fresh.map((e) => e.dataset.chart),
                         placeholder: ph ? ph.textContent : '' });
      }
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  });

  // From the trigger (Enter) until the new run is done: first generated chip, Done, frame gaps.
  B.watchRun = ({ before, timeoutMs }) => new Promise((resolve) => {
    const conv = document.querySelector('[data-testid=conversation]');
    const gen = document.querySelector('[data-testid=generate]');
    const isNew = () => { const r = window.__llmvis.app.run; return !!r && r.id !== before; };
    let firstChip = null, last = null, maxGap = 0, long = 0, frames = 0;
    const obs = new MutationObserver(() => {
      if (firstChip === null && B.trigger !== null && isNew() && conv.querySelector('.tok.generated')) firstChip = now();
    });
    obs.observe(conv, { childList: true, subtree: true });
    const step = () => {
      const t = now();
      if (B.trigger !== null) {
        if (last !== null) { const gap = t - Math.max(last, B.trigger); maxGap = Math.max(maxGap, gap); if (gap > 50) long++; }
        last = t;
        frames++;
        if (firstChip === null && isNew() && conv.querySelector('.tok.generated')) firstChip = t;
        const r = window.__llmvis.app.run;
        const finished = isNew() && r.status !== 'streaming' && !gen.disabled;
        if (finished || t - B.trigger > timeoutMs) {
          obs.disconnect();
          const errs = [...document.querySelectorAll('[data-testid=errors] .error')].map((e) => e.textContent);
          return resolve({
            timeout: !finished, firstChip: firstChip === null ? null : firstChip - B.trigger, done: t - B.trigger,
            maxGap, long, frames, status: r ? r.status : null,
            generated: r ? r.tokens.length - r.promptLen : 0, promptLen: r ? r.promptLen : 0,
            finish: r && r.done ? r.done.finish_reason : null, errors: errs,
          });
        }
      } else if (t - B.armedAt > 10000) {
        obs.disconnect();
        return resolve({ timeout: true, why: 'the Enter never reached the page' });
      }
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  });
}"""


# --- plain transformers: time to the first token ----------------------------------------------


def load() -> str:
    """The machine's load average: the figures are only as quiet as the machine was."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def first_token(model, enc, pad: int) -> float:
    t0 = time.perf_counter()
    model.generate(**enc, max_new_tokens=1, min_new_tokens=1, do_sample=False, pad_token_id=pad)
    return time.perf_counter() - t0


def plain_first_token(lengths: list[int], repeats: int = 2) -> tuple[dict[int, float], dict[int, str]]:
    """Per T: median seconds of greedy `generate(max_new_tokens=1)`; and the prompts (shared)."""
    import torch

    from generation import prompt_of
    from llmvis.models import load_model

    loaded = load_model("smollm2")
    model, tok = loaded.model, loaded.tokenizer
    print(f"plain generate: torch threads {torch.get_num_threads()}; {load()}", flush=True)
    times: dict[int, float] = {}
    prompts: dict[int, str] = {}
    for n in lengths:
        prompts[n] = prompt_of(tok, n)
        enc = tok(prompts[n], return_tensors="pt")

        pad = tok.eos_token_id or 0
        first_token(model, enc, pad)  # warm-up
        times[n] = statistics.median(first_token(model, enc, pad) for _ in range(repeats))
        print(f"  T={n} ({enc.input_ids.shape[1]} tokens): first token {times[n]:.3f} s", flush=True)
    del model, tok, loaded
    gc.collect()
    return times, prompts


# --- the server ----------------------------------------------------------------------------------


def start_server(data_dir: Path, log: Path, timeout: float = 600):
    """`llmvis serve` on the bundled model, threads not limited (both cores, as a user's)."""
    from e2e_helpers import Server

    return Server(None, data_dir, log, timeout, extra_args=["--log-views"], one_thread=False)


def peak_rss_mb(server) -> str:
    """Peak (VmHWM) and current resident memory of the server process."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines())
        hwm = int(fields["VmHWM"].split()[0]) / 1024
        rss = int(fields["VmRSS"].split()[0]) / 1024
        return f"peak {hwm:.0f} MB, now {rss:.0f} MB"
    except (OSError, KeyError, ValueError):
        return "n/a"


# --- the page ------------------------------------------------------------------------------------


def expected_charts() -> dict[str, list[str]]:
    try:
        from test_ui import TABS

        return dict(TABS)
    except Exception:  # the tests moved: wait for all of each tab's charts
        return {}


def cell(r: dict[str, Any] | None, redraw_note: bool = False) -> str:
    """One result as the table shows it."""
    if r is None:
        return "-"
    if "error" in r:
        return "error: " + " ".join(r["error"].split())[:60]
    if r.get("timeout"):
        return "timeout"
    if r.get("idle"):
        if r.get("drawn"):
            return "partial"
        return f"n/a: {r['placeholder'][:40]}" if r.get("placeholder") else "no redraw"
    s = f"{r['t'] / 1000:.3f}"
    return s + (" redrew" if redraw_note and r.get("redrawn") else "")


class Bench:
    def __init__(self, page, tab_timeout_s: float) -> None:
        self.page = page
        self.tab_ms = tab_timeout_s * 1000

    def js(self, expr: str, arg: Any = None) -> Any:
        return self.page.evaluate(expr, arg)

    def arm(self) -> None:
        self.js("() => window.__bench.arm()")

    def wait_tab(self, tab: str, names: list[str], redraw: bool, idle_s: float | None) -> dict[str, Any]:
        spec = {"tab": tab, "names": names, "redraw": redraw, "timeoutMs": self.tab_ms}
        spec["idleMs"] = idle_s * 1000 if idle_s else 0
        return self.js("(spec) => window.__bench.waitTab(spec)", spec)

    def click(self, selector: str) -> None:
        self.page.locator(selector).click(timeout=self.tab_ms)

    def timed_click(self, selector: str, tab: str, names: list[str], redraw: bool = True, idle_s: float = OPEN_IDLE_S):
        self.arm()
        self.click(selector)
        return self.wait_tab(tab, names, redraw, idle_s)

    def settle(self, tab: str, names: list[str]) -> dict[str, Any]:
        """After the trigger armed before: until the tab has redrawn, or nothing happens for 1 s."""
        return self.wait_tab(tab, names, redraw=True, idle_s=1.0)


def set_number(page, testid: str, value: str) -> None:
    box = page.locator(f"[data-testid={testid}]")
    box.fill(value)
    box.dispatch_event("change")


def bench_length(browser, base: str, n: int, prompt: str, args, charts: dict[str, list[str]], out: dict[str, Any]):
    """One T in a fresh page; fills `out` as it goes (what was measured survives an exception)."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    out.update({"errors": errors, "tabs": {}})
    try:
        page.goto(base + "/")
        page.wait_for_selector("[data-testid=model-info] .model-name", timeout=60_000)
        b = Bench(page, args.tab_timeout)
        b.js(BENCH_JS)
        visible = [
            t.removeprefix("tab-")
            for t in page.eval_on_selector_all(
                "[data-testid=tabs] button", "(bs) => bs.filter((b) => !b.hidden).map((b) => b.dataset.testid)"
            )
        ]
        tabs = [t for t in (args.tabs or visible) if t in visible]
        out["skipped"] = [t for t in (args.tabs or []) if t not in visible]
        out["tab_order"] = tabs
        if not tabs:
            return
        page.click("[data-testid=mode] button[data-value=completion]")
        page.click(f"[data-testid=tab-{tabs[0]}]")  # the tab open while streaming
        set_number(page, "max-tokens-box", str(args.new))
        set_number(page, "temperature-box", "0")
        set_number(page, "seed-box", "11")
        page.fill("[data-testid=prompt]", prompt)
        before = b.js("() => window.__llmvis.app.run && window.__llmvis.app.run.id")
        run_ms = (args.run_timeout or 120 + n * 0.05 + args.new * 2) * 1000
        b.arm()
        # the watcher starts before the key, so that no frame is missed
        b.js(
            "(spec) => { window.__bench.running = window.__bench.watchRun(spec); }",
            {"before": before, "timeoutMs": run_ms},
        )
        page.press("[data-testid=prompt]", "Enter")
        out["run"] = run = b.js("() => window.__bench.running")
        if run.get("timeout") or run.get("status") not in ("done", "cancelled"):
            return

        # --- first open, the moment the run is done
        gen = page.locator("[data-testid=conversation] .tok.generated")
        count = gen.count()
        if count == 0:
            return
        mid = gen.nth(count // 2)
        names = {t: charts.get(t, []) for t in tabs}
        b.arm()
        mid.click()
        out["tabs"][tabs[0]] = {"first": b.wait_tab(tabs[0], names[tabs[0]], True, OPEN_IDLE_S)}
        for tab in tabs[1:]:
            out["tabs"][tab] = {"first": b.timed_click(f"[data-testid=tab-{tab}]", tab, names[tab])}
        # --- re-open: another tab (drawn, the selection unchanged), then this one
        if len(tabs) > 1:
            for i, tab in enumerate(tabs):
                other = tabs[i - 1]
                b.arm()
                b.click(f"[data-testid=tab-{other}]")
                b.wait_tab(other, names[other], False, 1.0)
                out["tabs"][tab]["reopen"] = b.timed_click(f"[data-testid=tab-{tab}]", tab, names[tab], redraw=False)
        # --- arrow keys, from the middle chip
        for tab in tabs:
            b.arm()
            b.click(f"[data-testid=tab-{tab}]")
            b.settle(tab, names[tab])
            b.arm()
            mid.click()
            b.settle(tab, names[tab])
            arrows = out["tabs"][tab]["arrows"] = []
            for _ in range(ARROWS):
                b.arm()
                page.keyboard.press("ArrowRight")
                arrows.append(b.wait_tab(tab, names[tab], True, ARROW_IDLE_S))
        out["counter_built"] = b.js("() => window.__bench.counterBuilt()")
    finally:
        context.close()


def timed(r: dict[str, Any]) -> bool:
    return "t" in r and not (r.get("timeout") or r.get("idle") or "error" in r)


def page_cell(r: dict[str, Any]) -> str:
    return f"{r['page'] / 1000:.3f}" if timed(r) and r.get("page") is not None else "-"


def arrow_cells(arrows: list[dict[str, Any]] | None) -> tuple[str, str]:
    """Median and max of the timed keys; the others said as `cell` says them."""
    if not arrows:
        return "-", "-"
    times = [a["t"] / 1000 for a in arrows if timed(a)]
    others = [cell(a) for a in arrows if not timed(a)]
    if not times:
        return others[0], others[0]
    note = f" ({len(others)}/{len(arrows)} {others[0]})" if others else ""
    return f"{statistics.median(times):.3f}{note}", f"{max(times):.3f}"


def report(n: int, plain: float | None, res: dict[str, Any], rss: str, new: int) -> None:
    run = res.get("run") or {}
    print(f"\n== T = {n} prompt tokens (the page's run: {run.get('promptLen', '?')}), --new {new} ==")

    def secs(ms: float | None) -> str:
        return "timeout" if ms is None else f"{ms / 1000:.3f}"

    chip = run.get("firstChip")
    rows = [
        ("time to first generated chip (s)", secs(chip)),
        ("plain generate, time to first token (s)", f"{plain:.3f}" if plain else "-"),
        ("ratio chip / plain", f"{chip / 1000 / plain:.2f}x" if chip is not None and plain else "-"),
        ("time to Done (s)", "timeout" if run.get("timeout") else secs(run.get("done"))),
        ("generated tokens", f"{run.get('generated', '-')} (finish: {run.get('finish')}, status: {run.get('status')})"),
        (
            "longest frame gap while streaming (s)",
            f"{run['maxGap'] / 1000:.3f} ({run['long']} of {run['frames']} frames > 50 ms)" if "maxGap" in run else "-",
        ),
        ("server memory", rss),
        ("machine", load()),
    ]
    for label, value in rows:
        print(f"  {label:42} {value}")
    for e in run.get("errors") or []:
        print(f"  run error: {' '.join(e.split())[:200]}")
    if run.get("why"):
        print(f"  run: {run['why']}")
    if res.get("exception"):
        print(f"  bench stopped at this T: {res['exception']}")
    tabs = res.get("tabs") or {}
    if tabs:
        order = res.get("tab_order", list(tabs))
        first_note = f" ({order[0]}: from the chip click)" if order else ""
        print(
            f"\n  {'tab':12} {'first open (s)':>16} {'re-open (s)':>16} {'arrow median (s)':>22} {'arrow max (s)':>14}"
        )
        for tab in order:
            r = tabs.get(tab, {})
            med, mx = arrow_cells(r.get("arrows"))
            print(
                f"  {tab:12} {cell(r.get('first')):>16} {cell(r.get('reopen'), redraw_note=True):>16} {med:>22} {mx:>14}"
            )
        print(f"  first open: click to chart{first_note}; re-open: 'redrew' = the tab drew again")
        print(f"\n  {'tab':12} {'first: page (s)':>16} {'arrow: page (s)':>22}")
        for tab in order:
            r = tabs.get(tab, {})
            first = r.get("first") or {}
            pages = [a["page"] / 1000 for a in r.get("arrows") or [] if timed(a) and a.get("page") is not None]
            print(f"  {tab:12} {page_cell(first):>16} {f'{statistics.median(pages):.3f}' if pages else '-':>22}")
        print("  page: from the page's last answer from the server to the chart on screen (the rest is the server's)")
    if res.get("skipped"):
        print(f"  not shown on this model: {', '.join(res['skipped'])}")
    if res.get("counter_built") is False:
        print("  WARNING: charts without data-drawn: rebuild the web app (cd web && npm run build)")
    for e in res.get("errors") or []:
        print(f"  page: {e[:200]}")


def spread(values: list[float]) -> str:
    """min–max (median) of the rounds' figures, or the one figure."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{min(values):.2f}–{max(values):.2f} ({statistics.median(values):.2f})"


def summary(n: int, plain: float | None, rounds: list[dict[str, Any]]) -> None:
    """One T's figures over the rounds: the range and median of each."""
    print(f"\n== T = {n}: {len(rounds)} rounds, min–max (median), seconds ==")
    runs = [r.get("run") or {} for r in rounds]

    def of_runs(key: str) -> list[float]:
        return [run[key] / 1000 for run in runs if run.get(key) is not None and not run.get("timeout")]

    ratios = [c / plain for c in of_runs("firstChip")] if plain else []
    print(f"  {'first chip / plain first token':42} {spread(ratios)}")
    print(f"  {'time to Done':42} {spread(of_runs('done'))}")
    print(f"  {'longest frame gap while streaming':42} {spread(of_runs('maxGap'))}")
    order = next((r["tab_order"] for r in rounds if r.get("tab_order")), [])
    print(f"\n  {'tab':12} {'first open':>24} {'re-open':>24} {'arrow median':>24}")
    for tab in order:
        results = [(r.get("tabs") or {}).get(tab, {}) for r in rounds]
        first = [x["first"]["t"] / 1000 for x in results if x.get("first") and timed(x["first"])]
        again = [x["reopen"]["t"] / 1000 for x in results if x.get("reopen") and timed(x["reopen"])]
        arrows = [
            statistics.median(times)
            for x in results
            if (times := [a["t"] / 1000 for a in x.get("arrows") or [] if timed(a)])
        ]
        untimed = sum(1 for x in results if not (x.get("first") and timed(x["first"])))
        note = f" [{untimed} untimed]" if untimed else ""
        print(f"  {tab:12} {spread(first) + note:>24} {spread(again):>24} {spread(arrows):>24}")


def check_built() -> None:
    bundles = list((STATIC / "assets").glob("*.js")) if (STATIC / "assets").is_dir() else []
    if not (STATIC / "index.html").exists() or not any("dataset.drawn" in p.read_text() for p in bundles):
        raise SystemExit(f"the web app in {STATIC} is missing or lacks the draw counter: cd web && npm run build")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 1536, 4096])
    ap.add_argument("--new", type=int, default=128, help="max new tokens (16..512, the app's range)")
    ap.add_argument("--tabs", nargs="+", default=None, help="tabs to time, in order (default: every visible one)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds, each with a fresh server (ranges at the end)")
    ap.add_argument("--keep-server-log", type=Path, default=None, metavar="PATH")
    ap.add_argument("--tab-timeout", type=float, default=120.0, help="seconds per tab wait")
    ap.add_argument("--run-timeout", type=float, default=None, help="seconds for the run (default grows with T)")
    args = ap.parse_args()
    if not 16 <= args.new <= 512:
        ap.error("--new must be within 16..512 (the app's max-tokens range)")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing")
    check_built()

    from playwright.sync_api import sync_playwright

    plain, prompts = plain_first_token(args.lengths)
    charts = expected_charts()
    rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in args.lengths}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            for i in range(args.repeat):
                if args.repeat > 1:
                    print(f"\n##### round {i + 1} of {args.repeat}", flush=True)
                log_to = args.keep_server_log
                if log_to and args.repeat > 1:
                    log_to = log_to.with_name(f"{log_to.stem}.{i + 1}{log_to.suffix}")
                bench_round(browser, args, plain, prompts, charts, rounds, log_to)
        finally:
            browser.close()
    if args.repeat > 1:
        for n in args.lengths:
            summary(n, plain.get(n), rounds[n])


def bench_round(browser, args, plain, prompts, charts, rounds, log_to: Path | None) -> None:
    """Every T in turn against one fresh server; each T's results appended to `rounds[T]`."""
    tmp = Path(tempfile.mkdtemp(prefix="llmvis-bench-browser-"))
    log = tmp / "serve.log"
    server = None
    try:
        t0 = time.perf_counter()
        server = start_server(tmp / "data", log)
        print(f"server ready in {time.perf_counter() - t0:.1f} s at {server.base}; {peak_rss_mb(server)}", flush=True)
        for n in args.lengths:
            print(f"\nT={n}: running in the browser ...", flush=True)
            res: dict[str, Any] = {}
            try:
                bench_length(browser, server.base, n, prompts[n], args, charts, res)
            except Exception as exc:  # report what was measured, go on with the next length
                res["exception"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
            report(n, plain.get(n), res, peak_rss_mb(server), args.new)
            rounds[n].append(res)
    finally:
        if server is not None:
            server.stop()
        if log_to and log.exists():
            log_to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, log_to)
            print(f"\nserver log: {log_to}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
