/**
 * Run history: saved runs newest first, searchable; open, rename, delete (with undo), pick
 * two to compare, export. A drawer over the left panel, opened from the header.
 */
import { api, type RunRow } from "../api/client";
import { openTrace } from "../controller";
import { t } from "../i18n";
import { on, showError } from "../state";
import { onLangChange } from "../i18n";
import { compareRuns } from "./compareView";
import { clear, h } from "./dom";

export function historyDrawer(): { el: HTMLElement; toggle: () => void } {
  const search = h("input", { type: "search", class: "text", "data-testid": "history-search" });
  const list = h("div", { class: "list", "data-testid": "history-list" });
  const compareBtn = h("button", {
    type: "button",
    class: "btn small",
    disabled: true,
    "data-testid": "history-compare",
  });
  const toast = h("div", { class: "toast", hidden: true, "data-testid": "history-toast" });
  const picked: string[] = [];
  const el = h(
    "aside",
    { class: "drawer", hidden: true, "data-testid": "history" },
    h("div", { class: "row" }, search, compareBtn),
    toast,
    list,
  );
  let timer = 0;

  const load = async () => {
    try {
      const res = await api.runs(search.value.trim());
      render(res.runs);
    } catch (e) {
      clear(list);
      list.append(h("div", { class: "muted small err" }, (e as Error).message));
    }
  };

  const render = (runs: RunRow[]) => {
    clear(list);
    if (!runs.length) list.append(h("div", { class: "muted small placeholder" }, t("history.empty")));
    for (const r of runs) list.append(row(r));
    compareBtn.disabled = picked.length !== 2;
  };

  const row = (r: RunRow): HTMLElement => {
    const pick = h("input", {
      type: "checkbox",
      checked: picked.includes(r.id),
      title: t("history.compare"),
      "data-testid": "history-pick",
    });
    pick.addEventListener("change", () => {
      const i = picked.indexOf(r.id);
      if (pick.checked && i < 0) picked.push(r.id);
      if (!pick.checked && i >= 0) picked.splice(i, 1);
      while (picked.length > 2) picked.shift();
      list
        .querySelectorAll<HTMLInputElement>("[data-testid=history-pick]")
        .forEach((c) => (c.checked = picked.includes(c.closest<HTMLElement>(".run-row")!.dataset.id!)));
      compareBtn.disabled = picked.length !== 2;
    });
    const title = h("div", { class: "run-title", "data-testid": "history-title" }, r.title || r.prompt_preview || r.id);
    const when = new Date(r.created * 1000).toLocaleString();
    const forked = r.parent_id ? ` · ${t("fork.forked")} @${r.fork_position}` : "";
    const meta = h(
      "div",
      { class: "muted small" },
      `${when} · ${r.n_tokens - r.prompt_len} ${t("gen.tokens")} · ${r.model_name}${forked}`,
    );
    const preview = h("div", { class: "small run-preview" }, r.output_preview);
    const btn = (label: string, testid: string, fn: () => void) => {
      const b = h("button", { type: "button", class: "btn ghost small", "data-testid": testid }, label);
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        fn();
      });
      return b;
    };
    const item = h(
      "div",
      { class: "run-row", "data-id": r.id },
      h("div", { class: "row" }, pick, title),
      meta,
      preview,
      h(
        "div",
        { class: "row" },
        btn(t("history.open"), "history-open", () => void open(r.id)),
        btn(t("history.rename"), "history-rename", () => rename(r, title)),
        btn(t("history.delete"), "history-delete", () => void remove(r)),
        h(
          "a",
          { class: "btn ghost small", href: api.exportUrl(r.id, "json"), download: `llmvis-${r.id}.json` },
          "JSON",
        ),
        h("a", { class: "btn ghost small", href: api.exportUrl(r.id, "csv"), download: `llmvis-${r.id}.csv` }, "CSV"),
      ),
    );
    return item;
  };

  const open = async (id: string) => {
    try {
      openTrace(await api.run(id));
    } catch (e) {
      showError(t("history.open"), (e as Error).message);
    }
  };

  const rename = (r: RunRow, title: HTMLElement) => {
    const input = h("input", {
      type: "text",
      class: "text",
      value: r.title || r.prompt_preview,
      "data-testid": "history-rename-input",
    });
    title.replaceWith(input);
    input.focus();
    input.select();
    let done = false;
    const finish = async (save: boolean) => {
      if (done) return;
      done = true;
      if (save && input.value.trim()) {
        try {
          await api.rename(r.id, input.value.trim());
        } catch (e) {
          showError(t("history.rename"), (e as Error).message);
        }
      }
      void load();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") void finish(true);
      if (e.key === "Escape") void finish(false);
    });
    input.addEventListener("blur", () => void finish(true));
  };

  const remove = async (r: RunRow) => {
    try {
      await api.remove(r.id);
    } catch (e) {
      showError(t("history.delete"), (e as Error).message);
      return;
    }
    const undo = h("button", { type: "button", class: "btn small", "data-testid": "history-undo" }, t("history.undo"));
    undo.addEventListener("click", async () => {
      toast.hidden = true;
      try {
        await api.restore(r.id);
      } catch (e) {
        showError(t("history.undo"), (e as Error).message);
      }
      void load();
    });
    toast.replaceChildren(h("span", {}, `${t("history.deleted")}: ${r.title || r.prompt_preview}`), undo);
    toast.hidden = false;
    void load();
  };

  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = window.setTimeout(load, 200);
  });
  compareBtn.addEventListener("click", () => {
    if (picked.length === 2) void compareRuns(picked[0], picked[1]);
  });
  const relabel = () => {
    search.placeholder = t("history.search");
    compareBtn.textContent = t("history.compare");
  };
  relabel();
  onLangChange(relabel);
  on("status", () => {
    if (!el.hidden) void load();
  });
  return {
    el,
    toggle: () => {
      el.hidden = !el.hidden;
      if (!el.hidden) {
        toast.hidden = true;
        void load();
      }
    },
  };
}
