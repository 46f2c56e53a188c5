import type { Context } from "hono";
import type { App, AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { runStream } from "../../run-stream-client.ts";
import { getRunOrThrow, settleRun } from "../../services/runs.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { parsePinnedRunId } from "./history.ts";
import { parseWorkflowIdParam } from "./params.ts";

/**
 * GET /workflow/:id/trace-log (latest run) and GET /workflow/:id/runs/:rid/trace-log: the
 * execution trace of a finished run as Output's server answers it, `{source: "remote", runId,
 * data}`, with `data` in Output's trace format (durable-objects/trace.ts), written to R2 when the
 * run ended. 424 `run_not_finished` while the run goes on; 404 `trace_not_available` if none.
 */
async function traceLog(c: Context<AppEnv>, pinnedRunId: string | undefined): Promise<Response> {
  const workflowId = parseWorkflowIdParam(c.req.param("id")!);
  const stub = runStream(c.env, workflowId);
  const notFinished = (what: string) =>
    new ApiError("run_not_finished", `${what}; its trace is written when it ends`, undefined, { "retry-after": "2" });
  let run = await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId);
  if (pinnedRunId) {
    const page = await stub.historyPage(pinnedRunId, 0, 1, false);
    if (!page.known) throw new ApiError("run_not_found", `workflow ${workflowId} has no run ${pinnedRunId}`);
    if (!page.complete) throw notFinished(`run ${pinnedRunId} of ${workflowId} has not ended`);
  } else {
    run = await settleRun(c.env, run);
    if (!isTerminal(run.status)) throw notFinished(`run ${workflowId} is ${run.status}`);
  }
  const trace = await stub.traceFor(pinnedRunId ?? run.temporalRunId ?? undefined);
  // The outcome is known but the last history events are still on their way from the host.
  if (!trace) throw notFinished(`the history of ${workflowId} is not complete yet`);
  const object = await c.env.TRACES.get(trace.key);
  if (!object) throw new ApiError("trace_not_available", `no trace was recorded for run ${trace.runId} of ${workflowId}`);
  return c.json({ source: "remote", runId: trace.runId, data: await object.json() });
}

export function registerTraceLog(app: App) {
  app.get("/workflow/:id/trace-log", (c) => traceLog(c, undefined));
  app.get("/workflow/:id/runs/:rid/trace-log", (c) => traceLog(c, parsePinnedRunId(c.req.param("rid"))));
}
