import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

// Browser tests: the run viewer page in a real headless Chromium (/usr/bin/chromium;
// `bash scripts/install-chromium.sh` installs it), against the stack `npm test` shares with the
// e2e, cli and fuzz layers, or the one the global setup starts when this layer runs alone.
export default defineConfig({
  root: resolve(import.meta.dirname, "../.."),
  test: {
    include: ["test/browser/**/*.test.ts"],
    globalSetup: ["test/browser/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
