import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

// End-to-end tests over HTTP against the whole stack started the way `npm run dev` starts it (real
// Temporal dev server, wrangler dev with local D1 and Durable Objects, the Node host): the one
// `npm test` shares with the cli, browser and fuzz layers, or the global setup's own when this
// layer runs alone.
export default defineConfig({
  root: resolve(import.meta.dirname, "../.."),
  test: {
    include: ["test/e2e/**/*.test.ts"],
    globalSetup: ["test/e2e/global-setup.ts"],
    testTimeout: 90_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
