import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

// Fault tests start their own stack (test/support/stack.ts, free ports) and kill parts of it.
export default defineConfig({
  root: resolve(import.meta.dirname, "../.."),
  test: {
    include: ["test/faults/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
