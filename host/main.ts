/**
 * The Node host: control API for the edge, a Temporal worker, and the publisher of run events.
 * Run with `npm run host` (or as part of `npm run dev`).
 */
import { serve } from "@hono/node-server";
import { catalogEntries } from "./catalog.ts";
import { loadConfig } from "./config.ts";
import { createControlApi } from "./control-api.ts";
import { EdgeClient } from "./edge-client.ts";
import { HistoryRelay } from "./history-relay.ts";
import { RunEventJournal } from "./run-event-journal.ts";
import { SignedRequestNonces } from "./signed-request-nonces.ts";
import { connectClient } from "./temporal.ts";
import { RunEnvs } from "./run-envs.ts";
import { createWorker } from "./worker.ts";

const config = loadConfig();
const client = await connectClient(config);
const edge = new EdgeClient(config.edgeUrl, config.sharedSecrets[0]!, undefined, undefined, config.edgePushWindowMs);
// Activities' run events go through the journal, so a host that stops before the edge has them loses none.
const journal = new RunEventJournal(config.runEventJournalPath, edge);
const runEnvs = new RunEnvs(client, config.sharedSecrets);
const worker = await createWorker(config, journal, runEnvs);
const relay = new HistoryRelay(client, edge, config.taskQueue);
const app = createControlApi({
  client,
  taskQueue: config.taskQueue,
  sharedSecrets: config.sharedSecrets,
  relay,
  edge,
  envs: runEnvs,
  defaultExecutionTimeoutMs: config.workflowExecutionTimeoutMs,
  // In the journal's file: a signed request replayed after a restart is still refused.
  nonces: new SignedRequestNonces(config.runEventJournalPath),
});

const workerRun = worker.run();
const server = serve({ fetch: app.fetch, port: config.port, hostname: config.bind }, (info) => {
  console.log(
    `outrider host: control API on http://${info.address}:${info.port}, task queue "${config.taskQueue}" on ${config.temporalAddress}`,
  );
});

// Both go on in the background: the edge may come up after the host.
edge
  .publishCatalog(catalogEntries())
  .then(() => console.log(`outrider host: published ${catalogEntries().length} workflows to ${config.edgeUrl}`))
  .catch((err) => console.error(`outrider host: could not publish the catalog: ${String(err)}`));
const leftOver = journal.start();
if (leftOver > 0)
  console.log(`outrider host: delivering ${leftOver} journaled run event publications left from before (${config.runEventJournalPath})`);
relay
  .reattachOpenRuns()
  .then((n) => n > 0 && console.log(`outrider host: following ${n} open runs`))
  .catch((err) => console.warn(`outrider host: could not list open runs: ${String(err)}`));

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`outrider host: ${signal}, shutting down`);
  server.close();
  relay.stop();
  worker.shutdown();
  await workerRun.catch(() => undefined);
  // Run events the worker published last are still on their way: let them go out.
  await Promise.race([edge.drain(), new Promise((r) => setTimeout(r, 5_000))]);
  // What did not go out stays in the journal for the next start.
  journal.close();
  await client.connection.close();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));

await workerRun.catch((err) => {
  console.error("outrider host: worker stopped with an error", err);
  process.exit(1);
});
