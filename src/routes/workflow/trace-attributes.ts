import type { Context } from "hono";
import { traceKey } from "../../../durable-objects/trace.ts";
import type { App } from "../../app-env.ts";
import { type OwnedRunEnv, ownedRun } from "../../middleware/owned-run/index.ts";
import { traceAttributes } from "../../shared/trace-attributes.ts";
import { type PinnedRunEnv, pinnedRunParam } from "./params.ts";
import { finishedRunTrace } from "./trace-log.ts";

/**
 * GET /workflow/:id/trace-attributes (latest run) and GET /workflow/:id/runs/:rid/trace-attributes:
 * a finished run's runtime, cost and token usage summed over its trace, as Output's server answers
 * it: `{workflowId, runId, startTime, finishTime, runtime, attributes: {cost, tokenUsage}, traceUrl}`
 * (times in epoch ms from the trace's root; src/shared/trace-attributes.ts). The same one call
 * into the home region as the trace log (trace-log.ts), with its answers: 424 `run_not_finished`
 * while the run goes on, 404 `trace_not_available` when it has no trace. `traceUrl` names the R2
 * object, as a result's `trace.destinations.remote` does.
 */
async function traceAttributesOfRun(c: Context<PinnedRunEnv & OwnedRunEnv>): Promise<Response> {
  const { workflowId, runId, trace: root } = await finishedRunTrace(c);
  const startTime = typeof root.startedAt === "number" ? root.startedAt : null;
  const finishTime = typeof root.endedAt === "number" ? root.endedAt : null;
  return c.json({
    workflowId,
    runId,
    startTime,
    finishTime,
    runtime: startTime !== null && finishTime !== null ? finishTime - startTime : null,
    attributes: traceAttributes(root),
    traceUrl: `r2:${traceKey(workflowId, runId)}`,
  });
}

export function registerTraceAttributes(app: App) {
  for (const path of ["/workflow/:id/trace-attributes", "/workflow/:id/runs/:rid/trace-attributes"]) {
    app.get(path, pinnedRunParam, ownedRun(), traceAttributesOfRun);
  }
}
