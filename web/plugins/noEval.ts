/**
 * A Vite plugin: claygl (under echarts-gl) builds size expressions with `new Function`, which
 * the server's CSP forbids (no 'unsafe-eval'). Swap that one call for our own small
 * arithmetic compiler (src/views/sizeExpr.ts); fail the build if the code changed shape.
 */
import type { Plugin } from "vite";

const TARGET = /claygl[\\/]src[\\/]createCompositor\.js$/;
const CALL = "new Function('width', 'height', 'dpr', 'return ' + exprRes[1])";
const COMPILER = decodeURIComponent(new URL("../src/views/sizeExpr.ts", import.meta.url).pathname);

export function noEval(): Plugin {
  return {
    name: "llmvis-no-eval",
    enforce: "pre",
    transform(code, id) {
      if (!TARGET.test(id.split("?")[0])) return null;
      if (!code.includes(CALL)) this.error(`noEval: ${id} no longer contains the expected new Function call`);
      const patched = code.replace(CALL, "__llmvisSizeExpr(exprRes[1])");
      return {
        code: `import { compileSizeExpr as __llmvisSizeExpr } from ${JSON.stringify(COMPILER)};\n${patched}`,
        map: null,
      };
    },
  };
}
