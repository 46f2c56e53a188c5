/**
 * `npm test`: type checks, then every test layer in order, then one summary line. Exits non-zero
 * if anything failed.
 *
 *   edge       vitest in workerd (no servers)
 *   host       the host against a real Temporal
 *   workflows  the example workflows' own logic on Temporal's TestWorkflowEnvironment, mocked activities
 *   faults     stacks of their own, with parts killed and restarted
 *   e2e        the whole stack over HTTP          ┐
 *   cli        the admin CLI against the stack    │ one stack, started here before e2e and stopped
 *   browser    the run viewer in headless Chromium│ after fuzz, passed down in OUTRIDER_TEST_STACK
 *   fuzz       Schemathesis over /openapi.json    ┘ (each layer run alone starts its own)
 *
 * Every port comes from free ports chosen at run time, so `npm test` runs beside `npm run dev`.
 * OUTRIDER_TEST_LAYERS=host,e2e runs a subset. The last line is always
 * `tests: N passed, N failed, N skipped`.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { relative, resolve } from "node:path";
import { SHARED_STACK_ENV, type SharedStack, startSharedStack } from "../test/support/shared-stack.ts";

const root = resolve(import.meta.dirname, "..");
const resultsDir = resolve(root, "test-results");
const ALL_LAYERS = ["edge", "host", "workflows", "faults", "e2e", "cli", "browser", "fuzz"];
/** The layers that share one stack when they run together. */
const STACK_LAYERS = new Set(["e2e", "cli", "browser", "fuzz"]);
const layers = (process.env.OUTRIDER_TEST_LAYERS ?? ALL_LAYERS.join(",")).split(",").filter(Boolean);
const unknown = layers.filter((l) => !ALL_LAYERS.includes(l));
if (unknown.length > 0) {
  console.error(`unknown test layers: ${unknown.join(", ")} (layers: ${ALL_LAYERS.join(", ")})`);
  process.exit(2);
}

rmSync(resultsDir, { recursive: true, force: true });
mkdirSync(resultsDir, { recursive: true });

let shared: { stack: SharedStack; stop(): Promise<void> } | undefined;

/** Runs a command with the terminal; asynchronous, so this process keeps serving the shared stack's helpers (JWKS, LLM pacer). */
function run(command: string, args: string[], env: Record<string, string> = {}): Promise<number> {
  return new Promise((done) => {
    const child = spawn(command, args, { cwd: root, stdio: "inherit", env: { ...process.env, ...env } });
    child.once("error", () => done(1));
    child.once("exit", (code) => done(code ?? 1));
  });
}

// Ctrl-C: the shared stack's processes run detached, so stop them before leaving.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    void (shared?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)}s`;
const suiteStart = Date.now();
// The closing line counts every failure, not only failed tests: a failed typecheck, a test file that
// failed outside its tests, a layer that failed with no failed test (vitest's unhandled errors) each
// count as one failed, so that line alone never reads as green for a red run.
let passed = 0;
let failed = 0;
/** Failures that are not a test's, one line each, printed above the closing line. */
const otherFailures: string[] = [];
if ((await run("npm", ["run", "--silent", "typecheck"])) !== 0) {
  console.error("typecheck failed");
  otherFailures.push("typecheck failed");
  failed++;
}

let skipped = 0;
const timings: string[] = [];

interface VitestJsonReport {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults: {
    name: string;
    status: string;
    message?: string;
    assertionResults: { status: string; fullName?: string; title?: string; failureMessages?: string[] }[];
  }[];
}
/** Failed tests, one line each (layer, file, name, the error's first line), printed above the closing line. */
const failedTests: string[] = [];
/** The first line of a failure message, short enough for one log line. */
const firstLine = (message: string | undefined) => (message?.trim().split("\n")[0] ?? "").slice(0, 200);
const lastStackLayer = layers.filter((l) => STACK_LAYERS.has(l)).at(-1);
try {
  for (const layer of layers) {
    const env: Record<string, string> = {};
    if (STACK_LAYERS.has(layer)) {
      if (!shared) {
        const started = Date.now();
        console.log(`\n== starting the stack shared by ${layers.filter((l) => STACK_LAYERS.has(l)).join(", ")}`);
        try {
          shared = await startSharedStack();
          console.log(`shared stack: up at ${shared.stack.baseUrl} after ${seconds(started)}`);
        } catch (err) {
          // Each layer's global setup then tries a stack of its own, and reports why it could not.
          console.error(`== the shared stack did not start: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (shared) env[SHARED_STACK_ENV] = JSON.stringify(shared.stack);
    }
    const outputFile = resolve(resultsDir, `${layer}.json`);
    const started = Date.now();
    const code = await run(
      "npx",
      [
        "vitest",
        "run",
        "--config",
        `test/${layer}/vitest.config.ts`,
        "--reporter=default",
        "--reporter=json",
        `--outputFile.json=${outputFile}`,
      ],
      env,
    );
    timings.push(`${layer} ${seconds(started)}`);
    const failedBefore = failed;
    try {
      const report = JSON.parse(readFileSync(outputFile, "utf8")) as VitestJsonReport;
      passed += report.numPassedTests;
      failed += report.numFailedTests;
      skipped += report.numPendingTests + report.numTodoTests;
      // Vitest reports the tests of a file whose beforeAll threw as skipped: they are failures, and
      // the summary says which file and why, since the error itself may be far up the log.
      for (const file of report.testResults) {
        if (file.status !== "failed") continue;
        for (const test of file.assertionResults) {
          if (test.status !== "failed") continue;
          const name = test.fullName ?? test.title ?? "(unnamed)";
          failedTests.push(`${layer}: ${relative(root, file.name)} > ${name}: ${firstLine(test.failureMessages?.[0])}`);
        }
        const notRun = file.assertionResults.filter((t) => t.status === "skipped" || t.status === "pending").length;
        if (!file.message && notRun === 0) continue; // only its tests failed, and vitest printed them
        skipped -= notRun;
        // A file that failed before collecting any test (an import, a top-level throw) still counts once.
        failed += Math.max(notRun, 1);
        const why = file.message?.split("\n")[0]?.trim() || "failed outside its tests";
        otherFailures.push(`${layer}: ${relative(root, file.name)}: ${why}${notRun > 0 ? ` (${notRun} tests did not run)` : ""}`);
      }
    } catch {
      // No report means the layer could not even start (setup failed): count it as a failure.
      otherFailures.push(`${layer}: no report (the layer did not start)`);
      failed++;
    }
    if (code !== 0 && failed === failedBefore) {
      // Vitest failed the layer with every test passed: errors outside any test (unhandled rejections).
      otherFailures.push(`${layer}: vitest exited ${code} with no failed test (see its "Unhandled Errors" above)`);
      failed++;
    }
    if (layer === lastStackLayer && shared) {
      await shared.stop();
      shared = undefined;
    }
  }
} finally {
  await shared?.stop();
}

// A CI log may be read from its end only: the failures are named there, not only far up the log.
if (failedTests.length > 0) console.log(`\nfailed tests:\n  ${failedTests.join("\n  ")}`);
if (otherFailures.length > 0) console.log(`\nfailures outside tests:\n  ${otherFailures.join("\n  ")}`);
console.log(`\nlayers: ${timings.join(", ")}; suite ${seconds(suiteStart)}`);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || skipped > 0 || passed === 0 ? 1 : 0);
