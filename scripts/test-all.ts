/**
 * `npm test`: type checks, then every test layer in order (edge in workerd, host against a real
 * Temporal, e2e against the whole stack, cli: the admin CLI against the whole stack, faults,
 * browser: the run viewer in headless Chromium, fuzz: Schemathesis over /openapi.json), then one
 * summary line. Exits non-zero if anything failed.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const resultsDir = resolve(root, "test-results");
const layers = (process.env.OUTRIDER_TEST_LAYERS ?? "edge,host,e2e,cli,faults,browser,fuzz").split(",").filter(Boolean);

rmSync(resultsDir, { recursive: true, force: true });
mkdirSync(resultsDir, { recursive: true });

function run(command: string, args: string[]): number {
  const res = spawnSync(command, args, { cwd: root, stdio: "inherit" });
  return res.status ?? 1;
}

let failedSteps = 0;
if (run("npm", ["run", "--silent", "typecheck"]) !== 0) {
  console.error("typecheck failed");
  failedSteps++;
}

let passed = 0;
let failed = 0;
let skipped = 0;
for (const layer of layers) {
  const outputFile = resolve(resultsDir, `${layer}.json`);
  const code = run("npx", ["vitest", "run", "--config", `vitest.${layer}.config.ts`, "--reporter=default", "--reporter=json", `--outputFile.json=${outputFile}`]);
  try {
    const report = JSON.parse(readFileSync(outputFile, "utf8")) as { numPassedTests: number; numFailedTests: number; numPendingTests: number; numTodoTests: number };
    passed += report.numPassedTests;
    failed += report.numFailedTests;
    skipped += report.numPendingTests + report.numTodoTests;
  } catch {
    // No report means the layer could not even start (setup failed): count it as a failure.
    failed++;
  }
  if (code !== 0) failedSteps++;
}

console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failedSteps > 0 || failed > 0 || skipped > 0 || passed === 0 ? 1 : 0);
