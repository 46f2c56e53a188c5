/**
 * Temporal's TestWorkflowEnvironment for the example workflows' own logic, with mocked activities.
 *
 * Time skipping (`createTimeSkipping`) needs Temporal's Java test server, which the SDK downloads
 * from GitHub on first use; that download is not reachable from every build machine, and there is
 * no way to build it from the Go module proxy the way scripts/temporal.sh builds the CLI. So this is
 * `createLocal` pointed at the Temporal CLI we already have (`existing-path`): a real dev server on
 * free ports, without time skipping. The workflows' timers are short (a `two_steps` pause of a few
 * seconds, `flaky_step`'s 1 s + 2 s retry backoff), so a test still takes seconds.
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { TestWorkflowEnvironment } from "@temporalio/testing";
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  Worker,
  type WorkerOptions,
  type WorkflowBundleWithSourceMap,
} from "@temporalio/worker";
import type * as activities from "../../host/activities/index.ts";
import { freePorts } from "../support/ports.ts";

const root = resolve(import.meta.dirname, "../..");
/** The workflows the host's worker runs (host/worker.ts loads the same entry point). */
const WORKFLOWS_PATH = resolve(root, "host/workflows/index.ts");

export type Activities = typeof activities;

let runtimeInstalled = false;

export interface WorkflowTestEnvironment {
  env: TestWorkflowEnvironment;
  /** A worker on a task queue of its own, with the given (mocked) activities; `run()` it. */
  worker(taskQueue: string, mocks: Partial<Activities>, options?: Partial<WorkerOptions>): Promise<Worker>;
  teardown(): Promise<void>;
}

export async function createWorkflowTestEnvironment(): Promise<WorkflowTestEnvironment> {
  if (!runtimeInstalled) {
    runtimeInstalled = true;
    Runtime.install({ logger: new DefaultLogger("ERROR") }); // the activities fail on purpose here
  }
  const cli = spawnSync("bash", [resolve(root, "scripts/temporal.sh"), "path"], { cwd: root, encoding: "utf8" });
  if (cli.status !== 0) throw new Error(`no Temporal CLI (scripts/temporal.sh path): ${cli.stderr}`);
  const env = await startLocalServer(cli.stdout.trim());
  let bundle: WorkflowBundleWithSourceMap | undefined;
  return {
    env,
    async worker(taskQueue, mocks, options = {}) {
      // Bundled once per file (webpack), then shared by every worker of the file.
      bundle ??= await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger("WARN") });
      return Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities: mocks, ...options });
    },
    teardown: () => env.teardown(),
  };
}

/** Startups tried, each on fresh ports, when the server does not come up (a port taken since it was picked). */
const SERVER_START_ATTEMPTS = 3;

/** Temporal's dev server from our CLI, on free ports; the SDK gives it 5 s to answer before it fails. */
async function startLocalServer(cliPath: string): Promise<TestWorkflowEnvironment> {
  for (let attempt = 1; ; attempt++) {
    const [port, httpPort, metricsPort] = (await freePorts(3)) as [number, number, number];
    try {
      return await TestWorkflowEnvironment.createLocal({
        server: {
          executable: { type: "existing-path", path: cliPath },
          ip: "127.0.0.1",
          port,
          extraArgs: ["--http-port", String(httpPort), "--metrics-port", String(metricsPort)],
          log: { format: "pretty", level: "error" },
        },
      });
    } catch (err) {
      if (attempt >= SERVER_START_ATTEMPTS || !/Failed to start ephemeral server/.test(String(err))) throw err;
      console.warn(`Temporal test server did not start (attempt ${attempt}); starting again on fresh ports: ${String(err).slice(0, 200)}`);
    }
  }
}

/** Waits until `check` holds (polling), or fails after `timeoutMs`. */
export async function until(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000}s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
