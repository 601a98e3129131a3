/**
 * The foil and the watched tokens: the chips above the tabs that show and clear them, and the
 * Tokens tab's box that picks them (a clicked candidate, or typed text resolved to one token).
 */
import { t } from "../i18n";
import { app, type FocusToken, MAX_WATCHED, setFoil, toggleWatch } from "../state";
import { h } from "./dom";
import { typedText, watchTyped } from "./typedTokens";

/** 'Paris' as titles quote labels. */
const q = (label: string) => `'${label}'`;

/** The chips: "‘Paris’ vs ‘Lyon’ ×" and one "◦ ‘the’ ×" per watched token; hidden when none. */
export function focusBar(): { el: HTMLElement; render(): void } {
  const el = h("div", { class: "focus-bar", "data-testid": "focus-bar", hidden: true });
  const render = () => {
    const chips: HTMLElement[] = [];
    if (app.foil) {
      const sel = app.selected !== null ? app.run?.tokens[app.selected] : undefined;
      const target = sel ? sel.label : t("focus.target");
      const same = sel?.id === app.foil.id;
      chips.push(
        h(
          "span",
          {
            class: `chip foil${same ? " dim" : ""}`,
            "data-testid": "foil-chip",
            title: same ? t("focus.foil_is_target_short") : t("focus.foil_tip"),
          },
          h("span", { class: "mono" }, `${q(target)} vs ${q(app.foil.label)}`),
          h(
            "button",
            {
              type: "button",
              class: "chip-x",
              "data-testid": "foil-clear",
              title: t("focus.clear_foil"),
              "aria-label": t("focus.clear_foil"),
              onclick: () => setFoil(null),
            },
            "×",
          ),
        ),
      );
    }
    for (const w of app.watched)
      chips.push(
        h(
          "span",
          { class: "chip watch", "data-testid": "watch-chip", title: t("focus.watch_tip") },
          h("span", { class: "mono" }, `◦ ${q(w.label)}`),
          h(
            "button",
            {
              type: "button",
              class: "chip-x",
              title: t("focus.unwatch", { label: w.label }),
              "aria-label": t("focus.unwatch", { label: w.label }),
              onclick: () => toggleWatch(w),
            },
            "×",
          ),
        ),
      );
    el.replaceChildren(...chips);
    el.hidden = chips.length === 0 || app.offline;
  };
  return { el, render };
}

// Kept across re-renders of the Tokens tab.
const typed = typedText();

/**
 * The Tokens tab's row under the candidates: contrast with (or watch) the clicked candidate,
 * or a typed token. Empty in the offline report (no server, no views to explain).
 */
export function focusBox(pos: number, picked: number | null): HTMLElement {
  const run = app.run;
  const tok = run?.tokens[pos];
  if (!run || !tok || app.offline) return h("div");
  const cand = tok.stats?.top?.find((c) => c.id === picked);

  let candRow: HTMLElement;
  if (cand) {
    const isFoil = app.foil?.id === cand.id;
    const isWatched = app.watched.some((w) => w.id === cand.id);
    const self = cand.id === tok.id;
    const foilBtn = h(
      "button",
      {
        type: "button",
        class: `btn small${isFoil ? "" : " primary"}`,
        "data-testid": "set-foil",
        disabled: self,
        title: self ? t("focus.is_target") : t("focus.foil_tip"),
        onclick: () => setFoil(isFoil ? null : { id: cand.id, label: cand.label }),
      },
      isFoil ? t("focus.clear_foil") : t("focus.set_foil", { label: cand.label }),
    );
    const full = !isWatched && app.watched.length >= MAX_WATCHED;
    const watchBtn = h(
      "button",
      {
        type: "button",
        class: "btn small",
        "data-testid": "watch",
        disabled: full || (isFoil && !isWatched),
        title: full ? t("focus.full", { n: MAX_WATCHED }) : t("focus.watch_tip"),
        onclick: () => toggleWatch({ id: cand.id, label: cand.label }),
      },
      isWatched ? t("focus.unwatch", { label: cand.label }) : t("focus.watch", { label: cand.label }),
    );
    candRow = h("div", { class: "fork-row" }, foilBtn, watchBtn);
  } else candRow = h("div", { class: "fork-row muted" }, t("focus.hint"));

  // Typed text: one token becomes the foil; more than one is refused, with its pieces shown.
  const input = h("input", {
    type: "text",
    class: "text",
    maxlength: 80,
    spellcheck: false,
    "data-testid": "foil-text",
    placeholder: t("focus.type_placeholder"),
  });
  const preview = h("span", { class: "mono", "data-testid": "foil-typed-tokens" });
  const go = h("button", { type: "button", class: "btn small", "data-testid": "foil-typed" }, t("focus.typed_go"));
  const key = () => `${(app.model ?? run.model)?.path ?? ""}\n${typed.typed}`;
  const one = (): FocusToken | null => {
    const tokens = typedNow();
    return tokens.length === 1 ? { id: tokens[0].id, label: tokens[0].label } : null;
  };
  const show = (error = "") => {
    const tokens = typedNow();
    if (error) preview.replaceChildren(h("span", { class: "muted" }, error));
    else if (tokens.length > 1)
      preview.replaceChildren(
        h("span", { class: "muted", "data-testid": "foil-too-many" }, t("focus.many", { n: tokens.length })),
        ...tokens.map((p) => h("span", { class: "fork-piece", title: `id ${p.id}` }, `“${p.label}”`)),
      );
    else preview.replaceChildren(...tokens.map((p) => h("span", { class: "fork-piece" }, `“${p.label}” ${p.id}`)));
    const single = one();
    go.disabled = !single || single.id === tok.id;
  };
  const typedNow = watchTyped(input, typed, key, show);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !go.disabled) go.click();
  });
  go.addEventListener("click", () => {
    const single = one();
    if (single) setFoil(single);
  });
  show();

  return h(
    "div",
    { class: "fork-box", "data-testid": "focus-box" },
    candRow,
    h("div", { class: "fork-row" }, h("span", { class: "muted" }, t("focus.type")), input, preview, go),
  );
}
