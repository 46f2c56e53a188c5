/** The Temporal worker that runs the example workflows and their activities. */
import { fileURLToPath } from "node:url";
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel } from "@temporalio/worker";
import * as activities from "./activities/index.ts";
import { installActivityRuntime } from "./activities/runtime.ts";
import { stepEventsInterceptor } from "./activities/step-events.ts";
import type { HostConfig } from "./config.ts";
import type { RunEventSink } from "./run-event-journal.ts";
import type { RunEnvs } from "./run-envs.ts";

export const WORKFLOWS_PATH = fileURLToPath(new URL("./workflows/index.ts", import.meta.url));
/** At most one heartbeat per activity is sent to Temporal per this interval (the SDK's default is 30 s). */
export const ACTIVITY_HEARTBEAT_THROTTLE = "3 seconds";

/**
 * Heartbeats (model and page steps send one a second) go to Temporal at most every
 * ACTIVITY_HEARTBEAT_THROTTLE, and its answer to one is how a cancelled activity learns it: a
 * stopped run's model call ends within seconds. Both settings, as the SDK throttles a step without
 * a heartbeat timeout by the default, and one with a timeout by 0.8 of it, at most the max: the
 * model and page steps' 30 s (host/workflows/step-timeouts.ts) would be 24 s without it.
 */
export const HEARTBEAT_THROTTLE_OPTIONS = {
  defaultHeartbeatThrottleInterval: ACTIVITY_HEARTBEAT_THROTTLE,
  maxHeartbeatThrottleInterval: ACTIVITY_HEARTBEAT_THROTTLE,
} as const;

let runtimeInstalled = false;
/** The SDK's log level (HOST_LOG_LEVEL: TRACE, DEBUG, INFO, WARN, ERROR); set once per process. */
function installRuntime(level: LogLevel) {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger(level) });
}

export async function createWorker(config: HostConfig, edge: RunEventSink, envs?: RunEnvs): Promise<Worker> {
  installRuntime(config.logLevel);
  installActivityRuntime({
    edge,
    prices: config.prices,
    llm: config.llm,
    httpRequestCost: config.httpRequestCost,
    outbound: config.outbound,
    envs,
  });
  const connection = await NativeConnection.connect({ address: config.temporalAddress, ...config.temporalConnection });
  return Worker.create({
    connection,
    namespace: config.temporalNamespace,
    taskQueue: config.taskQueue,
    workflowsPath: WORKFLOWS_PATH,
    activities,
    interceptors: { activity: [stepEventsInterceptor] },
    ...HEARTBEAT_THROTTLE_OPTIONS,
  });
}
