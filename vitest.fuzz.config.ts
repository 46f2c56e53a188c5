import { defineConfig } from "vitest/config";

// Fuzzing: Schemathesis (from PyPI) generates requests from /openapi.json against the whole stack.
export default defineConfig({
  test: {
    include: ["test/fuzz/**/*.test.ts"],
    testTimeout: 1_200_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
