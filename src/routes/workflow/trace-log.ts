import type { Context } from "hono";
import type { TraceLogReply } from "../../../durable-objects/run-stream/trace-reader.ts";
import type { TraceNode } from "../../../durable-objects/trace.ts";
import type { App } from "../../app-env.ts";
import { type OwnedRunEnv, ownedRun } from "../../middleware/owned-run/index.ts";
import { runStream } from "../../run-stream-client.ts";
import { replyError } from "../../services/runs.ts";
import { type PinnedRunEnv, pinnedRunParam } from "./params.ts";

/**
 * GET /workflow/:id/trace-log (latest run) and GET /workflow/:id/runs/:rid/trace-log: the
 * execution trace of a finished run as Output's server answers it, `{source: "remote", runId,
 * data}`, with `data` in Output's trace format (durable-objects/trace.ts), written to R2 when the
 * run ended. 424 `run_not_finished` while the run goes on; 404 `trace_not_available` if none.
 * One call into the home region: ownership is read near the Worker first (ownedRun), so
 * an unknown or another organization's workflow id never reaches, and never creates, a DO; then
 * the run's DO checks the row again on the primary, settles it, and reads the trace
 * (durable-objects/run-stream/trace-reader.ts, docs/start-path.md).
 */
async function traceLog(c: Context<PinnedRunEnv & OwnedRunEnv>): Promise<Response> {
  const { runId, trace } = await finishedRunTrace(c);
  return c.json({ source: "remote", runId, data: trace });
}

/** The trace of the run the route names, parsed: the one call into the home region (also trace-attributes.ts's). */
export async function finishedRunTrace(
  c: Context<PinnedRunEnv & OwnedRunEnv>,
): Promise<{ workflowId: string; runId: string; trace: TraceNode }> {
  const { workflowId } = c.get("ownedRun");
  const organizationId = c.get("auth").organizationId;
  // (The RPC stub's mapped type loses the union's discriminant.)
  const reply = (await runStream(c.env, workflowId).traceLog(organizationId, workflowId, c.get("pinnedRunId"))) as TraceLogReply;
  if (!reply.ok) throw replyError(reply.error);
  return { workflowId, runId: reply.runId, trace: (await new Response(reply.trace).json()) as TraceNode };
}

export function registerTraceLog(app: App) {
  for (const path of ["/workflow/:id/trace-log", "/workflow/:id/runs/:rid/trace-log"]) {
    app.get(path, pinnedRunParam, ownedRun(), traceLog);
  }
}
