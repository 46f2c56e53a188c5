import { defineConfig } from "vitest/config";

// Browser tests: the global setup starts the whole stack the way `npm run dev` does (on its own
// ports, so it can run alongside the e2e layer), and the tests drive the run viewer page in a
// real headless Chromium (/usr/bin/chromium; `bash scripts/install-chromium.sh` installs it).
export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    globalSetup: ["./test/browser/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
