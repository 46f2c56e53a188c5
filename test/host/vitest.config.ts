import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

// Host tests run in Node against a real Temporal dev server (free ports) started by the global setup.
export default defineConfig({
  root: resolve(import.meta.dirname, "../.."),
  test: {
    include: ["test/host/**/*.test.ts"],
    globalSetup: ["test/host/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
