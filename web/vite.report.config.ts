import { defineConfig } from "vite";
import { inlineAll } from "./plugins/inline";

// The offline report: report.html with every script and style inlined, written next to the
// app's files as static/report.html (the app build runs first and empties the folder).
export default defineConfig({
  base: "./",
  plugins: [inlineAll("report.html")],
  build: {
    outDir: "../src/llmvis/static",
    emptyOutDir: false,
    assetsInlineLimit: 100_000_000,
    cssCodeSplit: false,
    modulePreload: false,
    chunkSizeWarningLimit: 4000,
    reportCompressedSize: false,
    rollupOptions: { input: "report.html", output: { inlineDynamicImports: true } },
  },
});
