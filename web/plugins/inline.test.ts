import { describe, expect, it } from "vitest";
import { inlineHtml, scriptSafe } from "./inline";

describe("inline", () => {
  it("puts scripts and styles into the page", () => {
    const html = [
      "<head>",
      '<script type="module" crossorigin src="./assets/a.js"></script>',
      '<link rel="modulepreload" href="./assets/b.js">',
      '<link rel="stylesheet" crossorigin href="./assets/s.css">',
      "</head>",
    ].join("");
    const { html: out, used } = inlineHtml(html, {
      "assets/a.js": "console.log(1)",
      "assets/s.css": "body{color:red}",
    });
    expect(out).toBe('<head><script type="module">console.log(1)</script><style>body{color:red}</style></head>');
    expect(used.sort()).toEqual(["assets/a.js", "assets/s.css"]);
  });
  it("keeps a script from closing its own tag", () => {
    expect(scriptSafe('x = "</script><script>alert(1)"')).toBe('x = "<\\/script><script>alert(1)"');
    expect(scriptSafe("a <!-- b")).toBe("a <\\!-- b");
  });
  it("leaves unknown references alone", () => {
    const html = '<script src="https://elsewhere/x.js"></script>';
    expect(inlineHtml(html, {}).html).toBe(html);
  });
});
