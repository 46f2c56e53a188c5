/**
 * A real host worker for host tests: the example workflows on their own task queue of the
 * Temporal dev server the layer's global setup started, and a client. No edge in host tests: the
 * workflows' step events go to a closed port and are given up quietly (test/e2e covers them).
 */
import { Client, Connection } from "@temporalio/client";
import { inject } from "vitest";
import { executionTimeoutFrom, loadConfig } from "../../host/config.ts";
import { type ControlApiDeps, createControlApi } from "../../host/control-api.ts";
import { EdgeClient } from "../../host/edge-client.ts";
import { HistoryRelay } from "../../host/history-relay.ts";
import { createWorker } from "../../host/worker.ts";

export interface TestWorker {
  client: Client;
  /** The edge client the worker was given (pushes to a closed port). */
  edge: EdgeClient;
  stop(): Promise<void>;
}

/** `temporalAddress`: another Temporal dev server than the layer's (one a test started itself). */
export async function startTestWorker(secret: string, taskQueue: string, temporalAddress = inject("temporalAddress")): Promise<TestWorker> {
  const config = loadConfig({
    HOST_SHARED_SECRET: secret,
    TEMPORAL_ADDRESS: temporalAddress,
    TEMPORAL_TASK_QUEUE: taskQueue,
    HOST_LOG_LEVEL: "WARN",
  });
  const client = new Client({ connection: await Connection.connect({ address: config.temporalAddress }) });
  const edge = new EdgeClient("http://127.0.0.1:9", secret, () => undefined, 1);
  const worker = await createWorker(config, edge);
  const running = worker.run();
  return {
    client,
    edge,
    async stop() {
      worker.shutdown();
      await running;
      await client.connection.close();
    },
  };
}

/** The control API as the host builds it, over `client` and the test worker's edge client; `deps` replaces any part. */
export function testControlApi(
  client: Client,
  worker: TestWorker,
  secret: string,
  taskQueue: string,
  deps: Partial<ControlApiDeps> = {},
): ReturnType<typeof createControlApi> {
  return createControlApi({
    client,
    taskQueue,
    sharedSecrets: [secret],
    relay: new HistoryRelay(client, worker.edge, taskQueue),
    edge: worker.edge,
    defaultExecutionTimeoutMs: executionTimeoutFrom(undefined),
    ...deps,
  });
}
