/**
 * Middle panel: the conversation as token chips.
 *
 * Fast at thousands of tokens: streamed tokens are appended in one batch per animation
 * frame; hover and click use one delegated listener and one shared tooltip; changing the
 * colour mode restyles chips without rebuilding them; selection touches two chips.
 */
import { api } from "../api/client";
import type { Token } from "../api/types";
import { fmt, pct } from "../charts/common";
import { chipColor, COLOR_MODES, type ColorMode, legendGradient } from "../colors";
import { onLangChange, t } from "../i18n";
import { entropyText, missingMass, rankText } from "../remote";
import { app, emit, on, select } from "../state";
import { clear, h, segmented } from "./dom";

/** What a chip shows: whitespace made visible where it would vanish, specials by label. */
export function chipText(tok: Token): string {
  if (tok.text === "") return tok.label;
  return tok.text.replace(/\n/g, "↵").replace(/\t/g, "⇥");
}

/** A token that was not the top choice: the one chip colour of the default mode, for its legend. */
const OFF_TOP1: Token = {
  position: 0,
  id: 0,
  text: "",
  label: "",
  kind: "generated",
  special: false,
  stats: { raw_prob: 0, rank: 1, raw_entropy: 0, logit_gap: 0, gap_to_top1: 0 },
};

function turnName(role: string | null | undefined, kind: string): string {
  return role ?? (kind === "generated" ? "assistant" : t("conv.prompt"));
}

