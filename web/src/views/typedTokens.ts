/** Text typed into a box, tokenized by the server as the user types (debounced, the previous
 * request aborted). The state lives with the caller, so a re-rendered box keeps its text and
 * the tokens already fetched for it. */
import { api } from "../api/client";
import type { TokenPiece } from "../api/types";

export interface TypedText {
  typed: string;
  result: { key: string; tokens: TokenPiece[] } | null; // the server's tokens of `typed`, for `key`
  pending: AbortController | null;
}

export const typedText = (): TypedText => ({ typed: "", result: null, pending: null });

/** Watch `input`: `key()` names what the tokens depend on (the model and the text); `show(error?)`
 * redraws. Returns the tokens of the current text (empty until the server answers). */
export function watchTyped(
  input: HTMLInputElement,
  state: TypedText,
  key: () => string,
  show: (error?: string) => void,
): () => TokenPiece[] {
  const tokens = () => (state.typed && state.result?.key === key() ? state.result.tokens : []);
  const lookup = () => {
    state.pending?.abort();
    if (!state.typed || state.result?.key === key()) return;
    const ctrl = (state.pending = new AbortController());
    const k = key();
    api.tokenize(state.typed, ctrl.signal).then(
      (res) => {
        state.result = { key: k, tokens: res.tokens };
        if (k === key()) show();
      },
      (e: Error) => {
        if (e.name !== "AbortError" && k === key()) show(e.message);
      },
    );
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  input.value = state.typed;
  input.addEventListener("input", () => {
    state.typed = input.value;
    show();
    clearTimeout(timer);
    timer = setTimeout(lookup, 200);
  });
  lookup();
  return tokens;
}
