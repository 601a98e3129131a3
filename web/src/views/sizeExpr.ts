/**
 * Size expressions for echarts-gl's post-processing passes, without `new Function`.
 *
 * claygl compiles strings such as `[width * dpr / 4, height * dpr / 4]` with `new Function`,
 * which our Content-Security-Policy (no 'unsafe-eval') forbids, so a 3D chart would fail.
 * The build swaps that call for this compiler (plugins/noEval.ts). Grammar:
 *   expr   = term (("+" | "-") term)*      term = factor (("*" | "/") factor)*
 *   factor = number | width | height | dpr | "(" expr ")" | "-" factor | "[" expr ("," expr)* "]"
 */

type Vars = { width: number; height: number; dpr: number };
type Node = (v: Vars) => number | number[];

export function compileSizeExpr(source: string): (width: number, height: number, dpr?: number) => number | number[] {
  const tokens = source.match(/\d+\.?\d*|\.\d+|[A-Za-z_]+|[-+*/()[\],]|\S/g) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  const take = (want?: string) => {
    const tok = tokens[i++];
    if (tok === undefined || (want !== undefined && tok !== want))
      throw new Error(`size expression: expected ${want ?? "more"} in ${JSON.stringify(source)}`);
    return tok;
  };
  const num =
    (n: Node): ((v: Vars) => number) =>
    (v) => {
      const x = n(v);
      if (typeof x !== "number") throw new Error("size expression: arithmetic on a list");
      return x;
    };

  const factor = (): Node => {
    const tok = take();
    if (tok === "(") {
      const e = expr();
      take(")");
      return e;
    }
    if (tok === "-") {
      const f = num(factor());
      return (v) => -f(v);
    }
    if (tok === "[") {
      const items = [num(expr())];
      while (peek() === ",") {
        take(",");
        items.push(num(expr()));
      }
      take("]");
      return (v) => items.map((f) => f(v));
    }
    if (tok === "width" || tok === "height" || tok === "dpr") return (v) => v[tok];
    if (/^(\d+\.?\d*|\.\d+)$/.test(tok)) {
      const x = Number(tok);
      return () => x;
    }
    throw new Error(`size expression: unexpected ${JSON.stringify(tok)} in ${JSON.stringify(source)}`);
  };
  const term = (): Node => {
    let left = factor();
    while (peek() === "*" || peek() === "/") {
      const op = take();
      const a = num(left);
      const b = num(factor());
      left = op === "*" ? (v) => a(v) * b(v) : (v) => a(v) / b(v);
    }
    return left;
  };
  const expr = (): Node => {
    let left = term();
    while (peek() === "+" || peek() === "-") {
      const op = take();
      const a = num(left);
      const b = num(term());
      left = op === "+" ? (v) => a(v) + b(v) : (v) => a(v) - b(v);
    }
    return left;
  };

  const root = expr();
  if (i !== tokens.length)
    throw new Error(`size expression: trailing ${JSON.stringify(tokens[i])} in ${JSON.stringify(source)}`);
  return (width, height, dpr = 1) => root({ width, height, dpr });
}
