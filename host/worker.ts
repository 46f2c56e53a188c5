/** The Temporal worker that runs the example workflows and their activities. */
import { fileURLToPath } from "node:url";
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel } from "@temporalio/worker";
import * as activities from "./activities/index.ts";
import type { HostConfig } from "./config.ts";

export const WORKFLOWS_PATH = fileURLToPath(new URL("./workflows/index.ts", import.meta.url));

let runtimeInstalled = false;
/** The SDK's log level (HOST_LOG_LEVEL: TRACE, DEBUG, INFO, WARN, ERROR); set once per process. */
function installRuntime(level: LogLevel) {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger(level) });
}

export async function createWorker(config: HostConfig): Promise<Worker> {
  installRuntime(config.logLevel);
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  return Worker.create({
    connection,
    namespace: config.temporalNamespace,
    taskQueue: config.taskQueue,
    workflowsPath: WORKFLOWS_PATH,
    activities,
  });
}
