import { defineConfig } from "vite";
import { noEval } from "./plugins/noEval";

// The app: index.html + hashed files in assets/, built into the Python package's static/.
export default defineConfig({
  base: "./",
  plugins: [noEval()],
  build: {
    outDir: "../src/llmvis/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
    reportCompressedSize: false,
  },
  server: { proxy: { "/api": "http://127.0.0.1:8000" } },
  test: { environment: "node", include: ["src/**/*.test.ts", "plugins/**/*.test.ts"] },
});
