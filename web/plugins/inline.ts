/**
 * A Vite plugin that turns one built HTML page into a single self-contained file: every
 * script and stylesheet the page references is written into the page itself and dropped
 * from the output. Used for the offline HTML report (no server, no network).
 */
import type { OutputAsset, OutputChunk } from "rollup";
import type { Plugin } from "vite";

/** Text safe inside <script>…</script>: no "</script" (or "<!--") can end it early. */
export function scriptSafe(code: string): string {
  return code.replace(/<\/(script)/gi, "<\\/$1").replace(/<!--/g, "<\\!--");
}

export function styleSafe(css: string): string {
  return css.replace(/<\/(style)/gi, "<\\/$1");
}

function fileOf(ref: string): string {
  return ref.replace(/^(\.\/|\/)/, "");
}

/** Replace references in `html` with the referenced files' contents; returns the used names. */
export function inlineHtml(html: string, files: Record<string, string>): { html: string; used: string[] } {
  const used: string[] = [];
  let out = html.replace(
    /<script\b([^>]*?)\ssrc="([^"]+)"([^>]*)><\/script>/g,
    (whole, before: string, src: string, after: string) => {
      const code = files[fileOf(src)];
      if (code === undefined) return whole;
      used.push(fileOf(src));
      const attrs = `${before}${after}`.replace(/\s*crossorigin(="[^"]*")?/g, "");
      return `<script${attrs}>${scriptSafe(code)}</script>`;
    },
  );
  out = out.replace(/<link\b[^>]*?\brel="stylesheet"[^>]*?>/g, (whole) => {
    const href = /href="([^"]+)"/.exec(whole)?.[1];
    const css = href === undefined ? undefined : files[fileOf(href)];
    if (href === undefined || css === undefined) return whole;
    used.push(fileOf(href));
    return `<style>${styleSafe(css)}</style>`;
  });
  // Preload hints point at files that no longer exist.
  out = out.replace(/<link\b[^>]*?\brel="modulepreload"[^>]*?>\s*/g, "");
  return { html: out, used };
}

export function inlineAll(page: string): Plugin {
  return {
    name: "llmvis-inline-all",
    enforce: "post",
    generateBundle(_options, bundle) {
      const htmlFile = Object.values(bundle).find((f) => f.fileName === page) as OutputAsset | undefined;
      if (!htmlFile) this.error(`inline: ${page} is not in the bundle`);
      const files: Record<string, string> = {};
      for (const f of Object.values(bundle)) {
        if (f.type === "chunk") files[f.fileName] = (f as OutputChunk).code;
        else if (f.fileName.endsWith(".css")) files[f.fileName] = String((f as OutputAsset).source);
      }
      const { html, used } = inlineHtml(String(htmlFile.source), files);
      htmlFile.source = html;
      for (const name of used) delete bundle[name];
      const left = Object.keys(bundle).filter((n) => n !== page);
      if (left.length) this.error(`inline: files left outside ${page}: ${left.join(", ")}`);
    },
  };
}
