import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

// Tests of the admin CLI (`npm run admin`), run as a child process against the stack `npm test`
// shares with the e2e, browser and fuzz layers, or the one the global setup starts when this layer
// runs alone.
export default defineConfig({
  root: resolve(import.meta.dirname, "../.."),
  test: {
    include: ["test/cli/**/*.test.ts"],
    globalSetup: ["test/cli/global-setup.ts"],
    testTimeout: 90_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
