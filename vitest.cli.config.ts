import { defineConfig } from "vitest/config";

// Tests of the admin CLI (`npm run admin`): the global setup starts the whole stack the way
// `npm run dev` does (on its own ports) and the tests run the CLI as a child process against it.
export default defineConfig({
  test: {
    include: ["test/cli/**/*.test.ts"],
    globalSetup: ["./test/cli/global-setup.ts"],
    testTimeout: 90_000,
    hookTimeout: 900_000,
    fileParallelism: false,
  },
});