export function conversation(): HTMLElement {
  const modeBox = segmented(
    COLOR_MODES.map((m) => [m, ""]),
    app.colorMode,
    (v) => {
      app.colorMode = v as ColorMode;
      emit("colorMode");
    },
    "color-mode",
  );
  const legend = h("div", { class: "legend", "data-testid": "legend" });
  const stats = h("div", { class: "run-stats muted small", "data-testid": "run-stats" });
  const exportList = h("div", { class: "menu" });
  const exports = h(
    "details",
    { class: "exports", "data-testid": "exports" },
    h("summary", { class: "btn ghost small" }, "⤓"),
    exportList,
  );
  const body = h("div", { class: "conv-body", tabindex: 0, "data-testid": "conversation" });
  const tip = h("div", { class: "tok-tip", role: "tooltip", hidden: true, "data-testid": "token-tooltip" });
  const el = h(
    "main",
    { class: "middle" },
    h(
      "div",
      { class: "conv-head" },
      h("span", { class: "muted small", "data-i18n": "color.title" }),
      modeBox,
      legend,
      stats,
      exports,
    ),
    body,
    tip,
  );

  let chips: HTMLSpanElement[] = [];
  let rendered = 0;
  let turnEl: HTMLElement | null = null;
  let turnRole: string | null = null;
  let scheduled = false;
  const dark = () => app.theme === "dark";

  const empty = () => {
    clear(body);
    body.append(h("div", { class: "empty", "data-i18n": "conv.empty" }, t("conv.empty")));
  };

  const reset = () => {
    clear(body);
    chips = [];
    rendered = 0;
    turnEl = null;
    turnRole = null;
    if (!app.run) empty();
    flush();
  };

  /** Append the tokens that arrived since the last frame. */
  const flush = () => {
    scheduled = false;
    const run = app.run;
    if (!run) return;
    const stick = body.scrollHeight - body.scrollTop - body.clientHeight < 40;
    const frag = document.createDocumentFragment();
    const chat = run.request.mode !== "completion";
    const d = dark();
    for (; rendered < run.tokens.length; rendered++) {
      const tok = run.tokens[rendered];
      const role = chat ? turnName(tok.role, tok.kind) : tok.kind === "generated" ? "generated" : "prompt";
      if (!turnEl || (role !== turnRole && (tok.role || chat === false || tok.kind === "generated"))) {
        turnRole = role;
        turnEl = h(
          "div",
          { class: `turn turn-${role}` },
          h("div", { class: "turn-role" }, chat ? role : role === "prompt" ? t("conv.prompt") : "→"),
        );
        frag.append(turnEl);
      }
      const chip = h(
        "span",
        { class: `tok ${tok.kind}${tok.special || tok.text === "" ? " special" : ""}`, "data-p": tok.position },
        chipText(tok),
      );
      const bg = chipColor(tok, app.colorMode, d);
      if (bg) chip.style.background = bg;
      if (tok.position === app.selected) chip.classList.add("sel");
      chips[rendered] = chip;
      turnEl.append(chip);
      const nl = (tok.text.match(/\n/g) ?? []).length;
      for (let i = 0; i < Math.min(nl, 2); i++) turnEl.append(h("br"));
    }
    if (frag.childNodes.length) body.append(frag);
    if (stick || run.status === "streaming") body.scrollTop = body.scrollHeight;
    showStats();
  };

  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(flush);
    }
  };

  const recolor = () => {
    const run = app.run;
    const d = dark();
    if (run) for (let i = 0; i < rendered; i++) chips[i].style.background = chipColor(run.tokens[i], app.colorMode, d);
    showLegend();
  };

  const showLegend = () => {
    clear(legend);
    if (app.colorMode === "default") {
      legend.append(
        h("span", {
          class: "swatch",
          style: `background:${chipColor(OFF_TOP1, "default", dark())}`,
        }),
        h("span", {}, t("legend.default.off")),
      );
    } else {
      const key =
        app.colorMode === "entropy"
          ? "legend.entropy"
          : app.colorMode === "probability"
            ? "legend.probability"
            : "legend.gap";
      legend.append(
        h("span", { class: "gradient", style: `background:${legendGradient(dark())}` }),
        h("span", {}, t(key)),
      );
    }
  };

  const showStats = () => {
    const run = app.run;
    if (!run) {
      stats.textContent = "";
      return;
    }
    const n = run.tokens.length - run.promptLen;
    const parts = [`${n} ${t("gen.tokens")}`];
    const tps = run.done?.timings.tokens_per_s;
    if (tps) parts.push(`${fmt(tps, 3)} ${t("gen.tok_s")}`);
    parts.push(
      run.status === "streaming"
        ? t("gen.generating")
        : run.status === "cancelled"
          ? t("gen.cancelled")
          : run.done
            ? `${t("gen.done")} (${run.done.finish_reason})`
            : "",
    );
    stats.textContent = parts.filter(Boolean).join(" · ");
    showExports();
  };

  const showExports = () => {
    const run = app.run;
    const id = run?.id;
    exports.hidden = !id || run.status === "streaming" || app.offline;
    if (!id || exports.hidden) return;
    const link = (kind: "json" | "csv" | "html", label: string) =>
      h(
        "a",
        {
          class: "btn ghost small",
          href: api.exportUrl(id, kind),
          download: `llmvis-${id}.${kind}`,
          "data-testid": `export-${kind}`,
        },
        label,
      );
    exports.querySelector("summary")!.textContent = `⤓ ${t("export.title")}`;
    exportList.replaceChildren(
      link("json", t("export.json")),
      link("csv", t("export.csv")),
      link("html", t("export.html")),
    );
  };

  let lastSel: number | null = null;
  const showSelection = () => {
    if (lastSel !== null) chips[lastSel]?.classList.remove("sel");
    lastSel = app.selected;
    if (lastSel === null) return;
    const chip = chips[lastSel];
    if (chip) {
      chip.classList.add("sel");
      chip.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  };

  // --- pointer and keyboard ----------------------------------------------------------------
  body.addEventListener("click", (e) => {
    const chip = (e.target as HTMLElement).closest<HTMLElement>(".tok");
    if (chip) {
      select(Number(chip.dataset.p));
      body.focus({ preventScroll: true });
    }
  });
  body.addEventListener("mouseover", (e) => {
    const chip = (e.target as HTMLElement).closest<HTMLElement>(".tok");
    const tok = chip && app.run?.tokens[Number(chip.dataset.p)];
    if (!chip || !tok) return;
    showTip(tok, chip);
  });
  body.addEventListener("mouseleave", () => (tip.hidden = true));
  body.addEventListener("mouseout", (e) => {
    if (!(e.relatedTarget as HTMLElement | null)?.closest?.(".tok")) tip.hidden = true;
  });

  const showTip = (tok: Token, chip: HTMLElement) => {
    clear(tip);
    const s = tok.stats;
    const rows: [string, string][] = [
      [t("tip.position"), String(tok.position)],
      [t("tip.id"), String(tok.id)],
    ];
    if (s) {
      rows.push([t("tip.raw_prob"), `${pct(s.raw_prob)}`]);
      if (s.sampled_prob !== null && s.sampled_prob !== undefined)
        rows.push([t("tip.sampled_prob"), pct(s.sampled_prob)]);
      rows.push([t("tip.rank"), rankText(s)], [t("tip.entropy"), entropyText(s)]);
      const missing = missingMass(s);
      if (missing) rows.push([t("tip.missing", { n: missing.n }), missing.text]);
      rows.push([t("tip.gap"), fmt(s.logit_gap)]);
      if (s.rank > 0 && s.top?.length) rows.push(["top-1", s.top[0].label]);
    }
    tip.append(
      h("div", { class: "tip-label" }, tok.label),
      ...rows.map(([k, v]) => h("div", { class: "tip-row" }, h("span", { class: "muted" }, k), h("span", {}, v))),
    );
    if (tok.kind === "prompt") tip.append(h("div", { class: "muted small" }, t("tip.prompt")));
    tip.hidden = false;
    const r = chip.getBoundingClientRect();
    const host = el.getBoundingClientRect();
    const w = tip.offsetWidth;
    tip.style.left = `${Math.max(4, Math.min(r.left - host.left, host.width - w - 4))}px`;
    const below = r.bottom - host.top + 6;
    tip.style.top = `${below + tip.offsetHeight > host.height ? r.top - host.top - tip.offsetHeight - 6 : below}px`;
  };

  document.addEventListener("keydown", (e) => {
    const target = e.target as HTMLElement;
    if (target.closest("input, textarea, select, [contenteditable]")) return;
    if (!app.run || (e.key !== "ArrowLeft" && e.key !== "ArrowRight" && e.key !== "Home" && e.key !== "End")) return;
    const n = app.run.tokens.length;
    const cur = app.selected ?? (e.key === "ArrowLeft" ? n : -1);
    const next = e.key === "Home" ? 0 : e.key === "End" ? n - 1 : cur + (e.key === "ArrowLeft" ? -1 : 1);
    if (next >= 0 && next < n) {
      e.preventDefault();
      select(next);
    }
  });

  on("run", reset);
  on("tokens", schedule);
  on("status", () => {
    schedule();
    showStats();
  });
  on("select", showSelection);
  on("colorMode", recolor);
  on("stats", () => {
    recolor();
    showSelection();
  });
  on("theme", recolor);
  const relabel = () => {
    const names: Record<ColorMode, string> = {
      default: t("color.default"),
      entropy: t("color.entropy"),
      probability: t("color.probability"),
      gap: t("color.gap"),
    };
    modeBox.querySelectorAll("button").forEach((b) => (b.textContent = names[b.dataset.value as ColorMode]));
    showLegend();
    showStats();
    if (!app.run) empty();
  };
  onLangChange(relabel);
  relabel();
  reset();
  return el;
}
