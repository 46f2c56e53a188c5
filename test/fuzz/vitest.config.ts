import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

// Fuzzing: Schemathesis (from PyPI) generates requests from /openapi.json against the stack
// `npm test` shares with the e2e, cli and browser layers, or the global setup's own when this
// layer runs alone.
export default defineConfig({
  root: resolve(import.meta.dirname, "../.."),
  test: {
    include: ["test/fuzz/**/*.test.ts"],
    globalSetup: ["test/fuzz/global-setup.ts"],
    testTimeout: 1_200_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
