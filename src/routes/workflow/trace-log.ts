import type { App } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { runStream } from "../../run-stream-client.ts";
import { getRunOrThrow, settleRun } from "../../services/runs.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { parseWorkflowIdParam } from "./params.ts";

/**
 * GET /workflow/:id/trace-log: the full execution trace of a finished run (each step with input,
 * output, start and end, attempts, error, LLM usage), as written to R2 when the run ended.
 */
export function registerTraceLog(app: App) {
  app.get("/workflow/:id/trace-log", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const run = await settleRun(c.env, await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId));
    if (!isTerminal(run.status)) {
      throw new ApiError("run_not_finished", `run ${workflowId} is ${run.status}; its trace is written when it ends`, undefined, { "retry-after": "2" });
    }
    const trace = await runStream(c.env, workflowId).traceFor(run.temporalRunId ?? undefined);
    if (!trace) {
      // The outcome is known but the last history events are still on their way from the host.
      throw new ApiError("run_not_finished", `the trace of ${workflowId} is not complete yet`, undefined, { "retry-after": "2" });
    }
    const object = await c.env.TRACES.get(trace.key);
    if (!object) throw new ApiError("internal_error", "the trace was recorded but cannot be read");
    return new Response(object.body, { headers: { "content-type": "application/json; charset=utf-8" } });
  });
}
