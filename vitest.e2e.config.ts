import { defineConfig } from "vitest/config";

// End-to-end tests: the global setup starts the whole stack the way `npm run dev` does (real
// Temporal dev server, wrangler dev with local D1 and Durable Objects, the Node host) and the
// tests drive it over HTTP.
export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    globalSetup: ["./test/e2e/global-setup.ts"],
    testTimeout: 90_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
