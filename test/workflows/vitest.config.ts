import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

// The example workflows' own logic on Temporal's TestWorkflowEnvironment with mocked activities
// (test/workflows/environment.ts): one dev server per file, on free ports; no edge, no host.
export default defineConfig({
  root: resolve(import.meta.dirname, "../.."),
  test: {
    include: ["test/workflows/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
